"""Plain numpy reference of the log-mel kernel (float64 internally; slow but obvious)."""
from __future__ import annotations

import numpy as np

from .config import LogMelConfig
from .mel import filterbank_for, hann_periodic


class NumpyFrames:
    """Computes log-mel frames from a buffer of (already padded) samples."""

    def __init__(self, config: LogMelConfig) -> None:
        self.config = config
        self.window = hann_periodic(config.n_fft)
        self.mel = filterbank_for(config).astype(np.float64)

    def __call__(self, buf: np.ndarray, first: int, n_frames: int) -> np.ndarray:
        c = self.config
        if n_frames <= 0:
            return np.zeros((0, c.n_mels), np.float32)
        span = buf[first : first + (n_frames - 1) * c.hop_length + c.n_fft].astype(np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(span, c.n_fft)[:: c.hop_length]
        spec = np.abs(np.fft.rfft(frames * self.window, axis=1))
        if c.power == 2.0:
            spec = spec**2
        mel = spec @ self.mel.T
        return compress_log(mel, c).astype(np.float32)


def compress_log(mel: np.ndarray, c: LogMelConfig) -> np.ndarray:
    """The configured log compression of a (frames, n_mels) mel power array."""
    if c.log == "log10p":
        return np.log10(1.0 + c.log_scale * mel)
    if c.log == "db":
        db = 10.0 * np.log10(np.maximum(mel, c.amin))
        if c.top_db is not None:
            db = np.maximum(db, db.max(axis=1, keepdims=True) - c.top_db)
        return db
    return mel
