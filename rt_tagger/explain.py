"""``rt-tagger explain``: a figure like Figures 6-7 of Won et al. (2019).

Top to bottom: the log-mel spectrogram (time on x), the attention heat map (last layer,
[CLS] -> each time step, heads summed; chunks overlapping a frame averaged, shown relative to
the mean on a log2 scale from 1/8x to 16x through the same colour ramp as the live window,
:mod:`rt_tagger.interpret.display`, with a colour bar), then one row per tag — the tag-wise
contribution heat map (spec_att, raw_att), the tag's cross-attention (q2l), or the tag's
probability over time (models without attention, e.g. musicnn). ``concat`` puts two or more clips side by side as
the paper did (piano | flute) and marks each boundary with a magenta line.

matplotlib is imported only here, and only when a figure is drawn.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, ModelError, RtTaggerError
from .factory import DEFAULT_MODEL  # the model used when none is named
from .interpret import (FileMaps, explain_array, resolve_tags, spread_to_frames, tag_names,
                        time_base)
from .interpret import display
from .sources.decode import read_audio

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["BOUNDARY_COLOR", "DEFAULT_MODEL", "FigureLayout", "explain_file", "render_explanation"]

#: Colour of the clip-boundary line (no colour map used in the figure contains it).
BOUNDARY_COLOR = (1.0, 0.0, 1.0)
CMAP = "viridis"


@dataclass
class FigureLayout:
    """Where things are in the written PNG (pixel rows from the top, columns from the left).

    ``panels``: name -> ``(x0, y0, x1, y1)`` pixel box of each axes, top to bottom in
    ``order``; ``rows``: name -> the per-frame values drawn in that row (before scaling);
    ``x_of(seconds)`` gives the pixel column of a time. ``tags``: tags of the tag rows.
    ``colorbar``: pixel box of the attention row's colour bar (None without attention).
    """

    path: Path
    size: tuple[int, int]  # (width, height) in pixels
    order: list[str]
    panels: dict[str, tuple[int, int, int, int]]
    rows: dict[str, np.ndarray]
    t_range: tuple[float, float]
    boundaries: list[float]
    tags: list[str] = field(default_factory=list)
    colorbar: tuple[int, int, int, int] | None = None

    def x_of(self, seconds: float) -> float:
        x0, _, x1, _ = self.panels[self.order[0]]
        t0, t1 = self.t_range
        return x0 + (seconds - t0) / (t1 - t0) * (x1 - x0)


def _row_values(maps: FileMaps, tags: Sequence[str]) -> tuple[str, dict[str, np.ndarray]]:
    """Kind of the tag rows and their per-frame values."""
    idx = [maps.map_tags.index(t) for t in tags]
    if maps.contribution is not None:
        return "contribution", {t: maps.contribution[i] for t, i in zip(tags, idx)}
    if maps.q2l is not None:
        return "cross-attention", {t: maps.q2l[i] for t, i in zip(tags, idx)}
    # No attention: the chunk probabilities of each tag, averaged over overlapping chunks.
    fs = maps.base.frame_seconds
    n = len(maps.frame_times)
    total, cover = np.zeros((len(tags), n)), np.zeros(n)
    cols = [maps.tags.index(t) for t in tags]
    for (a, b), p in zip(maps.chunk_seconds, maps.taggram):
        span = np.array([[a / fs + 0.5, b / fs + 0.5]])
        s, c = spread_to_frames(p[cols][:, None], span, n)
        total, cover = total + s, cover + c
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = np.where(cover > 1e-9, total / np.maximum(cover, 1e-12), np.nan)
    return "probability", dict(zip(tags, vals))


def require_matplotlib() -> None:
    """Raises one :class:`RtTaggerError` line naming the ``[explain]`` extra if matplotlib is
    not installed."""
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "matplotlib":
            raise RtTaggerError("explain needs matplotlib: pip install 'rt-tagger[explain]'") from None
        raise


def render_explanation(logmel: np.ndarray, maps: FileMaps, out_png: str | os.PathLike[str], *,
                       tags: Sequence[str] | None = None, boundaries: Sequence[float] = (),
                       title: str | None = None, width_px: int = 1200,
                       dpi: int = 100) -> FigureLayout:
    """Draw the figure for a file's log-mel ``(frames, n_mels)`` and its :class:`FileMaps`.

    ``tags``: rows to draw (names in ``maps.map_tags``; default all of them, at most 8 is
    sensible). ``boundaries``: times in seconds to mark (clip joins). The attention row is
    divided by its mean and coloured by :func:`rt_tagger.interpret.display.level` (log2,
    1/8x..16x, colour bar at its right); the other heat-map rows are scaled to their own
    min..max (the range is printed in the row label). Returns the layout.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tags = list(maps.map_tags if tags is None else tags)
    missing = [t for t in tags if t not in maps.map_tags]
    if missing:
        raise ConfigError(f"no map for tag(s) {', '.join(missing)}; mapped tags: "
                          f"{', '.join(maps.map_tags)}")
    kind, tag_rows = _row_values(maps, tags)
    rows: dict[str, np.ndarray] = {}
    if maps.attention is not None:
        rows["attention"] = maps.attention
    rows.update({f"{kind}: {t}": v for t, v in tag_rows.items()})

    spec = np.asarray(logmel, dtype=np.float32)
    fs = maps.base.frame_seconds
    t0, t1 = -0.5 * fs, (spec.shape[0] - 0.5) * fs
    heights = [4.0] + [1.1 if name == "attention" else 0.7 for name in rows]
    fig = Figure(figsize=(width_px / dpi, (sum(heights) + 1.4) * 0.55 + 0.4), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights, "hspace": 0.12})[:, 0]
    fig.subplots_adjust(left=0.2, right=0.93, top=0.93 if title else 0.97, bottom=0.09)
    ax = axes[0]
    ax.imshow(spec.T, origin="lower", aspect="auto", cmap=CMAP, extent=(t0, t1, 0, spec.shape[1]),
              interpolation="nearest")
    ax.set_ylabel("log-mel\nband", rotation=0, ha="right", va="center")
    cax = None
    for ax, (name, v) in zip(axes[1:], rows.items()):
        if name == "attention":
            cax = _attention_row(fig, ax, v, (t0, t1))
            continue
        finite = v[np.isfinite(v)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        ax.imshow(scaled[None], aspect="auto", cmap=CMAP, vmin=0, vmax=1, extent=(t0, t1, 0, 1),
                  interpolation="nearest")
        ax.set_yticks([])
        ax.set_ylabel(f"{name}\n{lo:.3g}..{hi:.3g}", rotation=0, ha="right", va="center",
                      fontsize=8)
    for ax in axes:
        for b in boundaries:
            ax.axvline(b, color=BOUNDARY_COLOR, linewidth=2.5)
        ax.set_xlim(t0, t1)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)

    out = Path(out_png)
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: directory {out.parent} does not exist")
    fig.canvas.draw()
    w, h = fig.canvas.get_width_height()
    order = ["spectrogram", *rows]

    def box(ax) -> tuple[int, int, int, int]:
        bb = ax.get_window_extent()
        return (int(round(bb.x0)), int(round(h - bb.y1)), int(round(bb.x1)), int(round(h - bb.y0)))

    panels = {name: box(ax) for name, ax in zip(order, axes)}
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    return FigureLayout(out, (w, h), order, panels, {"spectrogram": spec, **rows}, (t0, t1),
                        list(boundaries), tags, None if cax is None else box(cax))


