"""Log-mel parameters: one frozen dataclass shared by every backend, checkpoint and the CLI."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import DictFields
from ..errors import ConfigError

LOG_MODES = ("log10p", "db", "none")
PAD_MODES = ("constant", "reflect")


@dataclass(frozen=True)
class LogMelConfig(DictFields):
    """Everything that defines a log-mel spectrogram, with librosa-compatible meanings.

    The mel filterbank is librosa's ``filters.mel(htk=False, norm="slaney")``; frames are
    ``center``-padded like ``librosa.stft`` (``pad_mode`` as in librosa's default); the window
    is the periodic Hann window of length ``n_fft``.

    Log compression (``log``):

    * ``"log10p"``: ``log10(1 + log_scale * S)`` — musicnn's compression (``log_scale`` 10000).
    * ``"db"``: ``10 * log10(max(S, amin))``, i.e. ``librosa.power_to_db(S, ref=1.0,
      amin=amin, top_db=None)``; with ``top_db`` set, each frame is floored at its own maximum
      minus ``top_db``. (librosa floors at the maximum of the *whole* array, which a stream
      cannot know in advance; per-frame flooring keeps streaming equal to batch.)
    * ``"none"``: the mel power spectrogram itself.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    fmin: float = 0.0
    fmax: float | None = 8000.0  # None means sample_rate / 2
    power: float = 2.0  # 2: power spectrogram, 1: magnitude
    center: bool = True
    pad_mode: str = "constant"  # librosa >= 0.10 default for stft(center=True)
    log: str = "log10p"
    log_scale: float = 10000.0  # the C in log10(1 + C*S)
    amin: float = 1e-10  # floor inside the dB log
    top_db: float | None = None  # per-frame dynamic-range floor for log="db"

    KEY_NOUN = "log-mel parameter"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def f_max(self) -> float:
        """Upper edge of the filterbank in Hz (``fmax`` resolved)."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def validate(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"invalid log-mel parameters: {msg}")

        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise bad(f"sample_rate must be a positive integer, got {self.sample_rate!r}")
        n = self.n_fft
        if not isinstance(n, int) or n < 16 or n > (1 << 16) or n & (n - 1):
            raise bad(f"n_fft must be a power of two in [16, 65536], got {n!r}")
        if not isinstance(self.hop_length, int) or not 0 < self.hop_length <= n:
            raise bad(f"hop_length must be an integer in [1, n_fft={n}], got {self.hop_length!r}")
        if not isinstance(self.n_mels, int) or not 0 < self.n_mels <= self.n_freqs:
            raise bad(f"n_mels must be in [1, n_fft/2+1={self.n_freqs}], got {self.n_mels!r}")
        nyq = self.sample_rate / 2
        if not (math.isfinite(self.fmin) and 0 <= self.fmin < self.f_max):
            raise bad(f"need 0 <= fmin < fmax, got fmin={self.fmin!r}, fmax={self.fmax!r}")
        if not math.isfinite(self.f_max) or self.f_max > nyq:
            raise bad(f"fmax={self.fmax!r} exceeds the Nyquist frequency {nyq:g} Hz")
        if self.power not in (1.0, 2.0):
            raise bad(f"power must be 1 or 2, got {self.power!r}")
        if self.pad_mode not in PAD_MODES:
            raise bad(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if self.log not in LOG_MODES:
            raise bad(f"log must be one of {LOG_MODES}, got {self.log!r}")
        if not (math.isfinite(self.log_scale) and self.log_scale > 0):
            raise bad(f"log_scale must be positive, got {self.log_scale!r}")
        if not (math.isfinite(self.amin) and self.amin > 0):
            raise bad(f"amin must be positive, got {self.amin!r}")
        if self.top_db is not None and not (math.isfinite(self.top_db) and self.top_db >= 0):
            raise bad(f"top_db must be None or >= 0, got {self.top_db!r}")

    def replace(self, **changes: Any) -> "LogMelConfig":
        return LogMelConfig.from_dict({**self.to_dict(), **changes})


#: musicnn (Pons et al.): log10(1 + 10000 * mel power), 96 bands up to 8 kHz.
MUSICNN = LogMelConfig()
#: Won et al.'s Spec_Att code: power_to_db of the same mel power.
SPEC_ATT_DB = LogMelConfig(log="db", top_db=80.0)
