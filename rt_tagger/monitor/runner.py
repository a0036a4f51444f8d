"""Several sources in one process, with one shared engine.

Each source gets its own pipeline (ring, feature thread with log-mel and chunker, aggregator)
plus a :class:`~rt_tagger.monitor.alarms.MeterTap` (loudness and alarms). The pipelines are
started without their own inference thread: one shared thread (or ``workers`` of them, which
split what waits) takes the waiting chunks of every source (round-robin, up to ``batch``
chunks: the engine's ``max_batch`` on a GPU, 1 on a CPU, see below), runs them as one batch and hands each pipeline its rows back; a source's
chunks are never in two workers at once, so each aggregator sees them in order. N sources
cost one model in memory and one process instead of N.

A source that fails (a stream that gave up reconnecting, a device that cannot be reopened) is
marked ``failed`` and, if it is live, restarted after ``restart_delay`` seconds;
:meth:`Monitor.restart` restarts one source by hand. The others never stop.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Iterator

import numpy as np

from ..errors import ConfigError, RtTaggerError
from ..pipeline import drain
from .alarms import MeterTap
from .spec import SourceSnapshot, SourceSpec

__all__ = ["Monitor", "SourceSnapshot", "SourceSpec"]


class _SignalQueue(queue.Queue):
    """A queue that sets ``signal`` on every put, so one reader can wait for many queues."""

    def __init__(self, signal: threading.Event) -> None:
        super().__init__()
        self.signal = signal

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.signal.set()


class _Slot:
    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.pipe = None
        self.tap: MeterTap | None = None
        self.state = "starting"
        self.restarts = 0
        self.error: str | None = None
        self.closed = True  # no messages will come from self.pipe
        self.finished = False  # the shared thread has sent this pipe's summary
        self.restart_at: float | None = None
        self.inflight = False  # an inference worker holds chunks of this source
        # One timeline per source across restarts: a restarted pipeline counts from 0, so its
        # times are shifted by where the previous one got to (t_offset); t_last is the latest
        # time told, which the monitor's own events (failed, restart) carry.
        self.t_offset = 0.0
        self.t_last = 0.0

    def shift(self, msg: dict) -> dict:
        """Puts a message of the current pipeline on the source's timeline."""
        if self.t_offset:
            for key in ("t", "t_start", "since"):
                if isinstance(msg.get(key), (int, float)):
                    msg[key] = round(msg[key] + self.t_offset, 6)
        if isinstance(msg.get("t"), (int, float)):
            self.t_last = max(self.t_last, msg["t"])
        return msg


