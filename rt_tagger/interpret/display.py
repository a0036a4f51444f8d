"""How attention is shown, the same in the live window and in the ``explain`` figure.

A chunk's attention over its time steps (Eq. 4: [CLS] -> steps, heads summed; or a Q2L tag's
cross-attention) is peaky: with spec_att.w256 the median step gets about half the chunk's
mean and the top 1 % get 8-20 times the mean. Drawn linearly, that is a dark row with a few
spikes. So each chunk is normalised by its own mean (1 = "as much as any step on average"),
chunks that overlap are averaged, and the ratio is shown on a log2 scale from 1/8x to 16x,
through one colour ramp whose lightness rises monotonically (dark blue -> cyan -> white).
"""
from __future__ import annotations

import numpy as np

__all__ = ["COLORS", "LOG2_RANGE", "TICKS", "level", "overlay_level", "ramp", "relative"]

#: Shown range of log2(attention / chunk mean): 1/8x .. 16x; values outside are clipped.
LOG2_RANGE = (-3.0, 4.0)
#: Colour-bar ticks: (log2 value, label).
TICKS = [(-3.0, "1/8x"), (-1.0, "1/2x"), (0.0, "1x"), (2.0, "4x"), (4.0, "16x")]
#: The ramp's stops (position 0..1, RGB): CIE lightness about 4, 29, 74, 99.
COLORS = ((0.0, (12, 12, 28)), (0.35, (20, 70, 120)), (0.7, (0, 200, 235)),
          (1.0, (235, 255, 255)))


def relative(weights: np.ndarray) -> np.ndarray:
    """``weights`` ``(..., T)`` divided by their mean over the last axis (per chunk); a chunk
    whose mean is 0 gives zeros."""
    w = np.asarray(weights, np.float64)
    mean = w.mean(axis=-1, keepdims=True)
    return np.divide(w, mean, out=np.zeros_like(w), where=mean > 0)


def level(ratio: np.ndarray) -> np.ndarray:
    """Position 0..1 on the ramp of a ratio to the mean (log2, clipped to :data:`LOG2_RANGE`);
    NaN stays NaN (no chunk there)."""
    lo, hi = LOG2_RANGE
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (np.log2(np.asarray(ratio, np.float64)) - lo) / (hi - lo)
    return np.where(np.isnan(x), np.nan, np.clip(x, 0.0, 1.0))


def overlay_level(ratio: np.ndarray) -> np.ndarray:
    """Opacity 0..1 of the translucent overlay: 0 at or below the mean, 1 at 16x (log2).
    Steps that get less than their share stay clear, so the overlay marks what was heard."""
    hi = LOG2_RANGE[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log2(np.asarray(ratio, np.float64)) / hi
    return np.where(np.isnan(x), np.nan, np.clip(x, 0.0, 1.0))


def ramp(n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 RGB colours of the ramp, position ``i / (n - 1)`` in row ``i``."""
    pos = np.array([p for p, _ in COLORS])
    rgb = np.array([c for _, c in COLORS], np.float64)
    x = np.linspace(0.0, 1.0, n)
    cols = np.stack([np.interp(x, pos, rgb[:, k]) for k in range(3)], axis=1)
    return np.round(cols).astype(np.uint8)
