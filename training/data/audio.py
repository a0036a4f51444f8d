"""Decode any audio file to float32 mono at a target rate: soundfile, PyAV fallback, soxr."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_tagger.errors import AudioFileError

__all__ = ["load_audio"]


def _soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    return y.mean(axis=1, dtype=np.float32), int(sr)


def _pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise AudioFileError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or getattr(stream, "rate", 0) or 0)
        # Planar float, channels and rate kept: the downmix (channel mean, like the soundfile
        # path; FFmpeg's own mono rematrix adds +3 dB) and soxr resampling happen below.
        resampler = av.AudioResampler(format="fltp")
        parts = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
    if not parts:
        raise AudioFileError(f"{path}: no audio frames could be decoded")
    return np.concatenate(parts).astype(np.float32, copy=False), rate


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Whole file as float32 mono ``(n,)`` at ``sample_rate`` (channels averaged).

    libsndfile (>= 1.1 reads mp3) first, PyAV/FFmpeg for anything it cannot open; resampled
    with soxr's high-quality filter. Raises :class:`AudioFileError` for an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    try:
        y, sr = _soundfile(path)
    except Exception as first:  # libsndfile cannot open it: try FFmpeg
        try:
            y, sr = _pyav(path)
        except AudioFileError:
            raise
        except Exception as second:
            raise AudioFileError(f"cannot decode {path}: soundfile: {str(first).splitlines()[0]}; "
                                 f"PyAV: {str(second).splitlines()[0]}") from None
    if y.size == 0:
        raise AudioFileError(f"{path}: file contains no audio samples")
    if not np.isfinite(y).all():
        raise AudioFileError(f"{path}: decoded audio contains NaN/inf samples")
    if sr != sample_rate:
        import soxr

        y = soxr.resample(y, sr, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(y, dtype=np.float32)
