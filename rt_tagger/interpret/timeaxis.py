"""Where a model's time steps lie: input frames/samples, spectrogram frames and seconds.

Conventions (the same everywhere in :mod:`rt_tagger.interpret` and the explain figure):

* **frame coordinates**: spectrogram frame ``j`` occupies ``[j, j + 1)``; with ``center=True``
  (every shipped log-mel preset) frame ``j`` is centred on sample ``j * hop_length``, so frame
  coordinate ``x`` is time ``(x - 0.5) * hop_length / sample_rate`` and frame ``j``'s centre
  ``j + 0.5`` is ``j * hop_length / sample_rate`` (``librosa.frames_to_time``).
* **chunk start** ``start`` (seconds): the time of the chunk's first frame (log-mel models) or
  of its first sample (waveform models). All returned seconds are ``start`` + offsets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, ModelError
from ..features.config import LogMelConfig

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["StepTimes", "TimeBase", "spread_to_frames", "step_times", "time_base"]

#: Sample rate of the waveform architectures (raw_att, raw_cnn_l) when no checkpoint says.
WAVEFORM_RATE = 16000


@dataclass(frozen=True)
class TimeBase:
    """How to turn input units into seconds: the log-mel configuration of the model (or of
    the spectrogram shown next to a waveform model) and the model's sample rate."""

    logmel: LogMelConfig
    sample_rate: int
    unit: str  # "frames" (log-mel input) or "samples" (waveform input)

    @property
    def frame_seconds(self) -> float:
        return self.logmel.hop_length / self.sample_rate


def time_base(model: "nn.Module", logmel: LogMelConfig | None = None) -> TimeBase:
    """The model's time base, from its description ``model.cfg`` (every model the factory
    builds has one; see :class:`~rt_tagger.models.cfg.ModelCfg`); ``logmel`` overrides its
    log-mel settings. Waveform models use ``logmel`` (default: the library's log-mel at the
    model's rate) only for display frames."""
    kind = getattr(model, "input_kind", None)
    if kind not in ("logmel", "waveform"):
        raise ModelError(f"{type(model).__name__} does not say its input kind "
                         "(model.input_kind 'logmel' or 'waveform')")
    cfg = getattr(model, "cfg", None)
    config = logmel if logmel is not None else (cfg.logmel if cfg is not None else None)
    if kind == "logmel":
        if config is None:
            raise ConfigError(f"cannot tell the log-mel settings of {type(model).__name__} "
                              "(no model.cfg: build it with create_model); pass "
                              "logmel=LogMelConfig(...)")
        return TimeBase(config, config.sample_rate, "frames")
    rate = int(cfg.sample_rate) if cfg is not None else WAVEFORM_RATE
    config = config or LogMelConfig(sample_rate=rate)
    return TimeBase(config, rate, "samples")


@dataclass(frozen=True)
class StepTimes:
    """The model's ``T`` time steps on every axis a caller may want.

    ``spans``: ``(T, 2)`` ``[start, stop)`` in the model's input ``unit`` ("frames" or
    "samples"), chunk-relative. ``frames``: ``(T, 2)`` float, the same spans in frame
    coordinates (chunk-relative, see the module docstring). ``seconds``: ``(T, 2)`` absolute
    ``[start, stop)`` times.
    """

    spans: np.ndarray
    unit: str
    frames: np.ndarray
    seconds: np.ndarray

    def __len__(self) -> int:
        return int(self.spans.shape[0])

    @property
    def centers(self) -> np.ndarray:
        """``(T,)`` absolute time of each step's centre in seconds."""
        return self.seconds.mean(axis=1)


def step_times(model: "nn.Module", n_steps: int, *, start: float = 0.0,
               base: TimeBase | None = None) -> StepTimes:
    """Map ``n_steps`` front-end steps of ``model`` (``model.time_steps_to_frames()``) to
    input spans, frame coordinates and seconds, for a chunk starting at ``start`` seconds."""
    base = base or time_base(model)
    tm = getattr(model, "time_steps_to_frames", None)
    if tm is None:
        raise ModelError(f"{type(model).__name__} has no time map (time_steps_to_frames)")
    tm = tm()
    if tm.unit != base.unit:
        raise ModelError(f"{type(model).__name__}: time map is in {tm.unit} but the input is "
                         f"{base.unit}")
    first = tm.offset + tm.hop * np.arange(n_steps, dtype=np.int64)
    stop = first + tm.hop if tm.limit is None else np.minimum(first + tm.hop, tm.limit)
    spans = np.stack([first, stop], axis=1)
    if base.unit == "frames":
        frames = spans.astype(np.float64)
    else:  # sample s lies in frame coordinate s / hop + 0.5 (frame j centred on sample j*hop)
        frames = spans / base.logmel.hop_length + 0.5
    seconds = float(start) + (frames - 0.5) * base.frame_seconds
    return StepTimes(spans, tm.unit, frames, seconds)


def spread_to_frames(values: np.ndarray, frames: np.ndarray, n_frames: int,
                     offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Distribute piecewise-constant step values over whole frames.

    ``values`` ``(..., T)``; ``frames`` ``(T, 2)`` contiguous step spans in frame coordinates,
    shifted by ``offset`` frames. Returns ``(weighted_sum (..., n_frames), coverage
    (n_frames,))``: frame ``j`` gets the sum of each step's value times its overlap with
    ``[j, j + 1)``, and ``coverage[j]`` the total overlap; ``sum / coverage`` is the
    overlap-weighted mean. Sums from several chunks can be added before dividing.
    """
    values = np.asarray(values, dtype=np.float64)
    edges = np.append(frames[:, 0], frames[-1, 1]).astype(np.float64) + offset
    grid = np.arange(n_frames + 1, dtype=np.float64)

    def integral(v: np.ndarray) -> np.ndarray:  # running integral of v over frame coordinates
        cum = np.concatenate([np.zeros(v.shape[:-1] + (1,)),
                              np.cumsum(v * np.diff(edges), axis=-1)], axis=-1)
        g = np.clip(grid, edges[0], edges[-1])
        k = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, len(edges) - 2)
        return cum[..., k] + v[..., k] * (g - edges[k])

    total = np.diff(integral(values), axis=-1)
    cover = np.diff(integral(np.ones(values.shape[-1])), axis=-1)
    return total, cover
