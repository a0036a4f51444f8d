"""Attention heat maps (Won et al. 2019, Eq. 4) and Q2L per-tag cross-attention time maps.

Each map comes from one forward pass — the same one that gives the logits — or from an
``attn`` array an engine already returned (:func:`attention_from_attn`, :func:`q2l_from_attn`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AudioInputError, ConfigError, ModelError
from ..features.config import LogMelConfig
from .timeaxis import StepTimes, spread_to_frames, step_times, time_base

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["StepMap", "attention_from_attn", "attention_map", "q2l_from_attn", "q2l_tag_maps",
           "resolve_tags", "tag_names"]

Heads = str | int | None  # "sum" | "mean" | head index | None (keep the heads axis)


@dataclass
class StepMap:
    """Values over the model's time steps plus where those steps are.

    ``values`` ``(..., T)``; the leading axes depend on the call (batch, layers, heads, tags)
    and are named in ``axes``. ``steps`` maps step ``t`` to frames and seconds. ``tags``:
    names of the tag axis (contribution and Q2L maps); ``probs``: the unmanipulated tag
    probabilities of the same pass, ``(..., n_tags)`` or ``(..., len(tags))``.
    """

    values: np.ndarray
    steps: StepTimes
    axes: tuple[str, ...]
    tags: list[str] | None = None
    probs: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def per_frame(self, n_frames: int | None = None) -> np.ndarray:
        """``values`` spread over spectrogram frames ``(..., n_frames)`` (chunk-relative,
        overlap-weighted mean; frames no step covers are NaN)."""
        if n_frames is None:
            n_frames = int(np.ceil(self.steps.frames[-1, 1]))
        total, cover = spread_to_frames(self.values, self.steps.frames, n_frames)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cover > 1e-9, total / np.maximum(cover, 1e-12), np.nan)


def tag_names(model: "nn.Module") -> list[str]:
    """The model's tag names (``model.cfg.tags``), or ``tag0 .. tagN-1`` for an untrained model."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and cfg.tags is not None:
        return list(cfg.tags)
    return [f"tag{i}" for i in range(int(model.n_tags))]


def resolve_tags(tags: Sequence[int | str] | int | str | None, names: Sequence[str]) -> list[int]:
    """Tag indices from names and/or indices (``None``: all). Unknown names or out-of-range
    indices raise :class:`ConfigError` listing the valid tags."""
    if tags is None:
        return list(range(len(names)))
    if isinstance(tags, (str, int)):
        tags = [tags]
    lookup = {n.lower(): i for i, n in enumerate(names)}
    out = []
    for t in tags:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            if not 0 <= int(t) < len(names):
                raise ConfigError(f"tag index {t} out of range: the model has {len(names)} tags "
                                  f"(0..{len(names) - 1})")
            out.append(int(t))
        elif isinstance(t, str) and t.lower() in lookup:
            out.append(lookup[t.lower()])
        else:
            raise ConfigError(f"unknown tag {t!r}; valid tags: {', '.join(names)}")
    if not out:
        raise ConfigError("no tags selected (empty tag list)")
    return out


def as_batch(model: "nn.Module", x: Any) -> tuple["torch.Tensor", bool]:
    """``x`` as a float32 ``(B, ...)`` tensor and whether a batch axis was given."""
    import torch

    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
    per_chunk = 2 if model.input_kind == "logmel" else 1
    if t.dim() == per_chunk:
        return t.float()[None], False
    if t.dim() != per_chunk + 1:
        layout = "(frames, n_mels)" if per_chunk == 2 else "(samples,)"
        raise AudioInputError(f"{type(model).__name__} takes chunks {layout} or a batch of them, "
                              f"got shape {tuple(t.shape)}")
    return t.float(), True


def forward(model: "nn.Module", x: "torch.Tensor", **kw: Any) -> Any:
    """Run ``model`` in eval mode without gradients (its train/eval mode is restored)."""
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x, **kw)
    finally:
        model.train(was)


def _reduce(a: np.ndarray, layer: int | None, heads: Heads, axes: list[str]) -> np.ndarray:
    """``a`` ``(B, L, H, ..., T)``: pick/keep layers, reduce heads; ``axes`` updated in place."""
    if layer is not None:
        n = a.shape[1]
        if not -n <= layer < n:
            raise ConfigError(f"layer {layer} out of range: the model has {n} attention layers")
        a = a[:, layer]
        axes.remove("layer")
    h = axes.index("head")
    if heads == "sum":
        a = a.sum(axis=h)
    elif heads == "mean":
        a = a.mean(axis=h)
    elif isinstance(heads, (int, np.integer)) and not isinstance(heads, bool):
        if not -a.shape[h] <= heads < a.shape[h]:
            raise ConfigError(f"head {heads} out of range: the model has {a.shape[h]} heads")
        a = np.take(a, int(heads), axis=h)
    elif heads is None:
        return a
    else:
        raise ConfigError(f"heads must be 'sum', 'mean', a head index or None, got {heads!r}")
    axes.remove("head")
    return a


