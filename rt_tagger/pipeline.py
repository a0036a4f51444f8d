"""The streaming pipeline: source -> ring -> log-mel -> chunker -> engine -> aggregator -> messages.

Three threads besides the producer (PortAudio callback or decoder thread):

* the **feature** thread drains the ring, counts overruns, resamples to the model rate (soxr),
  computes log-mel frames incrementally and cuts chunks;
* the **inference** thread takes every chunk waiting (a batch when it fell behind), runs the
  engine and folds the results into the aggregator;
* the caller's thread iterates :meth:`Pipeline.messages` (the JSON Lines contract: ``status``,
  ``update``, ``event``, ``summary``).

Several pipelines can share one inference thread (``rt_tagger.monitor``): each is started
with ``start(inference=False)`` and given the same ``cond``; the shared thread takes chunks with
:meth:`Pipeline.take_chunks`, runs one batch for all sources and hands each pipeline its rows
back with :meth:`Pipeline.fold`. ``taps`` are called by the feature thread with every block of
raw mono audio (source rate) and may return messages (level meters, alarms).

The chunk queue is bounded. A live source whose chunks arrive faster than inference drops the
oldest waiting chunks and says so (an ``overload`` event) instead of growing without bound; an
offline file waits instead, so nothing is lost.

NaN/inf samples (a broken decoder, a float WAV with garbage) are read as silence before the taps
and the resampler see them, counted (``nonfinite_samples`` in the status and the summary) and
reported once per stretch as a ``nonfinite_input`` event when the stretch ends.
"""
from __future__ import annotations

import collections
import math
import queue
import threading
import time
from typing import Iterator

import numpy as np

from .aggregator import Aggregator, ChunkResult
from .chunker import Chunk, Chunker
from .features import LogMel, LogMelConfig
from .sources.base import Source

_END = object()
ENERGY_STEP = 64  # samples between the points of the cumulative energy (chunk levels)


