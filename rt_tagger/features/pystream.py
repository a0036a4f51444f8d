"""Streaming framer for the Python backends (numba, numpy), mirroring csrc/streaming.h."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import AudioInputError
from .config import LogMelConfig

FramesFn = Callable[[np.ndarray, int, int], np.ndarray]


class PyStream:
    """Holds the tail of the centre-padded stream and computes frames as they complete."""

    def __init__(self, frames: FramesFn, config: LogMelConfig, nonfinite: str) -> None:
        self._frames = frames
        self.config = config
        self._nonfinite = nonfinite
        self.reset()

    def reset(self) -> None:
        c = self.config
        self._pad = c.n_fft // 2 if c.center else 0
        self._reflect = c.center and c.pad_mode == "reflect"
        self._buf = np.zeros(self._pad, np.float32)  # padded positions [start, start+len)
        self._start = 0
        self._head_ready = not self._reflect
        self.samples_in = 0
        self.frames_out = 0
        self.nonfinite_samples = 0
        self._flushed = False

    def _ready(self, padded_len: int) -> int:
        c = self.config
        return 0 if padded_len < c.n_fft else 1 + (padded_len - c.n_fft) // c.hop_length

    def _emit(self) -> np.ndarray:
        last = self._ready(self._start + self._buf.size)
        n = last - self.frames_out
        if n <= 0:
            return np.zeros((0, self.config.n_mels), np.float32)
        first = self.frames_out * self.config.hop_length - self._start
        out = self._frames(self._buf, first, n)
        self.frames_out = last
        keep = min(self.frames_out * self.config.hop_length, self._start + self._buf.size - self.config.n_fft)
        drop = max(0, keep - self._start)
        self._buf = self._buf[drop:]
        self._start += drop
        return out

    def push(self, block: np.ndarray) -> np.ndarray:
        if self._flushed:
            raise AudioInputError("stream already flushed; call reset() to start a new one")
        bad = ~np.isfinite(block)
        if bad.any():
            if self._nonfinite == "raise":
                raise AudioInputError(
                    f"audio contains {int(bad.sum())} NaN/inf sample(s), the first at index "
                    f"{int(np.argmax(bad))}; clean the signal or pass nonfinite='zero' to read "
                    "them as silence"
                )
            self.nonfinite_samples += int(bad.sum())
            block = np.where(bad, np.float32(0), block)
        self._buf = np.concatenate([self._buf, block.astype(np.float32, copy=False)])
        self.samples_in += block.size
        if not self._head_ready:
            if self.samples_in < self._pad + 1:
                return np.zeros((0, self.config.n_mels), np.float32)
            p = self._pad
            self._buf[:p] = self._buf[2 * p : p : -1]  # padded[j] = x[pad - j]
            self._head_ready = True
        return self._emit()

    def flush(self) -> np.ndarray:
        if self._flushed or self.samples_in == 0:
            self._flushed = True
            return np.zeros((0, self.config.n_mels), np.float32)
        p = self._pad
        if self._reflect:
            if self.samples_in < p + 1:
                raise AudioInputError(
                    "signal too short for reflect padding (needs more than n_fft/2 samples)"
                )
            tail = self._buf[-2 : -2 - p : -1] if p else self._buf[:0]
        else:
            tail = np.zeros(p, np.float32)
        self._buf = np.concatenate([self._buf, tail])
        out = self._emit()
        self._flushed = True
        return out
