"""Rolling aggregation of chunk predictions: smoothed tag probabilities, top-k, tag events.

The inference stage calls :meth:`Aggregator.add` once per chunk, in order, and gets back the
chunk's :class:`~rt_tagger.messages.Update` and any ``tag_on``/``tag_off``
:class:`~rt_tagger.messages.Event`. That is all it does: smoothing and events. Readers (GUI,
HTTP status) take a :meth:`snapshot` (a consistent copy taken under the lock, safe from any
thread); the stream stage adds the spectrogram, attention and health to it.
"""
from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .messages import Event, Update
from .config import AGGREGATIONS as MODES
from .config import SILENCE_DB

__all__ = ["MODES", "SILENCE_DB", "Aggregator", "ChunkResult", "Snapshot"]


@dataclass
class ChunkResult:
    """One tagged chunk as the aggregator takes it. Times are seconds on the source's
    timeline; ``attention`` is already on the model's time axis, pooled into cells
    (:func:`rt_tagger.stream.attention.pool_cells`), and ``loudness`` is the source meter's
    reading; both go into the update as they are."""

    index: int
    t_start: float  # seconds of audio since the source started
    t_end: float
    probs: np.ndarray  # (n_tags,)
    latency_ms: float | None = None
    padded: int = 0
    level_db: float | None = None  # RMS level of the chunk's audio (dBFS), for the silence gate
    attention: list[float] | None = None
    loudness: dict | None = None


@dataclass
class Snapshot:
    """What the GUI draws. The aggregator fills the tag part; the stream stage the rest
    (spectrogram history, latest attention overlay, the source's health in ``status``)."""

    t: float
    tags: list[str]
    probs: np.ndarray
    latest: np.ndarray
    top: list[tuple[str, float]]
    active: list[str]
    history_t: np.ndarray  # (chunks,) chunk end times
    history: np.ndarray  # (chunks, n_tags) raw chunk probabilities
    thresholds: np.ndarray
    attention: object | None = None  # rt_tagger.stream.attention.AttentionOverlay
    logmel: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.float32))
    logmel_t0: float = 0.0  # time of logmel[0]
    frame_seconds: float = 0.016
    status: dict = field(default_factory=dict)


