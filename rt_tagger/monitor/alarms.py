"""Dead-air and loudness alarms, fed by a loudness meter from the pipeline's feature thread.

:class:`MeterTap` is a pipeline tap: it measures every block of raw audio (mono mix, source
rate) with a :class:`~rt_tagger.monitor.loudness.LoudnessMeter` and checks the alarms once per
completed 100 ms sub-block, so an alarm's time is exact to 0.1 s of audio:

* ``silence_start``: the level (unweighted RMS of the last 400 ms) stayed below
  ``silence_db`` for ``silence_seconds``; ``silence_end`` when it rises above it again;
* ``loudness_high`` / ``loudness_low`` (``"state": "start"``): short-term loudness (3 s) above
  ``loudness_high`` / below ``loudness_low`` LUFS for ``loudness_seconds`` (a silent stretch is
  dead air, not a low-loudness alarm); ``"state": "end"`` once it is back within the limit by
  ``hysteresis`` LU.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, fields

from ..errors import ConfigError
from .loudness import LoudnessMeter


@dataclass
class AlarmConfig:
    silence_db: float = -50.0  # dBFS, unweighted RMS over 400 ms
    silence_seconds: float = 10.0
    loudness_high: float | None = -8.0  # LUFS short-term; None switches the alarm off
    loudness_low: float | None = -36.0
    loudness_seconds: float = 10.0
    hysteresis: float = 1.0  # LU

    def __post_init__(self) -> None:
        for name in ("silence_seconds", "loudness_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)!r}")
        if not self.silence_db < 0:
            raise ConfigError(f"silence_db must be below 0 dBFS, got {self.silence_db!r}")
        if self.hysteresis < 0:
            raise ConfigError(f"hysteresis must be >= 0 LU, got {self.hysteresis!r}")
        if (self.loudness_high is not None and self.loudness_low is not None
                and not self.loudness_low < self.loudness_high):
            raise ConfigError(f"loudness_low ({self.loudness_low}) must be below "
                              f"loudness_high ({self.loudness_high})")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _r(v: float) -> float | None:
    return round(v, 2) if math.isfinite(v) else None


class _Condition:
    """One alarm: on after ``hold`` seconds of ``bad``, off when ``ok``."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.since: float | None = None
        self.active = False

    def step(self, t: float, bad: bool, ok: bool) -> str | None:
        if self.active:
            if ok:
                self.active, since = False, self.since
                self.since = None
                return "end" if since is not None else None
            return None
        if not bad:
            self.since = None
            return None
        if self.since is None:
            self.since = t - 0.1  # the sub-block that just ended started 100 ms ago
        if t - self.since >= self.hold - 1e-9:
            self.active = True
            return "start"
        return None


class Alarms:
    """Evaluates the alarms of one source, one 100 ms sub-block at a time."""

    def __init__(self, config: AlarmConfig | None = None) -> None:
        self.config = config or AlarmConfig()
        c = self.config
        self.silence = _Condition(c.silence_seconds)
        self.high = _Condition(c.loudness_seconds)
        self.low = _Condition(c.loudness_seconds)

    def step(self, t: float, level_db: float, short_term: float) -> list[dict]:
        c = self.config
        out: list[dict] = []
        silent = level_db < c.silence_db
        since = self.silence.since
        change = self.silence.step(t, silent, not silent)
        if change == "start":
            out.append({"type": "event", "event": "silence_start", "t": round(t, 3),
                        "since": round(self.silence.since, 3), "level_db": _r(level_db),
                        "threshold_db": c.silence_db,
                        "detail": f"level below {c.silence_db:g} dBFS for {c.silence_seconds:g} s"})
        elif change == "end":
            out.append({"type": "event", "event": "silence_end", "t": round(t, 3),
                        "silent_for": round(t - since, 3), "level_db": _r(level_db),
                        "detail": f"audio back after {t - since:.1f} s of silence"})
        for cond, name, limit, sign in ((self.high, "loudness_high", c.loudness_high, 1.0),
                                        (self.low, "loudness_low", c.loudness_low, -1.0)):
            if limit is None:
                continue
            s = short_term if math.isfinite(short_term) else -200.0
            bad = sign * (s - limit) > 0 and (sign > 0 or not silent)
            ok = sign * (s - limit) < -c.hysteresis
            since = cond.since
            change = cond.step(t, bad, ok)
            if change:
                out.append({"type": "event", "event": name, "t": round(t, 3), "state": change,
                            "since": round(cond.since if change == "start" else since, 3),
                            "lufs": _r(short_term), "limit": limit,
                            "detail": f"{change}: short-term {_r(short_term)} LUFS, limit {limit:g}"})
        return out

    @property
    def active(self) -> list[str]:
        names = (("silence", self.silence), ("loudness_high", self.high), ("loudness_low", self.low))
        return [n for n, c in names if c.active]


class MeterTap:
    """A pipeline tap: loudness meter + alarms for one source (runs in the feature thread).

    ``weight``: BS.1770 weight of the mono mix the pipeline sees; 2 for a stereo source mixed
    down (the dual-mono convention: exact when both channels are equal).
    """

    def __init__(self, rate: int, config: AlarmConfig | None = None, *, weight: float = 1.0) -> None:
        self.meter = LoudnessMeter(rate, 1, weights=[weight])
        self.alarms = Alarms(config)
        self._lock = threading.Lock()
        self._reading: dict = self.meter.reading()
        self._integrated: float | None = None

    def __call__(self, x) -> list[dict]:
        m = self.meter
        first = m.sub_blocks
        if not m.push(x):
            return []
        out = []
        for j in range(first + 1, m.sub_blocks + 1):
            out += self.alarms.step(j / 10.0, m.level(end=j), m.short_term(end=j))
        if self._integrated is None or m.sub_blocks // 10 != first // 10:
            self._integrated = m.integrated()  # O(blocks): refreshed once a second
        reading = m.reading(integrated=self._integrated)
        with self._lock:
            self._reading = reading
        return out

    def reading(self) -> dict:
        """The latest readings (any thread) plus the active alarms and the audio time."""
        with self._lock:
            return {**self._reading, "t": round(self.meter.t, 1), "alarms": self.alarms.active}