class Pipeline:
    def __init__(self, engine, source: Source, aggregator: Aggregator, *, hop_units: int,
                 max_queue: int = 8, logmel_backend: str = "native", record: str | None = None,
                 cond: threading.Condition | None = None, taps: list | None = None,
                 out: queue.Queue | None = None) -> None:
        ck = engine.checkpoint
        self.engine = engine
        self.source = source
        self.aggregator = aggregator
        self.rate = int(ck.sample_rate)
        self.logmel_config = LogMelConfig.from_dict(ck.logmel) if ck.logmel else None
        self.unit_seconds = (self.logmel_config.hop_length / self.rate if self.logmel_config
                             else 1.0 / self.rate)
        self.chunker = Chunker(int(ck.input_length), int(hop_units),
                               unit_shape=(self.logmel_config.n_mels,) if self.logmel_config else ())
        self.live = not source.finite or getattr(source, "realtime", False)
        self.max_queue = max_queue
        self._logmel_backend = logmel_backend
        self._record_path = record
        self._record = None
        self._out: queue.Queue = queue.Queue() if out is None else out
        self._chunks: collections.deque[tuple[Chunk, float]] = collections.deque()
        self._cond = cond or threading.Condition()
        self.taps = list(taps or [])
        self._feature_done = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.samples_in = 0  # at the source rate
        self.samples_model = 0  # at the model rate
        self.overrun_samples = 0
        self.dropped_chunks = 0
        self.nonfinite_samples = 0  # NaN/inf input samples read as silence (source rate)
        # Cumulative energy (sum of x^2) of the model-rate audio every ENERGY_STEP samples and at
        # block ends, one (positions, sums) pair per block, so a chunk's RMS level is read for
        # its span within ENERGY_STEP samples (the silence gate and the updates' level_db).
        self._energy: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque(
            [(np.zeros(1, np.int64), np.zeros(1))])
        self._energy_sum = 0.0
        self._nf_stretch = 0  # samples in the stretch not reported yet
        self._nf_since = 0.0
        # Raw chunk probabilities (index, t_start, t_end, probs) for the CSV taggram: all of them
        # for a finite source, the last hour's for a live one (bounded memory on 24/7 runs).
        self.taggram: collections.deque[tuple[int, float, float, np.ndarray]] = collections.deque(
            maxlen=None if source.finite else int(3600 / max(hop_units * self.unit_seconds, 1e-3)))
        self.padded_units = 0
        self._cpu0 = (time.process_time(), time.perf_counter())
        # Read at most this many seconds of input, then end as if the input ended (--duration);
        # set before start(). None: until the source ends.
        self.max_seconds: float | None = None

    # ---- public -------------------------------------------------------------------------------
    def start(self, inference: bool = True) -> None:
        if self._record_path:
            import soundfile as sf

            self._record = sf.SoundFile(self._record_path, "w", samplerate=self.rate, channels=1,
                                        subtype="FLOAT")
        self.source.start(self._on_state)
        loops = [(self._feature_loop, "features"), (self._inference_loop, "inference")]
        for target, name in loops[: 2 if inference else 1]:
            t = threading.Thread(target=self._guard(target), name=f"rt-tagger-{name}-{self.source.name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def end_input(self) -> None:
        """Stops the source but lets everything already captured drain: the last chunks are
        tagged and the ``summary`` still comes (used for --duration and the first Ctrl-C)."""
        self.source.stop()

    def stop(self) -> None:
        self._stop.set()
        self.source.stop()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=10)

    def poll(self, timeout: float = 0.2) -> dict | None:
        """The next message, or ``None`` if none came within ``timeout``. Raises
        ``StopIteration`` after the last message and re-raises a worker's error. Safe to call
        again after a ``KeyboardInterrupt`` (unlike a generator)."""
        try:
            msg = self._out.get(timeout=timeout)
        except queue.Empty:
            if self._stop.is_set() and not any(t.is_alive() for t in self._threads):
                raise StopIteration from None
            return None
        if msg is _END:
            self._out.put(_END)  # idempotent end
            raise StopIteration
        if isinstance(msg, BaseException):
            self.stop()
            raise msg
        msg.setdefault("source", self.source.name)
        return msg

    def messages(self) -> Iterator[dict]:
        """Yields every message until the source ends (or :meth:`stop`); re-raises worker errors."""
        return drain(self.poll)

    def snapshot(self):
        return self.aggregator.snapshot()

    # ---- threads ------------------------------------------------------------------------------
    def _guard(self, fn):
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # surfaces in messages(), never lost
                self._out.put(exc)
                self._stop.set()
                with self._cond:
                    self._cond.notify_all()
        return run

    def _emit(self, msg: dict) -> None:
        self._out.put(msg)

    def _on_state(self, state: str, detail: str) -> None:
        self.aggregator.set_status(source_state=state)
        self._emit({"type": "event", "event": "source_state", "t": round(self._t(), 3),
                    "state": state, "detail": detail})

    def _t(self) -> float:
        return self.samples_model / self.rate

    def _feature_loop(self) -> None:
        src = self.source
        ring = src.ring
        assert ring is not None
        resampler = None
        if src.sample_rate != self.rate:
            import soxr

            resampler = soxr.ResampleStream(src.sample_rate, self.rate, 1, dtype="float32",
                                            quality="HQ")
        logmel = LogMel(self.logmel_config, backend=self._logmel_backend).stream() if self.logmel_config else None
        buf = np.empty(max(4096, src.sample_rate // 10), np.float32)
        while not self._stop.is_set():
            ring.wait(1, timeout=0.05)
            lost = ring.take_overrun()
            if lost:
                self.overrun_samples += lost
                self.aggregator.set_status(overruns=self.overrun_samples)
                self._emit({"type": "event", "event": "overrun", "t": round(self._t(), 3),
                            "samples": int(lost), "seconds": round(lost / src.sample_rate, 4)})
            n = ring.read_into(buf)
            last = False
            if self.max_seconds is not None:  # --duration: what lies beyond is never read
                left = max(0, int(round(self.max_seconds * src.sample_rate)) - self.samples_in)
                if n >= left:
                    n, last = left, True
                    src.stop()
            if n == 0:
                if last or (src.done and ring.available == 0):
                    break
                continue
            t_read = time.perf_counter()
            self.samples_in += n
            x = buf[:n]
            self._zero_nonfinite(x, self.samples_in - n, src.sample_rate)
            for tap in self.taps:
                for msg in tap(x) or ():
                    self._emit(msg)
            if resampler is not None:
                x = resampler.resample_chunk(x)
            self._process(x, logmel, t_read)
            if last:
                break
        if self._stop.is_set():
            return
        self._report_nonfinite(self.samples_in / src.sample_rate)
        t_read = time.perf_counter()
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True) if resampler else None
        if tail is not None and tail.size:
            self._process(tail, logmel, t_read)
        if logmel is not None:
            frames = logmel.flush()
            self.aggregator.add_frames(frames)
            for c in self.chunker.push(frames):
                self._submit(c, t_read)
        pad = self._pad_value()
        # Input too short for even one frame (one sample at 44.1 kHz resamples to none) still
        # gets its padded chunk and its short_input event; a source that gave nothing gets none.
        for c in self.chunker.finish(pad, force=self.samples_in > 0):
            self.padded_units = c.padded
            self._emit({"type": "event", "event": "short_input", "t": round(self._t(), 3),
                        "detail": f"audio shorter than one chunk: padded {c.padded} of "
                                  f"{self.chunker.length} units with silence"})
            self._submit(c, t_read)
        if self._record is not None:
            self._record.close()
        with self._cond:
            self._feature_done = True
            self._cond.notify_all()

    def _zero_nonfinite(self, x: np.ndarray, first: int, rate: int) -> None:
        """Set NaN/inf samples of ``x`` (in place) to 0, count them, and report the stretch
        they belong to once it ends. ``first``: index of ``x[0]`` in the source's samples."""
        bad = ~np.isfinite(x)
        k = int(np.count_nonzero(bad))
        if k:
            idx = np.flatnonzero(bad)
            x[idx] = 0.0
            if self._nf_stretch == 0:
                self._nf_since = (first + int(idx[0])) / rate
            self._nf_stretch += k
            self.nonfinite_samples += k
            self.aggregator.set_status(nonfinite_samples=self.nonfinite_samples)
            if bad[-1]:
                return  # the stretch goes on into the next block
            self._report_nonfinite((first + int(idx[-1]) + 1) / rate)
        elif self._nf_stretch:
            self._report_nonfinite(first / rate)

    def _report_nonfinite(self, t_end: float) -> None:
        if not self._nf_stretch:
            return
        n, self._nf_stretch = self._nf_stretch, 0
        self._emit({"type": "event", "event": "nonfinite_input", "t": round(t_end, 3),
                    "since": round(self._nf_since, 3), "samples": n,
                    "detail": f"{n} NaN/inf input samples read as silence"})

    def _process(self, x: np.ndarray, logmel, t_read: float) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.samples_model += x.size
        if x.size:
            first = self.samples_model - x.size
            cum = np.cumsum(np.square(x, dtype=np.float64)) + self._energy_sum
            pos = np.arange(first - first % ENERGY_STEP + ENERGY_STEP, self.samples_model, ENERGY_STEP)
            pos = np.append(pos, self.samples_model)
            self._energy.append((pos, cum[pos - first - 1]))
            self._energy_sum = float(cum[-1])
        if self._record is not None:
            self._record.write(x)
        units = logmel.push(x) if logmel is not None else x
        if logmel is not None:
            self.aggregator.add_frames(units)
        for c in self.chunker.push(units):
            self._submit(c, t_read)

    def _pad_value(self) -> float:
        c = self.logmel_config
        if c is None or c.log == "none":
            return 0.0
        return 0.0 if c.log == "log10p" else float(10 * np.log10(c.amin))

    def _level_db(self, chunk: Chunk) -> float:
        """RMS level (dBFS; a full-scale sine is -3) of the audio under ``chunk``, from the
        cumulative energy (linear between its ENERGY_STEP points); older blocks are let go."""
        per_unit = self.logmel_config.hop_length if self.logmel_config else 1
        s0 = chunk.start * per_unit
        s1 = max(s0 + 1, min((chunk.start + self.chunker.length - chunk.padded) * per_unit,
                             self.samples_model))
        while len(self._energy) > 2 and self._energy[1][0][-1] <= s0:
            self._energy.popleft()
        pos = np.concatenate([p for p, _ in self._energy])
        cum = np.concatenate([c for _, c in self._energy])
        e0, e1 = np.interp([s0, s1], pos, cum)
        return round(10.0 * math.log10(max(e1 - e0, 0.0) / (s1 - s0) + 1e-20), 2)

    def _submit(self, chunk: Chunk, t_read: float) -> None:
        chunk.level_db = self._level_db(chunk)
        with self._cond:
            if self.live:
                while len(self._chunks) >= self.max_queue:
                    self._chunks.popleft()
                    self.dropped_chunks += 1
                    self.aggregator.set_status(dropped_chunks=self.dropped_chunks)
                    self._emit({"type": "event", "event": "overload", "t": round(self._t(), 3),
                                "dropped_chunks": self.dropped_chunks,
                                "detail": "inference cannot keep up; oldest chunk dropped "
                                          "(use a larger --hop, a smaller model or another backend)"})
            else:
                while len(self._chunks) >= self.max_queue and not self._stop.is_set():
                    self._cond.wait(0.05)
            self._chunks.append((chunk, t_read))
            self._cond.notify_all()

    def _inference_loop(self) -> None:
        eng = self.engine
        while True:
            with self._cond:
                while not self._chunks and not self._feature_done and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return
                if not self._chunks and self._feature_done:
                    break
                batch = self.take_chunks(eng.max_batch)
                self._cond.notify_all()
            out = eng.run(np.stack([c.data for c, _ in batch]))
            self.fold(batch, out.probs, out.attention, time.perf_counter())
        self.finish()

    # ---- the inference stage, also driven by a shared thread (rt_tagger.monitor) -------------
    @property
    def drained(self) -> bool:
        """No chunk waiting and none will come (call with ``cond`` held)."""
        return self._feature_done and not self._chunks

    def take_chunks(self, n: int) -> list[tuple[Chunk, float]]:
        """Up to ``n`` waiting chunks, oldest first (call with ``cond`` held)."""
        return [self._chunks.popleft() for _ in range(min(len(self._chunks), n))]

    def fold(self, batch: list[tuple[Chunk, float]], probs: np.ndarray, attention, done: float) -> None:
        """Fold the engine's rows for ``batch`` into the aggregator and emit the messages."""
        us = self.unit_seconds
        for i, (c, t_read) in enumerate(batch):
            t0, t1 = c.start * us, (c.start + self.chunker.length - c.padded) * us
            r = ChunkResult(c.index, t0, t1, probs[i], None if attention is None else attention[i],
                            latency_ms=(done - t_read) * 1e3, padded=c.padded, level_db=c.level_db)
            self.taggram.append((c.index, t0, t1, probs[i].copy()))
            update, events = self.aggregator.add(r)
            self._emit(update)
            for e in events:
                self._emit(e)
        cpu = self._cpu()
        self.aggregator.set_status(latency_ms=round((done - batch[-1][1]) * 1e3, 2),
                                   cpu_percent=cpu, batch=len(batch))

    def finish(self) -> None:
        """The closing events and the ``summary`` once every chunk was tagged."""
        t_end = self._t()
        for e in self.aggregator.close_events(t_end):
            self._emit(e)
        song = self.aggregator.song_level()
        tags = self.aggregator.tags
        order = np.argsort(-song, kind="stable")[: self.aggregator.topk]
        self._emit({"type": "summary", "t": round(t_end, 3),
                    "probs": {t: round(float(p), 4) for t, p in zip(tags, song)},
                    "top": [[tags[i], round(float(song[i]), 4)] for i in order],
                    "chunks": len(self.taggram), "duration": round(t_end, 3),
                    "overrun_samples": self.overrun_samples,
                    "input_overflows": int(getattr(self.source, "callback_overflows", 0)),
                    "samples_in": self.samples_in,
                    "nonfinite_samples": self.nonfinite_samples,
                    "dropped_chunks": self.dropped_chunks})
        if self.source.error is not None:
            self._out.put(self.source.error)
        self._out.put(_END)

    def _cpu(self) -> float:
        p, w = time.process_time(), time.perf_counter()
        p0, w0 = self._cpu0
        if w - w0 < 1.0:
            return self.aggregator.status.get("cpu_percent", 0.0)
        self._cpu0 = (p, w)
        return round(100.0 * (p - p0) / (w - w0), 1)


def drain(poll) -> Iterator[dict]:
    """Iterates a ``poll()`` that returns a message or ``None`` and raises ``StopIteration`` at
    the end (:meth:`Pipeline.poll`, ``Monitor.poll``)."""
    while True:
        try:
            msg = poll()
        except StopIteration:
            return
        if msg is not None:
            yield msg
