"""Log-mel spectrograms, batch and streaming, on three interchangeable backends.

* ``native`` (default): the C++ kernel in ``rt_tagger._core`` (radix-2 real FFT, sparse mel,
  SIMD over frames, GIL released, optional threads).
* ``numba``: a Numba twin of the same algorithm.
* ``numpy``: a plain float64 numpy reference.

Arrays are time-major: ``(n_frames, n_mels)`` float32. With ``center=True`` there are
``1 + len(y) // hop_length`` frames, like ``librosa.feature.melspectrogram``.
"""
from __future__ import annotations

from operator import attrgetter
from typing import Any

import numpy as np

from ..errors import AudioInputError, ConfigError
from .config import MUSICNN, SPEC_ATT_DB, LogMelConfig
from .mel import filterbank_for, hann_periodic, mel_filterbank

__all__ = [
    "BACKENDS",
    "MUSICNN",
    "SPEC_ATT_DB",
    "LogMel",
    "LogMelConfig",
    "StreamingLogMel",
    "hann_periodic",
    "logmel",
    "mel_filterbank",
]

BACKENDS = ("native", "numba", "numpy")
_NONFINITE = ("raise", "zero")


def _check_audio(y: Any, what: str = "audio") -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise AudioInputError(f"{what} must be a numpy array, got {type(y).__name__}")
    if y.dtype != np.float32:
        raise AudioInputError(
            f"{what} must be float32, got {y.dtype} (convert with .astype(np.float32))"
        )
    if y.ndim != 1:
        raise AudioInputError(
            f"{what} must be 1-D mono, got shape {y.shape} (downmix or pick a channel first)"
        )
    if not y.flags.c_contiguous:
        raise AudioInputError(f"{what} must be C-contiguous (use np.ascontiguousarray)")
    return y


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


class LogMel:
    """A configured log-mel transform. ``LogMel(config)(y)`` -> ``(n_frames, n_mels)``.

    Build it once and call it many times: window, FFT tables and mel weights are prepared in
    the constructor. ``n_threads`` > 1 splits frames over threads (native and numba).
    """

    def __init__(
        self, config: LogMelConfig | None = None, *, backend: str = "native", n_threads: int = 1
    ) -> None:
        self.config = config or LogMelConfig()
        self.backend = _check_choice(backend, BACKENDS, "backend")
        if not isinstance(n_threads, int) or n_threads < 1:
            raise ConfigError(f"n_threads must be a positive integer, got {n_threads!r}")
        self.n_threads = n_threads
        c = self.config
        if backend == "native":
            from .. import _core

            self._kernel = _core.LogMelKernel(
                n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels, power=int(c.power),
                center=c.center, pad_mode=c.pad_mode, log=c.log, log_scale=c.log_scale,
                amin=c.amin, top_db=c.top_db, mel=filterbank_for(c),
            )
            self._frames = None
        elif backend == "numba":
            from .numba_kernel import NumbaFrames

            self._frames = NumbaFrames(c, n_threads)
        else:
            from .numpy_ref import NumpyFrames

            self._frames = NumpyFrames(c)

    def n_frames(self, n_samples: int) -> int:
        c = self.config
        padded = n_samples + (c.n_fft if c.center else 0)
        return 0 if padded < c.n_fft else 1 + (padded - c.n_fft) // c.hop_length

    def __call__(self, y: np.ndarray, *, nonfinite: str = "raise") -> np.ndarray:
        """Log-mel of a whole float32 mono signal ``(n,)`` -> ``(n_frames, n_mels)`` float32.

        ``nonfinite="raise"`` rejects NaN/inf samples; ``"zero"`` reads them as silence.
        """
        _check_audio(y)
        _check_choice(nonfinite, _NONFINITE, "nonfinite")
        if self._frames is None:
            return self._kernel.batch(y, n_threads=self.n_threads, nonfinite=nonfinite)
        c = self.config
        if y.size == 0:
            raise AudioInputError("audio is empty (0 samples)")
        n = self.n_frames(y.size)
        if n == 0:
            raise AudioInputError(
                f"audio has {y.size} samples, shorter than one frame ({c.n_fft}) "
                "without centre padding"
            )
        bad = ~np.isfinite(y)
        if bad.any():
            if nonfinite == "raise":
                raise AudioInputError(
                    f"audio contains {int(bad.sum())} NaN/inf sample(s), the first at index "
                    f"{int(np.argmax(bad))}; clean the signal or pass nonfinite='zero' to read "
                    "them as silence"
                )
            y = np.where(bad, np.float32(0), y)
        if c.center:
            pad = c.n_fft // 2
            if c.pad_mode == "reflect" and y.size <= pad:
                raise AudioInputError(
                    "audio too short for reflect padding (needs more than n_fft/2 samples)"
                )
            y = np.pad(y, pad, mode=c.pad_mode)
        return self._frames(y, 0, n)

    def stream(self, *, nonfinite: str = "zero") -> "StreamingLogMel":
        """A new streaming transform with this configuration and backend."""
        return StreamingLogMel(self, nonfinite=nonfinite)


class StreamingLogMel:
    """Push blocks of any size; get exactly the frames that became complete.

    After :meth:`flush`, the frames returned by all calls, concatenated, equal ``LogMel(y)`` of
    the concatenated blocks (bit for bit on the native and numba backends). Non-finite samples
    are read as silence and counted in :attr:`nonfinite_samples` (``nonfinite="zero"``, the
    default for live input), or rejected (``"raise"``); either way they never reach later frames.
    """

    def __init__(self, logmel: LogMel | LogMelConfig | None = None, *, nonfinite: str = "zero",
                 backend: str = "native") -> None:
        if not isinstance(logmel, LogMel):
            logmel = LogMel(logmel, backend=backend)
        self.logmel = logmel
        self.config = logmel.config
        _check_choice(nonfinite, _NONFINITE, "nonfinite")
        if logmel._frames is None:
            from .. import _core

            self._impl = _core.StreamingLogMel(logmel._kernel, nonfinite=nonfinite)
        else:
            from .pystream import PyStream

            self._impl = PyStream(logmel._frames, self.config, nonfinite)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Append float32 mono samples; returns ``(k, n_mels)`` newly completed frames."""
        return self._impl.push(_check_audio(block, "audio block"))

    def flush(self) -> np.ndarray:
        """End of stream: adds the end padding and returns the last frames."""
        return self._impl.flush()

    def reset(self) -> None:
        """Start a new stream with the same configuration."""
        self._impl.reset()

    #: Counters of the implementation: samples pushed, frames made, NaN/inf samples read as 0.
    samples_in = property(attrgetter("_impl.samples_in"))
    frames_out = property(attrgetter("_impl.frames_out"))
    nonfinite_samples = property(attrgetter("_impl.nonfinite_samples"))


def logmel(
    y: np.ndarray,
    config: LogMelConfig | None = None,
    *,
    backend: str = "native",
    n_threads: int = 1,
    nonfinite: str = "raise",
    **overrides: Any,
) -> np.ndarray:
    """Log-mel spectrogram of a float32 mono signal -> ``(n_frames, n_mels)`` float32.

    ``overrides`` replace fields of ``config`` (e.g. ``log="db", top_db=80``).
    """
    config = config or LogMelConfig()
    if overrides:
        config = config.replace(**overrides)
    return LogMel(config, backend=backend, n_threads=n_threads)(y, nonfinite=nonfinite)
