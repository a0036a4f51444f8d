"""Tag-wise contribution heat maps (Won et al. 2019, section 5.3).

For each time step ``t`` the last encoder layer's [CLS] attention row is set to 1 on ``t`` and
0 elsewhere (every head), and the tag probabilities of that manipulated pass are recorded:
a ``(tags, T)`` map per chunk. Three exact ways to compute the ``T`` passes:

* ``"full"``: the whole model on a batch of ``T`` copies of the chunk;
* ``"backend"``: the front-end once, the Transformer back-end on ``T`` copies of its output;
* ``"last_layer"`` (default): the normal pass only; with a one-hot [CLS] row
  the last layer's [CLS] output for step ``t`` only needs the value vector of ``t``, so the
  ``T`` manipulated [CLS] outputs are one batched residual + LayerNorm + FFN + classifier on
  the ``T`` value vectors. Rows other than [CLS] never reach the logits.

All three agree with a loop of single manipulated passes (tests);
``bench/interpret_contribution.py`` measures them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ModelError
from ..features.config import LogMelConfig
from .maps import StepMap, as_batch, forward, resolve_tags, tag_names
from .timeaxis import step_times, time_base

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["METHODS", "contribution_map", "top_tags"]

METHODS = ("last_layer", "backend", "full")


def top_tags(probs: np.ndarray, k: int, names: Sequence[str] | None = None) -> list[Any]:
    """Indices (or names) of the ``k`` most probable tags of ``probs`` ``(n_tags,)``,
    most probable first; ``probs`` of several chunks ``(B, n_tags)`` are averaged first."""
    p = np.asarray(probs, dtype=np.float64)
    p = p.mean(axis=0) if p.ndim == 2 else p
    order = [int(i) for i in np.argsort(-p, kind="stable")[:k]]
    return [names[i] for i in order] if names is not None else order


def _one_pass(model: "nn.Module", x: "torch.Tensor") -> tuple[Any, ...]:
    """``(logits, attn, feats, h)``: one normal pass with attention, capturing the back-end's
    input ``feats`` and the last encoder layer's input ``h``."""
    feats: list[Any] = []
    h: list[Any] = []
    hooks = [model.backend.register_forward_pre_hook(lambda m, a: feats.append(a[0])),
             model.backend.layers[-1].register_forward_pre_hook(lambda m, a: h.append(a[0]))]
    try:
        logits, attn = forward(model, x, return_attention=True)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, attn, feats[0], h[0]


def _last_layer(model: "nn.Module", h: "torch.Tensor", sel: list[int]) -> "torch.Tensor":
    """``(B, T, tags)`` logits of the one-hot manipulated passes from the last layer's input
    ``h`` ``(B, T + 1, W)``, closed form (see the module docstring)."""
    import torch

    be = model.backend
    last = be.layers[-1]
    with torch.no_grad():
        # One-hot on step t in every head: the attention output is out(v(h_t)) (heads concatenated).
        a = last.attn.out(last.attn.v(h[:, 1:]))  # (B, T, W)
        y = last.norm1(h[:, :1] + a)
        y = last.norm2(y + last.ffn(y))
        w, b = be.classifier.weight[sel], be.classifier.bias[sel]
        return y @ w.T + b


def _manipulated(run: Any, inputs: "torch.Tensor", n_steps: int, batch_size: int) -> "torch.Tensor":
    """``(T, n_tags)`` logits of ``run(copies, one_hot_rows)`` for the T one-hot rows."""
    import torch

    eye = torch.eye(n_steps, dtype=inputs.dtype)
    out = []
    with torch.no_grad():
        for i in range(0, n_steps, batch_size):
            rows = eye[i:i + batch_size]
            copies = inputs.expand(rows.shape[0], *inputs.shape[1:])
            out.append(run(copies, rows))
    return torch.cat(out)


def contribution_map(model: "nn.Module", chunks: Any, *, tags: Any = None,
                     topk: int | None = None, method: str = "last_layer", batch_size: int = 64,
                     start: float | Sequence[float] = 0.0,
                     logmel: LogMelConfig | None = None) -> StepMap:
    """Tag-wise contribution heat map of a chunk (or a batch of chunks).

    ``tags``: names or indices (``None``: all tags); or ``topk``: the ``k`` tags the
    unmanipulated pass finds most probable (averaged over the batch), most probable first —
    for a live view, one pass gives these, their maps and the attention. ``method``: ``"last_layer"`` (fast),
    ``"backend"`` or ``"full"`` (see the module docstring); ``batch_size``: manipulated passes
    run at once by the two batched methods. Returns a :class:`StepMap` with ``values``
    ``([B], len(tags), T)``: probability of each tag when [CLS] attends only to step ``t``;
    ``probs`` ``([B], len(tags))``: the unmanipulated probabilities; ``tags``: names;
    ``extra["attn"]``: the attention of the unmanipulated pass ``(B, layers, heads, T+1, T+1)``
    (for :func:`~.maps.attention_from_attn`: one pass gives logits, attention and contributions).
    """
    import torch

    from .maps import has_cls_attention

    if not has_cls_attention(model):
        raise ModelError(f"{type(model).__name__} has no [CLS] self-attention to manipulate "
                         "(contribution maps need spec_att or raw_att)")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if topk is not None and (tags is not None or isinstance(topk, bool)
                             or not isinstance(topk, int) or topk < 1):
        raise ConfigError(f"topk must be a positive integer and excludes tags, got topk={topk!r}"
                          f", tags={tags!r}")
    names = tag_names(model)
    sel = resolve_tags(tags, names)
    x, batched = as_batch(model, chunks)
    was = model.training
    model.eval()
    try:
        logits, attn, feats, h = _one_pass(model, x)
        if topk is not None:
            sel = top_tags(torch.sigmoid(logits).numpy(), topk)
        maps = []
        for b in range(x.shape[0]):
            if method == "last_layer":
                m = _last_layer(model, h[b:b + 1], sel)[0]
            elif method == "backend":
                m = _manipulated(lambda f, r: model.backend(f, cls_attention=r),
                                 feats[b:b + 1], feats.shape[1], batch_size)[:, sel]
            else:
                m = _manipulated(lambda c, r: model(c, cls_attention=r),
                                 x[b:b + 1], feats.shape[1], batch_size)[:, sel]
            maps.append(torch.sigmoid(m).T)
    finally:
        model.train(was)
    values = torch.stack(maps).numpy().astype(np.float64)
    probs = torch.sigmoid(logits[:, sel]).numpy().astype(np.float64)
    starts = np.broadcast_to(np.asarray(start, dtype=np.float64), (x.shape[0],))
    steps = step_times(model, feats.shape[1], start=float(starts[0]), base=time_base(model, logmel))
    axes = ("batch", "tag", "time")
    if not batched:
        values, probs, axes = values[0], probs[0], axes[1:]
    return StepMap(values, steps, axes, tags=[names[i] for i in sel], probs=probs,
                   extra={"tag_index": sel, "starts": starts, "method": method,
                          "attn": attn.numpy(), "logits": logits.numpy()})
