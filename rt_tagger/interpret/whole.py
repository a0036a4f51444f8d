"""Whole-file interpretation: slide model-sized chunks over a file, put every chunk's maps on
the file's absolute frame axis and average where chunks overlap.

The chunks are the live tagger's (:mod:`rt_tagger.chunker`): starts ``0, hop, 2 hop, ...``
while a whole chunk fits, one chunk padded with the log-mel of silence for a file shorter
than a chunk; frames after the last whole chunk are seen by no chunk (NaN in the maps)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chunker import chunk_starts, pad_value
from ..errors import AudioInputError, ConfigError
from ..features.config import LogMelConfig
from .contribution import contribution_map
from .maps import (StepMap, has_cls_attention, as_batch, attention_from_attn, forward,
                   q2l_from_attn, resolve_tags, tag_names)
from .timeaxis import TimeBase, spread_to_frames, time_base

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["FileMaps", "chunk_starts", "explain_array", "file_chunks"]


@dataclass
class FileMaps:
    """A file's interpretation on its frame axis (frame ``j`` centred at ``frame_times[j]``).

    ``taggram`` ``(n_chunks, n_tags)``: tag probabilities per chunk, chunk ``i`` covering
    ``chunk_seconds[i]`` (``[start, stop)``); ``tags``: all tag names. Per-frame maps (NaN where
    no chunk reaches, overlaps averaged): ``attention`` ``(n_frames,)`` (last layer, heads
    summed), ``contribution`` ``(len(map_tags), n_frames)`` (spec_att/raw_att) or ``q2l``
    ``(len(map_tags), n_frames)`` (q2l, heads averaged); ``None`` when the model has no such
    map. ``coverage`` ``(n_frames,)``: how many chunks saw each frame.
    """

    frame_times: np.ndarray
    taggram: np.ndarray
    chunk_seconds: np.ndarray
    tags: list[str]
    map_tags: list[str]
    coverage: np.ndarray
    attention: np.ndarray | None = None
    contribution: np.ndarray | None = None
    q2l: np.ndarray | None = None
    base: TimeBase | None = field(default=None, repr=False)


def file_chunks(x: np.ndarray, length: int, hop: int, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, padded input)``: the chunk starts of a whole input ``x`` (``chunk_starts``)
    and ``x`` padded at the end with ``pad`` to at least one chunk; chunk ``i`` is
    ``padded[starts[i]:starts[i] + length]``."""
    starts = chunk_starts(x.shape[0], length, hop)
    if x.shape[0] < length:
        fill = np.full((length - x.shape[0],) + x.shape[1:], pad, dtype=np.float32)
        x = np.concatenate([x, fill])
    return starts, x


def explain_array(model: "nn.Module", x: Any, *, hop: int | None = None,
                  tags: Any = None, contribution: bool = True, batch_size: int = 8,
                  logmel: LogMelConfig | None = None) -> FileMaps:
    """Slide ``model`` over a whole file's input ``x`` and collect every map it offers.

    ``x``: the file's log-mel ``(frames, n_mels)`` (log-mel models) or waveform ``(samples,)``
    (waveform models), starting at time 0. ``hop``: chunk hop in input units (default half a
    chunk). ``tags``: names/indices of the per-tag map rows (``None``: all tags);
    ``contribution=False`` skips the contribution map. The chunks are those the live tagger
    cuts with the same hop (see :func:`file_chunks`): a file shorter than one chunk is padded at
    the end (the log-mel of silence / zeros) and the pad is not in the maps; frames after the
    last whole chunk are NaN. ``logmel``: overrides the model's log-mel settings (waveform
    models: the frame axis of the maps).
    """
    x = np.asarray(x, dtype=np.float32)
    length = int(model.input_length)
    hop = length // 2 if hop is None else hop
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1:
        raise ConfigError(f"hop must be a positive number of input units, got {hop!r}")
    base = time_base(model, logmel)
    want = 2 if base.unit == "frames" else 1
    if x.ndim != want or x.shape[0] == 0:
        layout = "(frames, n_mels)" if want == 2 else "(samples,)"
        raise AudioInputError(f"expected the whole input as {layout}, got shape {x.shape}")
    n = x.shape[0]
    unit = 1 if base.unit == "frames" else base.logmel.hop_length  # input units per frame
    shift = 0.0 if base.unit == "frames" else 0.5  # sample s is frame coordinate s/hop + 0.5
    n_frames = n if base.unit == "frames" else 1 + n // unit
    names = tag_names(model)
    sel = resolve_tags(tags, names)
    starts, xp = file_chunks(x, length, int(hop), pad_value(base.logmel if want == 2 else None))
    from ..models.q2l import Q2L

    kind = "cls" if has_cls_attention(model) else ("q2l" if isinstance(model, Q2L) else None)

    taggram: list[np.ndarray] = []
    acc: dict[str, np.ndarray] = {}
    acc_cover: dict[str, np.ndarray] = {}
    cover = np.zeros(n_frames)
    for i in range(0, len(starts), batch_size):
        s = starts[i:i + batch_size]
        tb, _ = as_batch(model, np.stack([xp[a:a + length] for a in s]))
        maps: dict[str, StepMap] = {}
        if kind == "cls" and contribution:  # one pass: logits, attention and contributions
            maps["contribution"] = cm = contribution_map(model, tb, tags=sel, logmel=base.logmel)
            logits, attn = cm.extra["logits"], cm.extra["attn"]
        elif kind is None:
            logits, attn = forward(model, tb).numpy(), None
        else:
            logits, attn = (t.numpy() for t in forward(model, tb, return_attention=True))
        if kind == "cls":
            maps["attention"] = attention_from_attn(model, attn, logmel=base.logmel)
        elif kind == "q2l":
            maps["q2l"] = q2l_from_attn(model, attn, tags=sel, logmel=base.logmel)
        taggram.append(1.0 / (1.0 + np.exp(-logits.astype(np.float64))))
        for j, a in enumerate(s):
            lo, hi = shift, length / unit + shift  # the chunk in chunk-relative frame coords
            for key, m in maps.items():  # steps clipped to the chunk (q2l's last step overhangs)
                total, c = spread_to_frames(m.values[j], np.clip(m.steps.frames, lo, hi),
                                            n_frames, offset=a / unit)
                acc[key] = acc.get(key, 0.0) + total
                acc_cover[key] = acc_cover.get(key, 0.0) + c
            cover += spread_to_frames(np.ones(1), np.array([[lo, hi]]), n_frames, a / unit)[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = {k: np.where(acc_cover[k] > 1e-9, v / np.maximum(acc_cover[k], 1e-12), np.nan)
               for k, v in acc.items()}
    fs = base.frame_seconds
    first = (starts / unit + shift - 0.5) * fs
    return FileMaps(
        frame_times=np.arange(n_frames) * fs, taggram=np.concatenate(taggram),
        chunk_seconds=np.stack([first, first + length / unit * fs], axis=1),
        tags=names, map_tags=[names[i] for i in sel], coverage=cover,
        attention=avg.get("attention"), contribution=avg.get("contribution"), q2l=avg.get("q2l"),
        base=base)