def _attention_row(fig, ax, values: np.ndarray, extent: tuple[float, float]):
    """The attention row: ratio to its mean on the shared log2 ramp, plus a colour bar
    (returns its axes)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    cmap = ListedColormap(display.ramp(256) / 255.0, name="rt-tagger-attention")
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
    ratio = values / mean if mean > 0 else np.zeros_like(values)
    ax.imshow(display.level(ratio)[None], aspect="auto", cmap=cmap, vmin=0, vmax=1,
              extent=(*extent, 0, 1), interpolation="nearest")
    ax.set_yticks([])
    ax.set_ylabel("attention\n/ its mean", rotation=0, ha="right", va="center", fontsize=8)
    pos = ax.get_position()
    cax = fig.add_axes((pos.x1 + 0.008, pos.y0, 0.01, pos.height))
    bar = fig.colorbar(ScalarMappable(Normalize(*display.LOG2_RANGE), cmap), cax=cax)
    ends = [display.TICKS[0], (0.0, "1x"), display.TICKS[-1]]
    bar.set_ticks([v for v, _ in ends], labels=[s for _, s in ends], fontsize=7)
    return cax


def _read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """``read_audio``'s mono samples (kept for callers of the former private decoder)."""
    return read_audio(path, sample_rate=sample_rate)[0]


