"""The small state a :class:`~rt_tagger.stream.features.FeatureStream` keeps besides its
queue: health counters, the cumulative energy behind each chunk's level, and the scrolling
spectrogram the GUI draws. Each is written by one thread and read from any."""
from __future__ import annotations

import collections
import math
import threading
import time

import numpy as np

__all__ = ["ENERGY_STEP", "EnergyTrack", "Health", "SpectrogramHistory"]

ENERGY_STEP = 64  # samples between the points of the cumulative energy (chunk levels)


class Health:
    """Counters of one stream (samples in, overruns, dropped chunks, NaN/inf samples), the
    source's state and the inference latency, CPU and batch size, under a lock."""

    COUNTS = ("samples_in", "samples_model", "overrun_samples", "dropped_chunks", "nonfinite_samples")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        for name in self.COUNTS:
            setattr(self, name, 0)
        self._status: dict = {}
        self._cpu0 = (time.process_time(), time.perf_counter())
        self._cpu = 0.0

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + int(n))

    def set(self, **fields) -> None:
        with self._lock:
            self._status.update(fields)

    def batch_done(self, *, latency_ms: float, batch: int) -> None:
        p, w = time.process_time(), time.perf_counter()
        with self._lock:
            p0, w0 = self._cpu0
            if w - w0 >= 1.0:
                self._cpu0, self._cpu = (p, w), round(100.0 * (p - p0) / (w - w0), 1)
            self._status.update(latency_ms=latency_ms, cpu_percent=self._cpu, batch=batch)

    def status(self) -> dict:
        """What the GUI's status line shows (a copy)."""
        with self._lock:
            return {**self._status, "overruns": self.overrun_samples,
                    "dropped_chunks": self.dropped_chunks,
                    "nonfinite_samples": self.nonfinite_samples}


class EnergyTrack:
    """Cumulative energy (sum of x^2) of the model-rate audio every ``ENERGY_STEP`` samples
    and at block ends, so a chunk's RMS level is read for its span within ``ENERGY_STEP``
    samples (the silence gate and the updates' ``level_db``). Older blocks are let go."""

    def __init__(self, per_unit: int) -> None:
        self.per_unit = per_unit  # samples per chunker unit (the log-mel hop, or 1)
        self._blocks: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque(
            [(np.zeros(1, np.int64), np.zeros(1))])
        self._sum = 0.0
        self._n = 0

    def add(self, x: np.ndarray) -> None:
        if not x.size:
            return
        first, self._n = self._n, self._n + x.size
        cum = np.cumsum(np.square(x, dtype=np.float64)) + self._sum
        pos = np.arange(first - first % ENERGY_STEP + ENERGY_STEP, self._n, ENERGY_STEP)
        pos = np.append(pos, self._n)
        self._blocks.append((pos, cum[pos - first - 1]))
        self._sum = float(cum[-1])

    def level_db(self, start_unit: int, end_unit: int, samples: int) -> float:
        """RMS level (dBFS; a full-scale sine is -3) of units ``[start_unit, end_unit)``
        (linear between the points)."""
        s0 = start_unit * self.per_unit
        s1 = max(s0 + 1, min(end_unit * self.per_unit, samples))
        while len(self._blocks) > 2 and self._blocks[1][0][-1] <= s0:
            self._blocks.popleft()
        pos = np.concatenate([p for p, _ in self._blocks])
        cum = np.concatenate([c for _, c in self._blocks])
        e0, e1 = np.interp([s0, s1], pos, cum)
        return round(10.0 * math.log10(max(e1 - e0, 0.0) / (s1 - s0) + 1e-20), 2)


class SpectrogramHistory:
    """The last ``seconds`` of log-mel frames (a ring), for the GUI's scrolling spectrogram."""

    def __init__(self, n_mels: int | None, frame_seconds: float, seconds: float = 30.0) -> None:
        self.n_mels = n_mels
        self.frame_seconds = frame_seconds
        cap = max(1, int(round(seconds / frame_seconds)))
        self._mel = np.zeros((cap, n_mels or 1), np.float32)
        self._count = 0  # frames ever added
        self._lock = threading.Lock()

    def add(self, frames: np.ndarray) -> None:
        if self.n_mels is None or frames.shape[0] == 0:
            return
        with self._lock:
            cap = self._mel.shape[0]
            frames = frames[-cap:]
            k = frames.shape[0]
            pos = self._count % cap
            first = min(k, cap - pos)
            self._mel[pos : pos + first] = frames[:first]
            self._mel[: k - first] = frames[first:]
            self._count += k

    def read(self) -> tuple[np.ndarray, float]:
        """``(frames (n, n_mels) oldest first, time of frames[0])`` (a copy)."""
        with self._lock:
            cap = self._mel.shape[0]
            have = min(self._count, cap)
            start = self._count - have
            idx = (np.arange(start, self._count) % cap) if have else np.zeros(0, int)
            return self._mel[idx].copy(), start * self.frame_seconds
