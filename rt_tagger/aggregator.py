"""Rolling aggregation of chunk predictions: smoothed tag probabilities, top-k, tag events.

The inference thread calls :meth:`Aggregator.add` once per chunk; the feature thread calls
:meth:`Aggregator.add_frames` with new log-mel frames. Everything downstream (terminal, JSONL,
GUI) only reads: either the messages ``add`` returns, or a :meth:`snapshot` (a consistent copy
taken under the lock, safe to read from any thread).
"""
from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

MODES = ("mean", "ema", "max")
#: Default silence gate (dBFS RMS over a chunk): below it no tag is switched on. Digital
#: silence and room tone (about -60 dBFS) stay under it; quiet music (-45 dBFS and up) does not.
SILENCE_DB = -55.0


@dataclass
class ChunkResult:
    index: int
    t_start: float  # seconds of audio since the source started
    t_end: float
    probs: np.ndarray  # (n_tags,)
    attention: np.ndarray | None = None  # raw engine attention for this chunk (no batch axis)
    latency_ms: float | None = None
    padded: int = 0
    level_db: float | None = None  # RMS level of the chunk's audio (dBFS), for the silence gate


@dataclass
class AttentionOverlay:
    """Latest attention, aligned to absolute time: ``weights[..., i]`` covers
    ``[times[i], times[i + 1])`` seconds. ``weights`` is ``(T,)`` for [CLS] self-attention
    (last layer, summed over heads, Eq. 4 of the Spec_Att paper) or ``(n_tags, T)`` for Q2L
    per-tag cross-attention (last layer, mean over heads)."""

    times: np.ndarray
    weights: np.ndarray
    kind: str  # "cls" or "per_tag"


@dataclass
class Snapshot:
    t: float
    tags: list[str]
    probs: np.ndarray
    latest: np.ndarray
    top: list[tuple[str, float]]
    active: list[str]
    history_t: np.ndarray  # (chunks,) chunk end times
    history: np.ndarray  # (chunks, n_tags) raw chunk probabilities
    attention: AttentionOverlay | None
    logmel: np.ndarray  # (frames, n_mels) most recent frames, oldest first
    logmel_t0: float  # time of logmel[0]
    frame_seconds: float
    thresholds: np.ndarray
    status: dict = field(default_factory=dict)


#: The JSON ``attention`` of an update: at most this many cells over the chunk.
ATTENTION_CELLS = 64


def pool_cells(weights: np.ndarray, cells: int) -> np.ndarray:
    """Sum ``weights`` (over time) into at most ``cells`` equal spans (fractional edges are
    split proportionally), so the cells keep the total attention."""
    w = np.asarray(weights, np.float64)
    if w.size <= cells:
        return w
    cum = np.concatenate([[0.0], np.cumsum(w)])
    edges = np.linspace(0, w.size, cells + 1)
    return np.diff(np.interp(edges, np.arange(w.size + 1), cum))


def attention_overlay(attn: np.ndarray, t_start: float, t_end: float) -> AttentionOverlay:
    """Reduce one chunk's raw attention to the overlay the GUI draws."""
    if attn.ndim == 4 and attn.shape[-1] == attn.shape[-2]:  # (layers, heads, T+1, T+1)
        weights = attn[-1, :, 0, 1:].sum(axis=0)
        kind = "cls"
    elif attn.ndim == 4:  # q2l: (layers, heads, n_tags, T)
        weights = attn[-1].mean(axis=0)
        kind = "per_tag"
    else:
        raise ValueError(f"unexpected attention shape {attn.shape}")
    steps = weights.shape[-1]
    return AttentionOverlay(np.linspace(t_start, t_end, steps + 1), weights.astype(np.float32), kind)


