"""A chunk's attention on absolute time, placed by the one time axis :mod:`rt_tagger.interpret`
uses (``explain`` and the live window put the same attention at the same seconds).

:class:`AttentionAxis` reduces the engine's raw attention of one chunk with
:func:`~rt_tagger.interpret.attention_from_attn` ([CLS] self-attention, last layer, heads
summed: Eq. 4 of the Spec_Att paper) or :func:`~rt_tagger.interpret.q2l_from_attn` (per-tag
cross-attention, last layer, heads averaged), whose steps come from
:func:`~rt_tagger.interpret.step_times`. The overlay keeps the chunk the engine saw, so the
GUI's contribution worker gets exactly that input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ATTENTION_CELLS", "AttentionAxis", "AttentionOverlay", "pool_cells"]

#: The JSON ``attention`` of an update: at most this many cells over the chunk.
ATTENTION_CELLS = 64


@dataclass(frozen=True)
class AttentionOverlay:
    """Latest attention, aligned to absolute time: ``weights[..., i]`` covers
    ``[times[i], times[i + 1])`` seconds. ``weights`` is ``(T,)`` for [CLS] self-attention
    or ``(n_tags, T)`` for Q2L per-tag cross-attention. ``chunk``: the model input the engine
    saw, ``start``: its start (seconds, the time of its first frame/sample)."""

    times: np.ndarray
    weights: np.ndarray
    kind: str  # "cls" or "per_tag"
    chunk: np.ndarray | None = None
    start: float = 0.0


def pool_cells(weights: np.ndarray, cells: int = ATTENTION_CELLS) -> np.ndarray:
    """Sum ``weights`` (over time) into at most ``cells`` equal spans (fractional edges are
    split proportionally), so the cells keep the total attention."""
    w = np.asarray(weights, np.float64)
    if w.size <= cells:
        return w
    cum = np.concatenate([[0.0], np.cumsum(w)])
    edges = np.linspace(0, w.size, cells + 1)
    return np.diff(np.interp(edges, np.arange(w.size + 1), cum))


class _Described:
    """What :mod:`rt_tagger.interpret` reads of a model to place its attention (input kind,
    description, tags, time map), from a checkpoint and the time map an export carries: the
    onnxruntime runtime places attention without torch."""

    def __init__(self, checkpoint, time_map: dict) -> None:
        from ..models.timemap import TimeMap

        self.cfg = checkpoint.cfg
        self.input_kind, self.n_tags = self.cfg.input_kind, self.cfg.n_tags
        self._time_map = TimeMap.from_dict(time_map)

    def time_steps_to_frames(self):
        return self._time_map


class AttentionAxis:
    """Places the attention of the model described by ``checkpoint`` (the engine's).

    The step map comes from ``model`` if given (a PyTorch engine's), else from ``time_map``
    (what an ONNX export records, :func:`rt_tagger.export.export_onnx`), else from the
    architecture built once, lazily, from the checkpoint's arguments and given the checkpoint's
    description (``cfg``): the map depends on those only, not on weights.
    """

    def __init__(self, checkpoint, model=None, time_map: dict | None = None) -> None:
        self.checkpoint = checkpoint
        self._model = model
        if (model is None or not hasattr(model, "time_steps_to_frames")) and time_map:
            self._model = _Described(checkpoint, time_map)

    def model(self):
        if self._model is None or not hasattr(self._model, "time_steps_to_frames"):
            from ..factory import create_model

            ck = self.checkpoint
            m = create_model(ck.arch, **ck.arch_args)
            cfg = getattr(ck, "cfg", None)
            if cfg is not None:
                m.cfg = cfg  # the checkpoint's rate and log-mel, not the architecture's defaults
            self._model = m
        return self._model

    def overlay(self, attn: np.ndarray, start: float, chunk: np.ndarray | None = None) -> AttentionOverlay:
        """One chunk's raw attention ``attn`` (no batch axis) starting at ``start`` seconds."""
        from ..interpret import attention_from_attn, q2l_from_attn

        a = np.asarray(attn)[None]
        if a.ndim == 5 and a.shape[-1] == a.shape[-2]:  # (1, layers, heads, T+1, T+1)
            m = attention_from_attn(self.model(), a, start=start, batched=False)
            kind = "cls"
        elif a.ndim == 5:  # q2l: (1, layers, heads, n_tags, T)
            m = q2l_from_attn(self.model(), a, start=start, batched=False)
            kind = "per_tag"
        else:
            raise ValueError(f"unexpected attention shape {np.asarray(attn).shape}")
        sec = m.steps.seconds
        times = np.append(sec[:, 0], sec[-1, 1])
        return AttentionOverlay(times, np.asarray(m.values, np.float32), kind, chunk, float(start))