class Monitor:
    """Runs ``sources`` on ``tagger``'s engine. Iterate :meth:`messages` (or :meth:`poll`)."""

    def __init__(self, tagger, sources: list[SourceSpec], *, max_queue: int = 8,
                 restart_delay: float | None = 30.0, recent_events: int = 100,
                 workers: int = 1, batch: int | None = None,
                 max_seconds: float | None = None) -> None:
        self.max_seconds = max_seconds  # --duration: no source reads audio beyond it
        if not sources:
            raise ConfigError("no sources to monitor")
        if not (isinstance(workers, int) and workers >= 1):
            raise ConfigError(f"inference workers must be an integer >= 1, got {workers!r}")
        if batch is not None and not (isinstance(batch, int) and batch >= 1):
            raise ConfigError(f"inference batch must be an integer >= 1, got {batch!r}")
        names = [s.name for s in sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"source names must be unique, repeated: {', '.join(sorted(dup))}")
        self.tagger = tagger
        self.engine = tagger.engine
        # On a CPU an engine call costs about the same per chunk at any batch size (measured:
        # musicnn 21 ms for 1 chunk, 155 ms for 7), so batching chunks that arrive together only
        # makes the first ones wait for the last: take one chunk per call there. Accelerators
        # run a batch for about the price of one chunk: batch up to the engine's max_batch.
        if batch is None:
            batch = 1 if self.engine.device == "cpu" else self.engine.max_batch
        self.batch = min(batch, self.engine.max_batch)
        self.max_queue = max_queue
        self.restart_delay = restart_delay
        self._slots = {s.name: _Slot(s) for s in sources}
        self._cond = threading.Condition()
        self._wake = threading.Event()  # set whenever any message is queued anywhere
        self._out: queue.Queue = _SignalQueue(self._wake)
        self._stop = threading.Event()
        self._rr = 0
        self._ending = False
        self.workers = workers
        self._idle = workers
        self._threads: list[threading.Thread] = []
        self.events: collections.deque[dict] = collections.deque(maxlen=recent_events)
        self.batches: collections.Counter[int] = collections.Counter()  # batch size -> count
        self.outputs: dict[str, object] = {}  # name -> output with a ``status`` dict (OSC, ...)

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        # Opened side by side: probing a network stream can take seconds. A user mistake
        # (missing file, unknown device) raises here, after stopping what did open.
        errors: list[BaseException] = []

        def open_one(slot: _Slot) -> None:
            try:
                self._open(slot)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one, args=(s,), daemon=True) for s in self._slots.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        for i in range(self.workers):
            t = threading.Thread(target=self._guard, name=f"rt-tagger-inference-shared-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _open(self, slot: _Slot) -> None:
        from ..pipeline import Pipeline
        from ..sources import open_source

        spec = slot.spec
        src = open_source(spec.target, name=spec.name, realtime=spec.realtime, channel=spec.channel)
        weight = 2.0 if spec.channel is None and src.channels == 2 else 1.0
        tap = MeterTap(src.sample_rate, spec.alarms, weight=weight)
        pipe = Pipeline(self.engine, src, self.tagger.make_aggregator(),
                        hop_units=self.tagger.hop_units, max_queue=self.max_queue,
                        cond=self._cond, taps=[tap], out=_SignalQueue(self._wake))
        self._out.put(dict(self.tagger.status(src), t=slot.t_last))
        if self.max_seconds is not None:
            pipe.max_seconds = max(0.0, self.max_seconds - slot.t_last)
        pipe.start(inference=False)
        with self._cond:
            slot.t_offset = slot.t_last
            slot.pipe, slot.tap = pipe, tap
            slot.closed = slot.finished = False
            slot.state, slot.error, slot.restart_at = "starting", None, None
            self._cond.notify_all()

    def restart(self, name: str, reason: str = "requested") -> None:
        """Stop source ``name`` and open it again; the other sources go on undisturbed."""
        if name not in self._slots:
            raise ConfigError(f"no source named {name!r} (sources: {', '.join(self._slots)})")
        slot = self._slots[name]
        with self._cond:
            old, slot.pipe, slot.closed = slot.pipe, None, True
            slot.restart_at = time.monotonic() + 3600.0  # pending: poll() must not end meanwhile
        if old is not None:
            old.stop()
        slot.restarts += 1
        self._event(slot, {"type": "event", "event": "source_restart", "t": slot.t_last,
                           "restarts": slot.restarts, "detail": reason})
        try:
            self._open(slot)
        except RtTaggerError as exc:
            self._fail(slot, str(exc))

    def end_input(self) -> None:
        """Stop every source but let what was captured drain (summaries still come)."""
        for slot in self._slots.values():
            slot.restart_at = None
            if slot.pipe is not None:
                slot.pipe.end_input()
        self._ending = True

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for slot in self._slots.values():
            if slot.pipe is not None:
                slot.pipe.stop()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=10)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- messages -----------------------------------------------------------------------------
    def _event(self, slot: _Slot, msg: dict) -> None:
        msg.setdefault("source", slot.spec.name)
        self._out.put(msg)

    def _fail(self, slot: _Slot, error: str) -> None:
        slot.state, slot.error, slot.closed, slot.restart_at = "failed", error, True, None
        live = slot.spec.kind in ("device", "url")
        if live and self.restart_delay is not None and not self._ending:
            slot.restart_at = time.monotonic() + self.restart_delay
            error += f"; restarting in {self.restart_delay:g} s"
        self._event(slot, {"type": "event", "event": "source_state", "t": slot.t_last, "state": "failed",
                           "detail": error})

    def poll(self, timeout: float = 0.2) -> dict | None:
        """The next message of any source, or ``None`` after ``timeout``; ``StopIteration``
        once every source has ended (and none waits for a restart)."""
        deadline = time.monotonic() + timeout
        while True:
            self._wake.clear()  # before looking, so a message queued meanwhile wakes us
            now = time.monotonic()
            for slot in self._slots.values():
                if slot.restart_at is not None and now >= slot.restart_at and not self._stop.is_set():
                    slot.restart_at = now + 3600.0  # pending; _open or _fail sets it again
                    # In the background: reopening a stream can block for its connect timeout.
                    threading.Thread(target=self.restart, daemon=True, name="rt-tagger-restart",
                                     args=(slot.spec.name, f"automatic restart after: {slot.error}")).start()
            try:
                msg = self._out.get_nowait()
            except queue.Empty:
                msg = None
            if isinstance(msg, BaseException):
                raise msg
            if msg is None:
                msg = self._poll_pipes()
            if msg is not None:
                self._observe(msg)
                return msg
            if all(s.closed and s.restart_at is None for s in self._slots.values()) and self._out.empty():
                raise StopIteration
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._wake.wait(min(remaining, 0.05))

    def _poll_pipes(self) -> dict | None:
        slots = list(self._slots.values())
        self._rr = (self._rr + 1) % len(slots)
        for slot in slots[self._rr:] + slots[: self._rr]:
            pipe = slot.pipe
            if pipe is None or slot.closed:
                continue
            try:
                msg = pipe.poll(timeout=0)
            except StopIteration:
                slot.closed = True
                if slot.state not in ("failed",):
                    slot.state = "ended"
                continue
            except RtTaggerError as exc:  # the source gave up (stream gone, device lost)
                self._fail(slot, str(exc))
                continue
            if msg is not None:
                return slot.shift(msg)
        return None

    def _observe(self, msg: dict) -> None:
        slot = self._slots.get(msg.get("source", ""))
        if slot is None:
            return
        if msg["type"] == "update" and slot.tap is not None:
            msg["loudness"] = slot.tap.reading()
        elif msg["type"] == "event":
            if msg["event"] == "source_state" and msg["state"] != "stopped":
                slot.state = msg["state"]
            self.events.append(msg)

    def messages(self) -> Iterator[dict]:
        return drain(self.poll)

    # ---- the shared inference thread ----------------------------------------------------------
    def _guard(self) -> None:
        try:
            self._infer_loop()
        except BaseException as exc:  # surfaces in poll(), never lost
            self._out.put(exc)

    def _infer_loop(self) -> None:
        eng = self.engine
        while not self._stop.is_set():
            with self._cond:
                # Several workers split what waits; a source whose chunks are in flight waits
                # for them, so every aggregator still sees its chunks in order.
                waiting = sum(len(s.pipe._chunks) for s in self._slots.values()
                              if s.pipe is not None and not s.inflight)
                share = max(1, -(-waiting // self._idle)) if self._idle > 1 else self.batch
                work, finish = self._collect(min(self.batch, share))
                if not work and not finish:
                    self._cond.wait(0.1)
                    continue
                self._idle -= 1
                for slot, _, _ in work:
                    slot.inflight = True
                self._cond.notify_all()  # room in the queues for offline producers
            try:
                for pipe in finish:
                    pipe.finish()
                if work:
                    self._run(eng, work)
            finally:
                with self._cond:
                    self._idle += 1
                    for slot, _, _ in work:
                        slot.inflight = False
                    self._cond.notify_all()

    def _run(self, eng, work) -> None:
        chunks = [c for _, _, batch in work for c in batch]
        out = eng.run(np.stack([c.data for c, _ in chunks]))
        done = time.perf_counter()
        self.batches[len(chunks)] += 1
        i = 0
        for _, pipe, batch in work:
            k = len(batch)
            att = None if out.attention is None else out.attention[i : i + k]
            pipe.fold(batch, out.probs[i : i + k], att, done)
            i += k

    def _collect(self, limit: int):
        """Round-robin over the sources, one chunk at a time, up to ``limit`` chunks."""
        active = [s for s in self._slots.values() if s.pipe is not None and not s.finished
                  and not s.inflight and not s.pipe._stop.is_set()]
        if active:
            r = self._rr % len(active)
            active = active[r:] + active[:r]
        taken: dict[int, tuple] = {}
        total = 0
        while total < limit:
            progress = False
            for s in active:
                if total >= limit:
                    break
                got = s.pipe.take_chunks(1)
                if got:
                    taken.setdefault(id(s.pipe), (s, s.pipe, []))[2].extend(got)
                    total += 1
                    progress = True
            if not progress:
                break
        finish = []
        for s in active:
            if s.pipe.drained and id(s.pipe) not in taken:
                s.finished = True
                finish.append(s.pipe)
        return list(taken.values()), finish

    # ---- readers (GUI, HTTP status) -----------------------------------------------------------
    def snapshots(self) -> dict[str, SourceSnapshot]:
        out = {}
        for name, s in self._slots.items():
            pipe, tap = s.pipe, s.tap
            out[name] = SourceSnapshot(
                name=name, target=s.spec.target, state=s.state, restarts=s.restarts, error=s.error,
                loudness=tap.reading() if tap else {}, alarms=tap.alarms.active if tap else [],
                tags=pipe.snapshot() if pipe is not None else None)
        return out

    def status(self) -> dict:
        """JSON-ready status of every source (the HTTP endpoint's body)."""
        sources = {}
        for name, snap in self.snapshots().items():
            tags = snap.tags
            st = tags.status if tags is not None else {}
            sources[name] = {
                "input": snap.target, "state": snap.state, "restarts": snap.restarts,
                "error": snap.error,
                "t": round(float(tags.t) + self._slots[name].t_offset, 3) if tags is not None else 0.0,
                "top": [[t, round(float(p), 4)] for t, p in tags.top] if tags is not None else [],
                "active_tags": list(tags.active) if tags is not None else [],
                "alarms": snap.alarms, "loudness": snap.loudness,
                "latency_ms": st.get("latency_ms"), "overruns": st.get("overruns", 0),
                "dropped_chunks": st.get("dropped_chunks", 0), "silence": bool(st.get("silence", False)),
                "nonfinite_samples": st.get("nonfinite_samples", 0)}
        return {"model": self.tagger.model, "backend": self.engine.name,
                "hop": round(self.tagger.hop_seconds, 4), "sources": sources,
                "outputs": {name: dict(o.status) for name, o in list(self.outputs.items())},
                "events": list(self.events)[-20:]}
