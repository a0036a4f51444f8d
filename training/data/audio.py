"""Training's audio: the runtime's one decoder (:func:`rt_tagger.sources.decode.read_audio`),
plus the checks a dataset needs (a clip with NaN/inf samples is unreadable, not silence)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_tagger.errors import AudioFileError
from rt_tagger.sources.decode import read_audio

__all__ = ["load_audio"]


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Whole file as float32 mono ``(n,)`` at ``sample_rate`` (channels averaged), decoded
    exactly as the live tagger and ``explain`` decode it: libsndfile first, PyAV/FFmpeg for
    anything it cannot open, soxr's high-quality resampler. Raises :class:`AudioFileError` for
    an unreadable or empty file, or one whose samples are not all finite."""
    y, _ = read_audio(path, sample_rate=sample_rate)
    if not np.isfinite(y).all():
        raise AudioFileError(f"{path}: decoded audio contains NaN/inf samples")
    return y
