"""Decoding audio files and streams into float32 blocks at their native rate.

soundfile (libsndfile) opens wav/flac/ogg/mp3 files; everything else (other containers, pipes,
network streams such as internet radio) goes through PyAV/FFmpeg. Both yield ``(frames,
channels)`` float32 blocks; nothing is resampled here.

Standard input (``-`` or ``pipe:0``) and named pipes (FIFOs) are finite streams: read once,
to their end, through FFmpeg, never probed twice and never "reconnected". Credentials in a
stream URL (``http://user:password@host/``) never appear in a message: see :func:`redact`.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import AudioFileError

URL_SCHEMES = ("http://", "https://", "rtsp://", "rtmp://", "udp://", "tcp://", "icecast://", "pipe:")


#: Input below this rate is refused (files, streams, devices): nothing musical survives it, and a
#: 1 Hz file would otherwise be "tagged" as hours of audio resampled from a few samples.
MIN_SAMPLE_RATE = 4000


def check_sample_rate(rate: int, what: str, error: type[Exception] = AudioFileError) -> None:
    """Raises ``error`` (one line naming ``what``) if ``rate`` is below :data:`MIN_SAMPLE_RATE`."""
    if rate < MIN_SAMPLE_RATE:
        raise error(f"{what}: sample rate {rate} Hz is below the minimum of {MIN_SAMPLE_RATE} Hz "
                    "that rt-tagger accepts")


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#\"'<>\\]*@")


def is_url(target: str) -> bool:
    """A network stream (``http://``, ``rtsp://``, ...); standard input is not one."""
    return str(target).lower().startswith(URL_SCHEMES) and not is_stdin(target)


def is_stdin(target: str) -> bool:
    """``-`` or ``pipe:`` / ``pipe:0``: the audio comes on standard input."""
    text = str(target).strip().lower()
    return text in ("-", "pipe:", "pipe:0")


def is_pipe(target: str | os.PathLike[str]) -> bool:
    """Standard input or a path naming a FIFO (named pipe): a stream that can be read once."""
    text = os.fspath(target)
    if is_stdin(text):
        return True
    if is_url(text):
        return False
    try:
        return stat.S_ISFIFO(os.stat(text).st_mode)
    except (OSError, ValueError):
        return False


def redact(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host`` everywhere in ``text``."""
    return _USERINFO.sub(r"\1***@", str(text))


def redact_all(value):
    """``value`` (JSON-like: dicts, lists, strings) with :func:`redact` applied to every string."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(v) for v in value]
    return value


@dataclass
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int | None  # None for streams of unknown length
    backend: str  # "soundfile" or "pyav"

    @property
    def duration(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


class Decoder:
    """Opens ``target`` (path or URL) and iterates over float32 ``(frames, channels)`` blocks.

    ``backend``: ``"auto"`` (soundfile for the files it reads, else PyAV), or ``"pyav"`` to
    decode a file through FFmpeg even when soundfile could read it."""

    def __init__(self, target: str | os.PathLike[str], *, block_frames: int = 4096,
                 timeout: float = 10.0, backend: str = "auto") -> None:
        if backend not in ("auto", "pyav"):
            raise AudioFileError(f"unknown decoder backend {backend!r}; choose auto or pyav")
        self.target = os.fspath(target)
        self.block_frames = block_frames
        self.timeout = timeout
        self._sf = None
        self._av = None
        self.pipe = is_pipe(self.target)  # stdin or a FIFO: FFmpeg reads it once, no timeout
        if is_stdin(self.target):
            self.target = "pipe:0"
        elif not is_url(self.target) and not self.pipe:
            path = Path(self.target)
            if not path.exists():
                raise AudioFileError(f"no such file: {self.target}")
            if path.is_dir():
                raise AudioFileError(f"{self.target} is a directory, not an audio file")
            if path.stat().st_size == 0:
                raise AudioFileError(f"{self.target} is empty (0 bytes)")
            self._sf = _try_soundfile(self.target) if backend == "auto" else None
        if self._sf is not None:
            f = self._sf
            self.info = AudioInfo(int(f.samplerate), int(f.channels), int(f.frames), "soundfile")
        else:
            self._av, self.info = _open_pyav(self.target, None if self.pipe else timeout)
        try:
            check_sample_rate(self.info.sample_rate, redact(self.target))
        except AudioFileError:
            self.close()
            raise

    def blocks(self) -> Iterator[np.ndarray]:
        if self._sf is not None:
            try:
                while True:
                    block = self._sf.read(self.block_frames, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        return
                    yield block
            except RuntimeError as exc:  # libsndfile decode error mid-file
                raise AudioFileError(f"{self.target}: decoding failed: {exc}") from None
        else:
            yield from _pyav_blocks(self._av, self.target, self.info.channels)

    def close(self) -> None:
        if self._sf is not None:
            self._sf.close()
        if self._av is not None:
            self._av.close()

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _try_soundfile(path: str):
    import soundfile as sf

    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None  # not a format libsndfile reads: try FFmpeg


def _open_pyav(target: str, timeout: float | None):
    """Opens ``target`` with FFmpeg; ``timeout`` None waits as long as a pipe takes."""
    shown = redact(target)
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        raise AudioFileError(f"{shown}: not readable by soundfile and PyAV is not installed") from None
    options = {"rw_timeout": str(int(timeout * 1e6))} if is_url(target) and timeout else {}
    try:
        container = av.open(target, options=options, timeout=timeout)
    except Exception as exc:  # av raises many FFmpeg error types
        raise AudioFileError(f"cannot open {shown}: {redact(_av_reason(exc))}") from None
    if not container.streams.audio:
        container.close()
        raise AudioFileError(f"{shown} has no audio stream")
    stream = container.streams.audio[0]
    rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    channels = int(stream.codec_context.channels or 0) if hasattr(stream.codec_context, "channels") else 0
    if not channels:
        channels = len(stream.codec_context.layout.channels)
    if rate <= 0 or channels <= 0:
        container.close()
        raise AudioFileError(f"{shown}: audio stream has no sample rate or channel layout")
    frames = None
    if stream.duration is not None and stream.time_base is not None:
        frames = int(round(float(stream.duration * stream.time_base) * rate))
    return container, AudioInfo(rate, channels, frames, "pyav")


def _pyav_blocks(container, target: str, channels: int) -> Iterator[np.ndarray]:
    import av

    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout,
                                  rate=stream.codec_context.sample_rate)
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1, channels).astype(np.float32, copy=False)
        for out in resampler.resample(None):  # what the resampler still holds
            yield out.to_ndarray().reshape(-1, channels).astype(np.float32, copy=False)
    except av.error.EOFError:
        return
    except Exception as exc:
        raise AudioFileError(f"{redact(target)}: decoding failed: {redact(_av_reason(exc))}") from None


def _av_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0]


def read_audio(target: str | os.PathLike[str], *, sample_rate: int | None = 16000,
               mono: bool = True, backend: str = "auto") -> tuple[np.ndarray, int]:
    """Whole file (or stream until it ends) as float32; resampled with soxr when asked.

    The one whole-file decoder of rt-tagger: the runtime's :class:`Decoder` (soundfile, else
    PyAV/FFmpeg), channels averaged, soxr's high-quality resampler. ``explain`` and training
    read files with it. Returns ``(audio, rate)``: ``(n,)`` when ``mono``, else
    ``(n, channels)``. A file without a single sample is an :class:`AudioFileError`.
    """
    with Decoder(target, backend=backend) as dec:
        blocks = list(dec.blocks())
        rate = dec.info.sample_rate
    if not blocks or not sum(b.shape[0] for b in blocks):
        raise AudioFileError(f"{redact(os.fspath(target))} contains no audio samples")
    y = np.concatenate(blocks)
    if mono:
        y = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]
    if sample_rate is not None and rate != sample_rate and y.shape[0]:
        import soxr

        y = soxr.resample(y, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
        rate = sample_rate
    return np.ascontiguousarray(y, dtype=np.float32), rate