class Aggregator:
    """Smooths chunk probabilities over ``horizon`` seconds and turns them into events.

    ``mode``: ``mean`` or ``max`` of the chunks that ended within the last ``horizon`` seconds,
    or ``ema`` with time constant ``horizon``. A tag switches on when its smoothed probability
    stays at or above its threshold for ``min_duration`` seconds, and off when it falls below
    ``off_ratio`` x threshold (hysteresis), so it is reported once, not once per window.
    ``thresholds``: one float for every tag, or a per-tag array (e.g. F1-optimal thresholds
    stored in the checkpoint).
    """

    def __init__(self, tags: list[str], *, mode: str = "mean", horizon: float = 3.0,
                 thresholds: float | np.ndarray = 0.5, off_ratio: float = 0.8,
                 min_duration: float = 1.0, topk: int = 5, history_seconds: float = 60.0,
                 logmel_seconds: float = 30.0, frame_seconds: float = 0.016,
                 n_mels: int | None = None, silence_db: float | None = SILENCE_DB) -> None:
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
        self._attention: AttentionOverlay | None = None
        self.frame_seconds = frame_seconds
        self._n_mels = n_mels
        cap = max(1, int(round(logmel_seconds / frame_seconds)))
        self._mel = np.zeros((cap, n_mels or 1), np.float32)
        self._mel_count = 0  # frames ever added
        self.status: dict = {}

    # ---- writers ------------------------------------------------------------------------------
    def add_frames(self, frames: np.ndarray) -> None:
        """Append log-mel frames (feature thread) to the scrolling history the GUI shows."""
        if self._n_mels is None or frames.shape[0] == 0:
            return
        with self._lock:
            cap = self._mel.shape[0]
            frames = frames[-cap:]
            k = frames.shape[0]
            pos = self._mel_count % cap
            first = min(k, cap - pos)
            self._mel[pos : pos + first] = frames[:first]
            self._mel[: k - first] = frames[first:]
            self._mel_count += k

    def add(self, r: ChunkResult) -> tuple[dict, list[dict]]:
        """Fold one chunk in; returns the ``update`` message and any ``event`` messages."""
        with self._lock:
            t = r.t_end
            self.t = t
            self.latest = r.probs.astype(np.float32)
            self._sum += r.probs
            self.chunks += 1
            self._history.append((t, self.latest))
            while self._history and self._history[0][0] < t - self._history_seconds:
                self._history.popleft()
            if r.attention is not None:
                self._attention = attention_overlay(r.attention, r.t_start, r.t_end)
            self.probs = self._smooth(t, self.latest)
            self.silent = (self.silence_db is not None and r.level_db is not None
                           and r.level_db < self.silence_db)
            events = self._silence_events(t) if self.silent else self._events(t)
            update = {"type": "update", "t": round(t, 3), "chunk": r.index,
                      "t_start": round(r.t_start, 3),
                      "probs": {tag: round(float(p), 4) for tag, p in zip(self.tags, self.probs)},
                      "top": self._top(), "silence": self.silent}
            if r.level_db is not None:
                update["level_db"] = round(max(r.level_db, -200.0), 2)
            if r.latency_ms is not None:
                update["latency_ms"] = round(r.latency_ms, 2)
            if r.attention is not None and self._attention.kind == "cls":
                cells = pool_cells(self._attention.weights, ATTENTION_CELLS)
                update["attention"] = [round(float(w), 4) for w in cells]
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

    def _events(self, t: float) -> list[dict]:
        events = []
        above = self.probs >= self.thresholds
        below_off = self.probs < self.thresholds * self.off_ratio
        for i in np.flatnonzero(~self._on & above):
            if np.isnan(self._since[i]):
                self._since[i] = t
            if t - self._since[i] >= self.min_duration or self.min_duration == 0:
                self._on[i] = True
                events.append({"type": "event", "event": "tag_on", "t": round(t, 3),
                               "tag": self.tags[i], "p": round(float(self.probs[i]), 4),
                               "since": round(float(self._since[i]), 3)})
        self._since[~self._on & ~above] = np.nan
        for i in np.flatnonzero(self._on & below_off):
            self._on[i] = False
            self._since[i] = np.nan
            events.append({"type": "event", "event": "tag_off", "t": round(t, 3),
                           "tag": self.tags[i], "p": round(float(self.probs[i]), 4)})
        return events

    def _silence_events(self, t: float) -> list[dict]:
        """Below the silence gate no tag is on: the ones on go off, none starts to count."""
        self._since[:] = np.nan
        events = [{"type": "event", "event": "tag_off", "t": round(t, 3), "tag": self.tags[i],
                   "p": round(float(self.probs[i]), 4), "detail": "silence"}
                  for i in np.flatnonzero(self._on)]
        self._on[:] = False
        return events

    def _top(self) -> list[list]:
        order = np.argsort(-self.probs, kind="stable")[: self.topk]
        return [[self.tags[i], round(float(self.probs[i]), 4)] for i in order]

    def close_events(self, t: float) -> list[dict]:
        """``tag_off`` for every tag still on when a finite source ends."""
        with self._lock:
            out = [{"type": "event", "event": "tag_off", "t": round(t, 3), "tag": self.tags[i],
                    "p": round(float(self.probs[i]), 4)} for i in np.flatnonzero(self._on)]
            self._on[:] = False
            return out

    def song_level(self) -> np.ndarray:
        """Mean of every chunk prediction so far (the song-level tags of the papers)."""
        with self._lock:
            return (self._sum / max(self.chunks, 1)).astype(np.float32)

    def set_status(self, **fields) -> None:
        """Pipeline status the GUI shows (backend, latency, CPU, overruns, source state)."""
        with self._lock:
            self.status.update(fields)

    # ---- readers ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            cap = self._mel.shape[0]
            have = min(self._mel_count, cap)
            start = self._mel_count - have
            idx = (np.arange(start, self._mel_count) % cap) if have else np.zeros(0, int)
            hist_t = np.array([h[0] for h in self._history], np.float32)
            hist = (np.stack([h[1] for h in self._history]) if self._history
                    else np.zeros((0, len(self.tags)), np.float32))
            return Snapshot(
                t=self.t, tags=self.tags, probs=self.probs.copy(), latest=self.latest.copy(),
                top=[tuple(x) for x in self._top()],
                active=[self.tags[i] for i in np.flatnonzero(self._on)],
                history_t=hist_t, history=hist, attention=self._attention,
                logmel=self._mel[idx].copy(), logmel_t0=start * self.frame_seconds,
                frame_seconds=self.frame_seconds, thresholds=self.thresholds.copy(),
                status=dict(self.status, silence=self.silent))