def _load_model(model: Any) -> "nn.Module":
    """A model as given, or the trained one a name or checkpoint path names."""
    from torch import nn

    from .factory import resolve_model

    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise ModelError(f"model must be a name, a checkpoint path or a model, got {model!r}")
    return resolve_model(model)[0]


def _pick_top(maps: FileMaps, clips: list[tuple[float, float]], k: int) -> list[str]:
    """Top-``k`` tags: each clip's best tags in turn (clip A's first, clip B's first, ...)."""
    centres = maps.chunk_seconds.mean(axis=1)
    ranked = []
    for a, b in clips:
        inside = (centres >= a) & (centres < b)
        p = maps.taggram[inside] if inside.any() else maps.taggram
        ranked.append(list(np.argsort(-p.mean(axis=0), kind="stable")))
    picked: list[str] = []
    for rank in range(len(maps.tags)):
        for order in ranked:
            name = maps.tags[order[rank]]
            if name not in picked and len(picked) < k:
                picked.append(name)
    return picked


def explain_file(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
                 out_png: str | os.PathLike[str], *, model: Any = DEFAULT_MODEL,
                 tags: Sequence[str | int] | None = None, topk: int = 3, concat: bool = False,
                 backend: str = "native", hop: int | None = None) -> FigureLayout:
    """Write the explanation figure of one audio file (or of ``concat``-enated clips).

    ``model``: a model name, checkpoint path or model built from one (inference runs in
    PyTorch: the contribution map manipulates the attention inside the model). ``tags``:
    tag rows by name or index; default the ``topk`` most probable (with ``concat``, each
    clip's best in turn). ``backend``: log-mel backend (native, numba, numpy). ``hop``: chunk
    hop in model input units (default half a chunk); the chunks are the ones the live tagger
    cuts with that hop (:mod:`rt_tagger.chunker`), and files are decoded by the live tagger's
    decoder (:func:`rt_tagger.sources.decode.read_audio`). Bad input raises an
    :class:`~rt_tagger.errors.RtTaggerError` subclass (missing file, unknown tag, ...).
    """
    from .features import LogMel

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ConfigError("no audio file given")
    if len(paths) > 1 and not concat:
        raise ConfigError(f"got {len(paths)} files; pass one file, or concat=True to join them")
    if concat and len(paths) < 2:
        raise ConfigError("concat needs at least two files")
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ConfigError(f"topk must be a positive integer, got {topk!r}")
    parent = Path(out_png).parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {out_png}: directory {parent} does not exist")
    require_matplotlib()  # before the model runs, not after
    net = _load_model(model)
    names = tag_names(net)
    chosen = None if tags is None else [names[i] for i in resolve_tags(tags, names)]
    base = time_base(net)
    clips = [read_audio(p, sample_rate=base.sample_rate)[0] for p in paths]
    y = np.concatenate(clips) if len(clips) > 1 else clips[0]
    spec = LogMel(base.logmel, backend=backend)(y)
    x = spec if base.unit == "frames" else y
    maps = explain_array(net, x, hop=hop, tags=None)
    edges = np.cumsum([0] + [c.size for c in clips]) / base.sample_rate
    clip_spans = list(zip(edges[:-1], edges[1:]))
    chosen = chosen or _pick_top(maps, clip_spans, topk)
    title = " | ".join(Path(p).name for p in paths)
    return render_explanation(spec, maps, out_png, tags=chosen, boundaries=list(edges[1:-1]),
                              title=f"{title}  ({type(net).__name__})")