def attention_from_attn(model: "nn.Module", attn: Any, *, layer: int | None = -1,
                        heads: Heads = "sum", start: float | Sequence[float] = 0.0,
                        logmel: LogMelConfig | None = None, batched: bool = True) -> StepMap:
    """[CLS] -> time-step attention from an ``attn`` array ``(B, layers, heads, T+1, T+1)``
    (what ``model(x, return_attention=True)`` or an engine returns; index 0 = [CLS]).

    ``values`` ``(B, [layers], [heads], T)``: row 0, columns ``1..T`` of the chosen ``layer``
    (``None``: all layers) with ``heads`` summed (the paper's Eq. 4 heat map), averaged, one
    head picked, or kept (``None``). The weight [CLS] puts on itself is left out, so a head's
    row sums to ``1 - attn[..., 0, 0]``; it is kept in ``extra["cls_self"]``. ``start``: chunk
    start time(s) in seconds (one per chunk gives ``extra["starts"]``; ``steps`` uses the first).
    """
    a = np.asarray(attn.detach().cpu() if hasattr(attn, "detach") else attn, dtype=np.float64)
    if a.ndim != 5 or a.shape[-1] != a.shape[-2] or a.shape[-1] < 2:
        raise ModelError(f"expected [CLS] attention of shape (batch, layers, heads, T+1, T+1), "
                         f"got {a.shape}")
    axes = ["batch", "layer", "head", "time"]
    values = _reduce(a[..., 0, 1:], layer, heads, axes)
    cls_self = _reduce(a[..., 0, :1], layer, heads, ["batch", "layer", "head", "time"])[..., 0]
    starts = np.broadcast_to(np.asarray(start, dtype=np.float64), (a.shape[0],))
    steps = step_times(model, a.shape[-1] - 1, start=float(starts[0]),
                       base=time_base(model, logmel))
    if not batched:
        values, cls_self = values[0], cls_self[0]
        axes = axes[1:]
    return StepMap(values, steps, tuple(axes), extra={"cls_self": cls_self, "starts": starts})


def attention_map(model: "nn.Module", chunks: Any, *, layer: int | None = -1,
                  heads: Heads = "sum", start: float | Sequence[float] = 0.0,
                  logmel: LogMelConfig | None = None) -> StepMap:
    """Attention heat map of a chunk ``(frames, n_mels)`` / ``(samples,)`` or a batch of them,
    from one forward pass; ``probs`` holds that pass's tag probabilities. See
    :func:`attention_from_attn` for ``layer``, ``heads``, ``start`` and the result."""
    import torch

    if not has_cls_attention(model):
        raise ModelError(f"{type(model).__name__} has no [CLS] self-attention (attention maps "
                         "need spec_att or raw_att; q2l: use q2l_tag_maps)")
    x, batched = as_batch(model, chunks)
    logits, attn = forward(model, x, return_attention=True)
    out = attention_from_attn(model, attn, layer=layer, heads=heads, start=start,
                              logmel=logmel, batched=batched)
    probs = torch.sigmoid(logits).numpy()
    out.probs = probs if batched else probs[0]
    return out


def has_cls_attention(model: "nn.Module") -> bool:
    """True for models whose back-end is the [CLS] self-attention (spec_att, raw_att, musicnn_att)."""
    from ..models.attention import AttentionBackend

    return isinstance(getattr(model, "backend", None), AttentionBackend)


def q2l_from_attn(model: "nn.Module", cross: Any, *, tags: Any = None,
                  layer: int | None = -1, heads: Heads = "mean",
                  start: float | Sequence[float] = 0.0, logmel: LogMelConfig | None = None,
                  batched: bool = True) -> StepMap:
    """Per-tag time maps from Q2L cross-attention ``(B, decoder_layers, heads, n_tags, T)``.

    ``values`` ``(B, [layers], [heads], len(tags), T)``; with ``heads="mean"`` (default) each
    tag's row sums to 1 over time, with ``"sum"`` to the number of heads. ``tags``: names or
    indices (``None``: all).
    """
    a = np.asarray(cross.detach().cpu() if hasattr(cross, "detach") else cross, dtype=np.float64)
    if a.ndim != 5:
        raise ModelError(f"expected Q2L cross-attention (batch, layers, heads, n_tags, T), "
                         f"got shape {a.shape}")
    names = tag_names(model)
    if a.shape[3] != len(names):
        raise ModelError(f"cross-attention has {a.shape[3]} tag queries, the model {len(names)}")
    idx = resolve_tags(tags, names)
    axes = ["batch", "layer", "head", "tag", "time"]
    values = _reduce(a[:, :, :, idx], layer, heads, axes)
    starts = np.broadcast_to(np.asarray(start, dtype=np.float64), (a.shape[0],))
    steps = step_times(model, a.shape[-1], start=float(starts[0]), base=time_base(model, logmel))
    if not batched:
        values, axes = values[0], axes[1:]
    return StepMap(values, steps, tuple(axes), tags=[names[i] for i in idx],
                   extra={"tag_index": idx, "starts": starts})


def q2l_tag_maps(model: "nn.Module", chunks: Any, *, tags: Any = None, layer: int | None = -1,
                 heads: Heads = "mean", start: float | Sequence[float] = 0.0,
                 logmel: LogMelConfig | None = None) -> StepMap:
    """Q2L per-tag cross-attention time maps of a chunk or batch from one forward pass
    (``probs``: that pass's probabilities of the selected tags). See :func:`q2l_from_attn`."""
    import torch

    from ..models.q2l import Q2L

    if not isinstance(model, Q2L):
        raise ModelError(f"q2l_tag_maps needs a q2l model, got {type(model).__name__}")
    x, batched = as_batch(model, chunks)
    logits, cross = forward(model, x, return_attention=True)
    out = q2l_from_attn(model, cross, tags=tags, layer=layer, heads=heads, start=start,
                        logmel=logmel, batched=batched)
    probs = torch.sigmoid(logits).numpy()[:, out.extra["tag_index"]]
    out.probs = probs if batched else probs[0]
    return out
