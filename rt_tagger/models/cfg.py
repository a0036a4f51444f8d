"""``ModelCfg``: everything about a model except its weights, known before it is built.

The registry computes one from an architecture's keyword arguments (no network is built), a
checkpoint holds one (plus weights and provenance), and every model the factory builds carries
its own as ``model.cfg``. So training, the runtime and ``interpret`` read a model's input
(kind, length, sample rate, log-mel) and output (tags, thresholds) from one place.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..features.config import LogMelConfig

__all__ = ["INPUT_KINDS", "ModelCfg"]

INPUT_KINDS = ("logmel", "waveform")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class ModelCfg:
    """A model's description.

    ``arch``/``args``: registered architecture and the keyword arguments it is built with (as
    given: defaults are not filled in, so a checkpoint stores what the user chose).
    ``input_kind``: ``"logmel"`` (input ``(batch, input_length, n_mels)``) or ``"waveform"``
    (input ``(batch, input_length)`` samples). ``sample_rate``: Hz of the audio the model
    hears. ``logmel``: the features of a log-mel model (``None`` for a waveform model).
    ``n_tags`` outputs; ``tags`` (their names) and ``thresholds`` (per-tag decision thresholds
    on sigmoid outputs) are ``None`` until a model is trained.
    """

    arch: str
    args: dict[str, Any] = field(hash=False)
    input_kind: str
    input_length: int
    sample_rate: int
    logmel: LogMelConfig | None
    n_tags: int
    tags: tuple[str, ...] | None = None
    thresholds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"{self.arch}: {msg}")

        if self.input_kind not in INPUT_KINDS:
            raise bad(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        for name in ("input_length", "n_tags", "sample_rate"):
            if not _positive_int(getattr(self, name)):
                raise bad(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if (self.logmel is None) != (self.input_kind == "waveform"):
            raise bad("a log-mel model needs its log-mel settings and a waveform model has none")
        if self.logmel is not None and self.logmel.sample_rate != self.sample_rate:
            raise bad(f"log-mel sample_rate {self.logmel.sample_rate} != sample_rate "
                      f"{self.sample_rate}")
        if self.tags is not None:
            object.__setattr__(self, "tags", tuple(self.tags))
            if len(self.tags) != self.n_tags:
                raise bad(f"{len(self.tags)} tag names for {self.n_tags} outputs")
        if self.thresholds is not None:
            object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
            if len(self.thresholds) != self.n_tags:
                raise bad(f"{len(self.thresholds)} thresholds for {self.n_tags} outputs")

    @property
    def n_mels(self) -> int | None:
        return None if self.logmel is None else self.logmel.n_mels

    @property
    def unit_seconds(self) -> float:
        """Seconds per input unit: one log-mel frame (hop) or one sample."""
        hop = 1 if self.logmel is None else self.logmel.hop_length
        return hop / self.sample_rate

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one chunk: ``(input_length, n_mels)`` or ``(input_length,)``."""
        if self.logmel is None:
            return (self.input_length,)
        return (self.input_length, self.logmel.n_mels)

    def replace(self, **changes: Any) -> "ModelCfg":
        return dataclasses.replace(self, **changes)
