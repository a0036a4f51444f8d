"""One source's front half: ring -> taps -> resample -> log-mel -> chunker -> chunk queue.

A :class:`FeatureStream` runs one **feature** thread that drains the source's ring, counts
overruns, reads NaN/inf samples as silence, hands each raw block to the taps (level meters,
alarms), resamples to the model rate (soxr, streaming), computes log-mel frames incrementally
and cuts chunks into a bounded queue. The :class:`~rt_tagger.stream.scheduler.InferenceScheduler`
takes chunks from that queue and hands the engine's rows back with :meth:`FeatureStream.fold`;
the stream builds every message of its source, once, in timeline order.

Order: the feature thread's events (overrun, input health, alarms, source state) wait until
no chunk can still come with an earlier ``t`` (the frames made so far reach past them), and
go out between the updates in time order, so ``t`` never goes back within a source;
``source_state`` ``ended``/``stopped`` comes after the last update.

The queue is bounded. A live source whose chunks arrive faster than inference drops the oldest
waiting chunk and says so (an ``overload`` event); a finite unpaced file waits instead, so
nothing is lost. ``duration``: read no audio beyond that many seconds.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np

from ..chunker import Chunk, Chunker
from ..features import LogMel, LogMelConfig
from ..messages import Event, Summary
from .health import EnergyTrack, Health, SpectrogramHistory

__all__ = ["FeatureStream"]

#: Final states: reported after the last chunk's update, not when the source says them.
FINAL_STATES = ("ended", "stopped")


class FeatureStream:
    """One source's stages up to the chunk queue, plus the messages of that source.

    ``source``: a :class:`~rt_tagger.sources.Source` (not started); ``checkpoint``: the
    engine's model description (rate, log-mel, chunk length); ``hop_units``: chunk hop in
    frames (samples for waveform models); ``aggregator``: this source's
    :class:`~rt_tagger.aggregator.Aggregator`; ``emit``: where messages go (the session's
    queue); ``cond``: the scheduler's condition (guards the queue). ``taps``: callables given
    every raw mono block (source rate) that return events; ``meter``: a tap whose
    ``reading()`` goes into every update (loudness). ``t_offset``: seconds already told for
    this source (a restart continues its timeline). ``attention``: an
    :class:`~rt_tagger.stream.attention.AttentionAxis`, or ``None``.
    """

    def __init__(self, source, checkpoint, hop_units: int, aggregator, *, emit, cond,
                 max_queue: int = 8, duration: float | None = None, record: str | None = None,
                 taps=(), meter=None, t_offset: float = 0.0, attention=None,
                 logmel_backend: str = "native") -> None:
        self.source = source
        self.name = source.name
        self.aggregator = aggregator
        self.rate = int(checkpoint.sample_rate)
        self.logmel_config = LogMelConfig.from_dict(checkpoint.logmel) if checkpoint.logmel else None
        per_unit = self.logmel_config.hop_length if self.logmel_config else 1
        self.unit_seconds = per_unit / self.rate
        self.chunker = Chunker(int(checkpoint.input_length), int(hop_units),
                               unit_shape=(self.logmel_config.n_mels,) if self.logmel_config else ())
        self.live = not source.finite or getattr(source, "realtime", False)
        self.max_queue = max_queue
        self.duration = duration
        self.taps = [*taps, *([meter] if meter is not None else [])]
        self.meter = meter
        self.t_offset = float(t_offset)
        self.attention_axis = attention
        self.health = Health()
        self.energy = EnergyTrack(per_unit)
        self.spectrogram = SpectrogramHistory(self.logmel_config.n_mels if self.logmel_config else None,
                                              self.unit_seconds)
        # Raw chunk probabilities (index, t_start, t_end, probs) for the CSV taggram: all of them
        # for a finite source, the last hour's for a live one (bounded memory on 24/7 runs).
        self.taggram: collections.deque = collections.deque(
            maxlen=None if source.finite else int(3600 / max(hop_units * self.unit_seconds, 1e-3)))
        self.padded_units = 0
        #: ``prefetch(frames, first_frame, min_new=)``: the engine's
        #: :meth:`~rt_tagger.engines.reuse.FrameReuse.extend` for this stream, set by the session
        self.prefetch = None
        self.overlay = None  # the latest AttentionOverlay
        self._emit_out = emit
        self._cond = cond
        self._logmel_backend = logmel_backend
        self._record_path, self._record = record, None
        # Guarded by cond: the chunk queue (chunk, time read) and the events not told yet.
        self.queue: collections.deque[tuple[Chunk, float]] = collections.deque()
        self.loose: list[tuple[float, str, dict]] = []
        self.frames_t = 0.0  # time of the last frame made: no chunk to come ends before it
        self._units = 0  # frames (samples for waveform models) made
        self.feature_done = False
        self.inflight = 0  # batches of this stream the scheduler's workers hold
        self.tickets = 0  # batches taken so far (the scheduler folds them in this order)
        self.folded = 0  # batches folded so far
        self.finished = False  # its summary was emitted
        self.t_last = self.t_offset  # the latest t told
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._final_state: tuple[str, str] | None = None
        self._on_error = None
        self._nf_stretch = 0  # non-finite samples in the stretch not reported yet
        self._nf_since = 0.0

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self, on_error) -> None:
        """Opens the recording, starts the source and the feature thread. ``on_error(stream,
        exc)`` is told of a failure of this stream (its source or its feature thread)."""
        self._on_error = on_error
        if self._record_path:
            import soundfile as sf

            self._record = sf.SoundFile(self._record_path, "w", samplerate=self.rate, channels=1,
                                        subtype="FLOAT")
        self.source.start(self._on_state)
        self._thread = threading.Thread(target=self._guarded, daemon=True,
                                        name=f"rt-tagger-features-{self.name}")
        self._thread.start()

    def end_input(self) -> None:
        """Stops the source; what was captured is still tagged and the summary comes."""
        self.source.stop()

    def stop(self) -> None:
        """Stops now: no drain, no summary. Joins the feature thread."""
        self.stop_event.set()
        self.source.stop()
        with self._cond:
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        if self._record is not None and not self._record.closed:
            self._record.close()

    @property
    def threads(self) -> list[threading.Thread]:
        """The feature thread (once started)."""
        return [self._thread] if self._thread is not None else []

    @property
    def drained(self) -> bool:
        """No chunk waiting and none will come (call with ``cond`` held)."""
        return self.feature_done and not self.queue

    # ---- messages -----------------------------------------------------------------------------
    def _t(self) -> float:
        """Seconds of audio turned into features so far (the time of the frames made)."""
        return self.health.samples_model / self.rate

    def _event_later(self, t: float, name: str, **fields) -> None:
        """An event of the feature side: told once no earlier update can still come."""
        with self._cond:
            self.loose.append((t, name, fields))
            self._cond.notify_all()

    def _due(self, until: float) -> list[tuple[float, str, dict]]:
        """The waiting events at or before ``until`` (source seconds), oldest first; they
        leave the waiting list (``cond`` held, or the only worker on this stream)."""
        due = sorted((e for e in self.loose if e[0] <= until), key=lambda e: e[0])
        if due:
            self.loose = [e for e in self.loose if e[0] > until]
        return due

    def _deliver(self, msg) -> None:
        self.t_last = max(self.t_last, msg.t)
        self._emit_out(msg)

    def _deliver_events(self, pending: list[tuple[float, str, dict]]) -> None:
        for t, name, fields in pending:
            if "since" in fields and self.t_offset:
                fields = dict(fields, since=round(fields["since"] + self.t_offset, 3))
            self._deliver(Event(self.name, round(max(t + self.t_offset, self.t_last), 3), name, fields))

    def flush_loose(self) -> None:
        """Emits the waiting events no chunk to come can precede (scheduler, ``cond`` held,
        stream idle)."""
        if self.loose and not self.queue and not self.inflight and not self.finished:
            self._deliver_events(self._due(self.frames_t))

    def event_now(self, name: str, **fields) -> None:
        """An event from outside the stream (restart, failure) at the latest time told."""
        self._deliver(Event(self.name, round(self.t_last, 3), name, fields))

    def _on_state(self, state: str, detail: str) -> None:
        self.health.set(source_state=state)
        if state in FINAL_STATES:
            self._final_state = (state, detail)  # told after the last update (see finish)
            return
        self._event_later(self._t(), "source_state", state=state, detail=detail)

    # ---- the feature thread -------------------------------------------------------------------
    def _guarded(self) -> None:
        try:
            self._feature_loop()
        except BaseException as exc:  # surfaces in the session's poll(), never lost
            self.stop_event.set()
            if self._on_error is not None:
                self._on_error(self, exc)
        finally:
            with self._cond:
                self._cond.notify_all()

    def _feature_loop(self) -> None:
        src = self.source
        ring = src.ring
        assert ring is not None
        resampler = None
        if src.sample_rate != self.rate:
            import soxr

            resampler = soxr.ResampleStream(src.sample_rate, self.rate, 1, dtype="float32",
                                            quality="HQ")
        logmel = (LogMel(self.logmel_config, backend=self._logmel_backend).stream()
                  if self.logmel_config else None)
        buf = np.empty(max(4096, src.sample_rate // 10), np.float32)
        limit = None if self.duration is None else int(round(self.duration * src.sample_rate))
        h = self.health
        while not self.stop_event.is_set():
            ring.wait(1, timeout=0.05)
            lost = ring.take_overrun()
            if lost:
                h.add(overrun_samples=lost)
                self._event_later(self._t(), "overrun", samples=int(lost),
                                  seconds=round(lost / src.sample_rate, 4))
            n = ring.read_into(buf)
            last = False
            if limit is not None and n >= limit - h.samples_in:  # --duration: no audio beyond
                n, last = max(0, limit - h.samples_in), True
                src.stop()
            if n == 0:
                if last or (src.done and ring.available == 0):
                    break
                continue
            t_read = time.perf_counter()
            h.add(samples_in=n)
            x = buf[:n]
            self._zero_nonfinite(x, h.samples_in - n, src.sample_rate)
            for tap in self.taps:
                for e in tap(x) or ():
                    self._event_later(e["t"], e["event"], **{k: v for k, v in e.items()
                                                             if k not in ("type", "t", "event")})
            if resampler is not None:
                x = resampler.resample_chunk(x)
            self._process(x, logmel, t_read)
            if last:
                break
        if self.stop_event.is_set():
            return
        self._report_nonfinite(h.samples_in / src.sample_rate)
        t_read = time.perf_counter()
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True) if resampler else None
        if tail is not None and tail.size:
            self._process(tail, logmel, t_read)
        if logmel is not None:
            frames = logmel.flush()
            self.spectrogram.add(frames)
            self._made(frames.shape[0])
            for c in self.chunker.push(frames):
                self._submit(c, t_read)
        # Input too short for even one frame (one sample at 44.1 kHz resamples to none) still
        # gets its padded chunk and its short_input event; a source that gave nothing gets none.
        for c in self.chunker.finish(self._pad_value(), force=h.samples_in > 0):
            self.padded_units = c.padded
            self._event_later(self._t(), "short_input",
                              detail=f"audio shorter than one chunk: padded {c.padded} of "
                                     f"{self.chunker.length} units with silence")
            self._submit(c, t_read)
        if self._record is not None:
            self._record.close()
        with self._cond:
            self.feature_done = True
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
            self.health.add(nonfinite_samples=k)
            if bad[-1]:
                return  # the stretch goes on into the next block
            self._report_nonfinite((first + int(idx[-1]) + 1) / rate)
        elif self._nf_stretch:
            self._report_nonfinite(first / rate)

    def _report_nonfinite(self, t_end: float) -> None:
        if not self._nf_stretch:
            return
        n, self._nf_stretch = self._nf_stretch, 0
        self._event_later(t_end, "nonfinite_input", since=round(self._nf_since, 3), samples=n,
                          detail=f"{n} NaN/inf input samples read as silence")

    def _process(self, x: np.ndarray, logmel, t_read: float) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.health.add(samples_model=x.size)
        self.energy.add(x)
        if self._record is not None:
            self._record.write(x)
        units = logmel.push(x) if logmel is not None else x
        if logmel is not None:
            self.spectrogram.add(units)
        self._made(units.shape[0])
        chunks = self.chunker.push(units)
        if self.prefetch is not None and units.shape[0] and (
                not self.chunker.emitted or (chunks and not self.live)):
            # Frame-stage rows made here, in this source's thread: before its first chunk, in
            # steps as frames come (else that chunk pays for all 187 frames at once); and for a
            # file, every chunk's (the stage then runs beside the inference thread, both cores
            # work). A live source's later chunks leave it to the inference threads, which do it
            # for less CPU when many sources share them (32 sources: 17.3 vs 19.2 ms per update).
            frames, first = self.chunker.window
            if frames is not None:
                self.prefetch(frames, first, min_new=1 if chunks else 32)
        for c in chunks:
            self._submit(c, t_read)

    def _made(self, n: int) -> None:
        if n:
            self._units += n
            self.frames_t = (self._units - 1) * self.unit_seconds

    def _pad_value(self) -> float:
        c = self.logmel_config
        if c is None or c.log == "none":
            return 0.0
        return 0.0 if c.log == "log10p" else float(10 * np.log10(c.amin))

    def _submit(self, chunk: Chunk, t_read: float) -> None:
        end = chunk.start + self.chunker.length - chunk.padded
        chunk.level_db = self.energy.level_db(chunk.start, end, self.health.samples_model)
        with self._cond:
            if self.live:
                while len(self.queue) >= self.max_queue:
                    self.queue.popleft()
                    self.health.add(dropped_chunks=1)
                    self.loose.append((self._t(), "overload", {
                        "dropped_chunks": self.health.dropped_chunks,
                        "detail": "inference cannot keep up; oldest chunk dropped "
                                  "(use a larger --hop, a smaller model or another backend)"}))
            else:
                while len(self.queue) >= self.max_queue and not self.stop_event.is_set():
                    self._cond.wait(0.05)
            self.queue.append((chunk, t_read))
            self._cond.notify_all()

    # ---- the inference side (called by the scheduler) ------------------------------------------
    def take(self, n: int) -> list[tuple[Chunk, float]]:
        """Up to ``n`` waiting chunks, oldest first (``cond`` held)."""
        return [self.queue.popleft() for _ in range(min(len(self.queue), n))]

    def fold(self, batch: list[tuple[Chunk, float]], probs: np.ndarray, attention,
             done: float) -> None:
        """The engine's rows for ``batch``: each chunk's update and tag events, after the
        waiting events up to its time."""
        from ..aggregator import ChunkResult
        from .attention import pool_cells

        us, off = self.unit_seconds, self.t_offset
        for i, (c, t_read) in enumerate(batch):
            t0, t1 = c.start * us, (c.start + self.chunker.length - c.padded) * us
            with self._cond:
                due = self._due(t1)
            self._deliver_events(due)
            cells = None
            if attention is not None and self.attention_axis is not None:
                self.overlay = self.attention_axis.overlay(attention[i], t0 + off, c.data)
                if self.overlay.kind == "cls":
                    cells = [round(float(w), 4) for w in pool_cells(self.overlay.weights)]
            r = ChunkResult(c.index, t0 + off, t1 + off, probs[i],
                            latency_ms=(done - t_read) * 1e3, padded=c.padded,
                            level_db=c.level_db, attention=cells,
                            loudness=self.meter.reading() if self.meter is not None else None)
            self.taggram.append((c.index, t0, t1, probs[i].copy()))
            update, events = self.aggregator.add(r)
            self._deliver(update)
            for e in events:
                self._deliver(e)
        self.health.batch_done(latency_ms=round((done - batch[-1][1]) * 1e3, 2), batch=len(batch))

    def finish(self) -> None:
        """After the last chunk: the waiting events, the final source state, the closing
        ``tag_off`` events and the ``summary``; then the source's error, if it gave up."""
        with self._cond:
            pending = self._due(float("inf"))
        self._deliver_events(pending)
        t_end = self._t() + self.t_offset
        if self._final_state is not None:
            state, detail = self._final_state
            self._deliver(Event(self.name, round(max(t_end, self.t_last), 3), "source_state",
                                {"state": state, "detail": detail}))
        for e in self.aggregator.close_events(max(t_end, self.t_last)):
            self._deliver(e)
        song = self.aggregator.song_level()
        tags = self.aggregator.tags
        h = self.health
        self._deliver(Summary(
            self.name, round(max(t_end, self.t_last), 3),
            probs={t: round(float(p), 4) for t, p in zip(tags, song)},
            top=self.aggregator.song_top(song), chunks=len(self.taggram),
            duration=round(self._t(), 3), overrun_samples=h.overrun_samples,
            input_overflows=int(getattr(self.source, "callback_overflows", 0)),
            samples_in=h.samples_in, nonfinite_samples=h.nonfinite_samples,
            dropped_chunks=h.dropped_chunks))
        self.finished = True
        if self.source.error is not None and self._on_error is not None:
            self._on_error(self, self.source.error)

    # ---- readers ------------------------------------------------------------------------------
    def snapshot(self):
        """The aggregator's snapshot with this stream's spectrogram, attention and health."""
        import dataclasses

        snap = self.aggregator.snapshot()
        mel, t0 = self.spectrogram.read()
        return dataclasses.replace(snap, attention=self.overlay, logmel=mel,
                                   logmel_t0=t0 + self.t_offset, frame_seconds=self.unit_seconds,
                                   status={**self.health.status(), **snap.status})