class Aggregator:
    """Smooths chunk probabilities over ``horizon`` seconds and turns them into events.

    ``mode``: ``mean`` or ``max`` of the chunks that ended within the last ``horizon`` seconds,
    or ``ema`` with time constant ``horizon``. A tag switches on when its smoothed probability
    stays at or above its threshold for ``min_duration`` seconds, and off when it falls below
    ``off_ratio`` x threshold (hysteresis), so it is reported once, not once per window.
    ``thresholds``: one float for every tag, or a per-tag array (e.g. F1-optimal thresholds
    stored in the checkpoint). Chunks below ``silence_db`` (their ``level_db``) switch every
    tag off and none on. ``source``: the name the messages carry.
    """

    def __init__(self, tags: list[str], *, mode: str = "mean", horizon: float = 3.0,
                 thresholds: float | np.ndarray = 0.5, off_ratio: float = 0.8,
                 min_duration: float = 1.0, topk: int = 5, history_seconds: float = 60.0,
                 silence_db: float | None = SILENCE_DB, source: str = "main") -> None:
        if mode not in MODES:
            raise ConfigError(f"aggregation must be one of {', '.join(MODES)}, got {mode!r}")
        if not horizon > 0:
            raise ConfigError(f"aggregation horizon must be > 0 seconds, got {horizon!r}")
        if not 0 < off_ratio <= 1:
            raise ConfigError(f"off_ratio must be in (0, 1], got {off_ratio!r}")
        if not 1 <= topk:
            raise ConfigError(f"topk must be >= 1, got {topk!r}")
        if silence_db is not None and not (math.isfinite(silence_db) and -150 <= silence_db <= 0):
            raise ConfigError(f"silence gate must be a level in dBFS between -150 and 0, got {silence_db!r}")
        self.source = source
        self.silence_db = silence_db
        self.silent = False  # the latest chunk was below the silence gate
        self.tags = list(tags)
        n = len(self.tags)
        thr = np.broadcast_to(np.asarray(thresholds, np.float32), (n,)).copy()
        if not np.all((thr > 0) & (thr < 1)):
            raise ConfigError("thresholds must be in (0, 1)")
        self.thresholds = thr
        self.mode, self.horizon, self.off_ratio = mode, float(horizon), float(off_ratio)
        self.min_duration, self.topk = float(min_duration), min(int(topk), n)
        self._lock = threading.Lock()
        self._recent: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._ema: np.ndarray | None = None
        self._ema_t = 0.0
        self.probs = np.zeros(n, np.float32)
        self.latest = np.zeros(n, np.float32)
        self._on = np.zeros(n, bool)
        self._since = np.full(n, np.nan)  # time the tag first reached its threshold
        self._sum = np.zeros(n, np.float64)
        self.chunks = 0
        self.t = 0.0
        self._history = collections.deque(maxlen=max(1, int(history_seconds / 0.1)))
        self._history_seconds = history_seconds

    def add(self, r: ChunkResult) -> tuple[Update, list[Event]]:
        """Fold one chunk in; returns its ``update`` and any ``tag_on``/``tag_off`` events."""
        with self._lock:
            t = r.t_end
            self.t = t
            self.latest = r.probs.astype(np.float32)
            self._sum += r.probs
            self.chunks += 1
            self._history.append((t, self.latest))
            while self._history and self._history[0][0] < t - self._history_seconds:
                self._history.popleft()
            self.probs = self._smooth(t, self.latest)
            self.silent = (self.silence_db is not None and r.level_db is not None
                           and r.level_db < self.silence_db)
            events = self._silence_events(t) if self.silent else self._events(t)
            update = Update(
                source=self.source, t=round(t, 3), chunk=r.index, t_start=round(r.t_start, 3),
                probs={tag: round(float(p), 4) for tag, p in zip(self.tags, self.probs)},
                top=self._top(), silence=self.silent,
                level_db=None if r.level_db is None else round(max(r.level_db, -200.0), 2),
                latency_ms=None if r.latency_ms is None else round(r.latency_ms, 2),
                attention=r.attention, loudness=r.loudness)
            return update, events

    def _smooth(self, t: float, p: np.ndarray) -> np.ndarray:
        if self.mode == "ema":
            if self._ema is None:
                self._ema = p.copy()
            else:
                a = 1.0 - math.exp(-max(t - self._ema_t, 0.0) / self.horizon)
                self._ema = self._ema + a * (p - self._ema)
            self._ema_t = t
            return self._ema.astype(np.float32)
        self._recent.append((t, p))
        while self._recent and self._recent[0][0] <= t - self.horizon:
            self._recent.popleft()
        stack = np.stack([q for _, q in self._recent])
        return (stack.max(axis=0) if self.mode == "max" else stack.mean(axis=0)).astype(np.float32)

    def _event(self, t: float, name: str, i: int, **extra) -> Event:
        return Event(self.source, round(t, 3), name,
                     {"tag": self.tags[i], "p": round(float(self.probs[i]), 4), **extra})

    def _events(self, t: float) -> list[Event]:
        events = []
        above = self.probs >= self.thresholds
        below_off = self.probs < self.thresholds * self.off_ratio
        for i in np.flatnonzero(~self._on & above):
            if np.isnan(self._since[i]):
                self._since[i] = t
            if t - self._since[i] >= self.min_duration or self.min_duration == 0:
                self._on[i] = True
                events.append(self._event(t, "tag_on", i, since=round(float(self._since[i]), 3)))
        self._since[~self._on & ~above] = np.nan
        for i in np.flatnonzero(self._on & below_off):
            self._on[i] = False
            self._since[i] = np.nan
            events.append(self._event(t, "tag_off", i))
        return events

    def _silence_events(self, t: float) -> list[Event]:
        """Below the silence gate no tag is on: the ones on go off, none starts to count."""
        self._since[:] = np.nan
        events = [self._event(t, "tag_off", i, detail="silence") for i in np.flatnonzero(self._on)]
        self._on[:] = False
        return events

    def _top(self) -> list[list]:
        order = np.argsort(-self.probs, kind="stable")[: self.topk]
        return [[self.tags[i], round(float(self.probs[i]), 4)] for i in order]

    def close_events(self, t: float) -> list[Event]:
        """``tag_off`` for every tag still on when a finite source ends."""
        with self._lock:
            out = [self._event(t, "tag_off", i) for i in np.flatnonzero(self._on)]
            self._on[:] = False
            return out

    def song_level(self) -> np.ndarray:
        """Mean of every chunk prediction so far (the song-level tags of the papers)."""
        with self._lock:
            return (self._sum / max(self.chunks, 1)).astype(np.float32)

    def song_top(self, song: np.ndarray) -> list[list]:
        order = np.argsort(-song, kind="stable")[: self.topk]
        return [[self.tags[i], round(float(song[i]), 4)] for i in order]

    # ---- readers ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            hist_t = np.array([h[0] for h in self._history], np.float32)
            hist = (np.stack([h[1] for h in self._history]) if self._history
                    else np.zeros((0, len(self.tags)), np.float32))
            return Snapshot(
                t=self.t, tags=self.tags, probs=self.probs.copy(), latest=self.latest.copy(),
                top=[tuple(x) for x in self._top()],
                active=[self.tags[i] for i in np.flatnonzero(self._on)],
                history_t=hist_t, history=hist, thresholds=self.thresholds.copy(),
                status={"silence": self.silent})
