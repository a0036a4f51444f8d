"""The attention of every chunk the window has seen, on one time grid (no Qt here).

Each new :class:`~rt_tagger.stream.attention.AttentionOverlay` (one per chunk: the aggregator
places the chunk's ``T`` steps over its span, step ``t`` of spec_att on the chunk's input
frame ``t``) is normalised by its own mean (:func:`rt_tagger.interpret.display.relative`) and
spread over grid cells by overlap, like :func:`rt_tagger.interpret.explain_array` does for
the explain figure (:func:`~rt_tagger.interpret.spread_to_frames`); where chunks overlap their
ratios are averaged. The heat strip and the translucent overlay draw :meth:`values`.

Times here are the aggregator's (a frame's index times the frame hop, the frame's centre);
the views draw cell ``k`` centred on its time, as the explain figure does.
"""
from __future__ import annotations

import math

import numpy as np

from rt_tagger.interpret import spread_to_frames
from rt_tagger.interpret.display import level, overlay_level, ramp, relative

MIN_CELL = 0.004  # seconds: waveform models (1 sample per unit) get a coarser grid
#: The overlay's opacity at a cell is the largest within +-this many cells (+-32 ms at the
#: 16 ms frame hop): a one-frame peak is under one pixel wide at window width, so it is
#: widened to stay visible. The heat strip is drawn exactly, cell by cell.
OVERLAY_WIDEN = 2


class AttentionTrack:
    """``add(overlay)`` per snapshot (each chunk counted once); ``values(row)`` to draw.

    ``cell``: grid step in seconds (the log-mel frame hop); ``keep``: seconds kept (older
    cells scroll out, so memory stays bounded however long the input runs).
    """

    def __init__(self, cell: float, keep: float = 40.0) -> None:
        self.cell = cell * max(1, math.ceil(MIN_CELL / cell - 1e-9))
        self.size = max(16, int(math.ceil(keep / self.cell)))
        self.reset()

    def reset(self) -> None:
        self.first = 0  # absolute index of cell 0 of the arrays
        self.sums: np.ndarray | None = None  # (rows, size) sum of overlap x ratio
        self.cover = np.zeros(self.size)  # (size,) sum of overlaps
        self.kind: str | None = None
        self.last: tuple[float, float] | None = None  # span of the newest chunk added
        self.chunks = 0

    def add(self, overlay) -> bool:
        """Adds ``overlay`` unless it was the last one added; returns whether it was new."""
        times = np.asarray(overlay.times, np.float64)
        key = (round(float(times[0]), 6), round(float(times[-1]), 6))
        if key == self.last:
            return False
        w = np.atleast_2d(relative(overlay.weights))  # (rows, T)
        if self.sums is None or overlay.kind != self.kind or w.shape[0] != self.sums.shape[0]:
            self.reset()
            self.kind = overlay.kind
            self.sums = np.zeros((w.shape[0], self.size))
        # Step edges in cell coordinates: cell k is frame k, whose centre lies at k * cell
        # seconds (the frame coordinates of rt_tagger.interpret.timeaxis: x = t / cell + 0.5).
        x = times / self.cell + 0.5
        lo, hi = int(math.floor(x[0])), int(math.ceil(x[-1]))
        if self.chunks == 0:
            self.first = max(0, hi - self.size)
        if hi - self.first > self.size:  # scroll: drop the oldest cells
            shift = hi - self.first - self.size
            self.sums = np.roll(self.sums, -shift, axis=1)
            self.cover = np.roll(self.cover, -shift)
            self.sums[:, -shift:] = 0.0
            self.cover[-shift:] = 0.0
            self.first += shift
        a = max(lo, self.first)
        if a < hi:
            steps = np.stack([x[:-1], x[1:]], axis=1) - a
            total, cov = spread_to_frames(w, steps, hi - a)
            self.sums[:, a - self.first:hi - self.first] += total
            self.cover[a - self.first:hi - self.first] += cov
        self.last = key
        self.chunks += 1
        return True

    def values(self, row: int = 0) -> tuple[float, np.ndarray] | None:
        """``(time of cell 0, ratios (size,))``: the mean ratio to each chunk's mean per
        cell, NaN where no chunk reached; None before the first chunk."""
        if self.sums is None:
            return None
        r = self.sums[min(row, self.sums.shape[0] - 1)]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(self.cover > 1e-9, r / np.maximum(self.cover, 1e-12), np.nan)
        return self.first * self.cell, ratio


_RAMP = ramp(256)


def strip_rgba(ratio: np.ndarray) -> np.ndarray:
    """``(n, 2, 4)`` uint8 image of the heat strip (two identical rows: pyqtgraph draws no
    one-row RGBA image): the ramp colour of :func:`level`, transparent where NaN."""
    lv = level(ratio)
    known = ~np.isnan(lv)
    idx = np.round(np.where(known, lv, 0.0) * 255).astype(np.intp)
    rgba = np.zeros((ratio.shape[0], 2, 4), np.uint8)
    rgba[:, :, :3] = _RAMP[idx][:, None]
    rgba[:, :, 3] = np.where(known, 255, 0)[:, None]
    return rgba


def widen(x: np.ndarray, k: int = OVERLAY_WIDEN) -> np.ndarray:
    """Sliding maximum over ``+-k`` cells (NaN counts as 0)."""
    x = np.nan_to_num(np.asarray(x, np.float64), nan=0.0)
    out = x.copy()
    for d in range(1, k + 1):
        out[d:] = np.maximum(out[d:], x[:-d])
        out[:-d] = np.maximum(out[:-d], x[d:])
    return out


def overlay_rgba(ratio: np.ndarray, color: tuple[int, int, int], alpha: int) -> np.ndarray:
    """``(n, 2, 4)`` uint8: ``color`` with opacity ``alpha`` x :func:`overlay_level`,
    widened by :func:`widen`."""
    op = widen(overlay_level(ratio))
    rgba = np.empty((ratio.shape[0], 2, 4), np.uint8)
    rgba[:, :, :3] = color
    rgba[:, :, 3] = np.round(op * alpha).astype(np.uint8)[:, None]
    return rgba
