"""One engine for N streams: the inference workers and the one batching policy.

``workers`` threads take the waiting chunks of every stream (round-robin, one chunk per
stream in turn, up to ``batch`` chunks), run them as one engine call and hand each stream its
rows back (:meth:`~rt_tagger.stream.features.FeatureStream.fold`). Two workers may run chunks of
the same stream at once (a file's chunks wait together: both cores work on one file), but each
stream's rows are folded in the order its chunks were taken, so every aggregator sees its
chunks in order. A stream whose features are done, whose queue is empty and which has nothing
in flight gets its summary (:meth:`FeatureStream.finish`).

Batching policy: on a CPU an engine call costs about the same per chunk at any batch size
(measured: musicnn 21 ms for 1 chunk, 155 ms for 7), so batching chunks that arrive together
only makes the first ones wait for the last: one chunk per call there. Accelerators run a
batch for about the price of one chunk: up to the engine's ``max_batch``.
"""
from __future__ import annotations

import collections
import os
import threading
import time

import numpy as np

from ..errors import ConfigError

__all__ = ["InferenceScheduler", "default_workers"]


def default_workers(engine) -> int:
    """Inference workers when none are asked for: 2 for a CPU engine on a machine with two or
    more cores (a file's chunks, and many sources' chunks, then run on both cores: see
    BENCHMARKS.md, cold start), else 1 (an accelerator batches what waits instead)."""
    return 2 if engine.device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


class InferenceScheduler:
    """Runs ``engine`` for the streams :meth:`add`-ed to it. ``cond`` guards every stream's
    queue; ``on_error(exc)`` is told of a worker's failure (the engine failed)."""

    def __init__(self, engine, cond: threading.Condition, *, workers: int | None = None,
                 batch: int | None = None, on_error=None) -> None:
        if workers is None:
            workers = default_workers(engine)
        if not (isinstance(workers, int) and workers >= 1):
            raise ConfigError(f"inference workers must be an integer >= 1, got {workers!r}")
        if batch is not None and not (isinstance(batch, int) and batch >= 1):
            raise ConfigError(f"inference batch must be an integer >= 1, got {batch!r}")
        self.engine = engine
        if batch is None:
            batch = 1 if engine.device == "cpu" else engine.max_batch
        self.batch = min(batch, engine.max_batch)
        self.workers = workers
        self.batches: collections.Counter[int] = collections.Counter()  # batch size -> count
        self._cond = cond
        self._streams: list = []
        self._stop = threading.Event()
        self._idle = workers
        self._rr = 0
        self._threads: list[threading.Thread] = []
        self._on_error = on_error

    def add(self, stream) -> None:
        with self._cond:
            self._streams.append(stream)
            self._cond.notify_all()

    def remove(self, stream) -> None:
        with self._cond:
            if stream in self._streams:
                self._streams.remove(stream)
            self._cond.notify_all()
        self._forget(stream)

    def _forget(self, stream) -> None:
        """Drop a stream's frame-reuse rows (finished or removed)."""
        if getattr(self.engine, "frame_reuse", None) is not None:
            self.engine.frame_reuse.forget(stream)

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._guard, name=f"rt-tagger-inference-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=10)

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    # ---- the workers --------------------------------------------------------------------------
    def _guard(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # surfaces in the session's poll(), never lost
            if self._on_error is not None:
                self._on_error(exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                for s in self._streams:
                    s.flush_loose()
                # Several workers split what waits; each batch of a stream takes a ticket, and
                # its rows are folded in ticket order (see _run).
                waiting = sum(len(s.queue) for s in self._streams)
                share = max(1, -(-waiting // self._idle)) if self._idle > 1 else self.batch
                work, finish = self._collect(min(self.batch, share))
                if not work and not finish:
                    self._cond.wait(0.1)
                    continue
                self._idle -= 1
                tickets = []
                for s, _ in work:
                    s.inflight += 1
                    tickets.append(s.tickets)
                    s.tickets += 1
                for s in finish:
                    s.inflight += 1
                self._cond.notify_all()  # room in the queues for offline producers
            try:
                if work:
                    self._run(work, tickets)
                for s in finish:
                    s.finish()
                    self._forget(s)
            finally:
                with self._cond:
                    self._idle += 1
                    for s, _ in work:
                        s.inflight -= 1
                    for s in finish:
                        s.inflight -= 1
                    self._cond.notify_all()

    def _run(self, work, tickets: list[int]) -> None:
        chunks = [(stream, c) for stream, items in work for c, _ in items]
        batch = np.stack([c.data for _, c in chunks])
        out, failure = None, None
        try:
            if getattr(self.engine, "frame_reuse", None) is not None:
                # (stream, start frame): overlapping chunks of a stream share frame-stage work
                out = self.engine.run(batch, positions=[(stream, c.start) for stream, c in chunks])
            else:
                out = self.engine.run(batch)
        except BaseException as exc:  # the later tickets of these streams must not wait forever
            failure = exc
        done = time.perf_counter()
        self.batches[len(chunks)] += 1
        i = 0
        for (stream, items), ticket in zip(work, tickets):
            k = len(items)
            with self._cond:  # the stream's earlier batches first (another worker may hold one)
                while stream.folded != ticket and not self._stop.is_set():
                    self._cond.wait(0.1)
                if stream.folded != ticket:
                    break  # stopped
            try:
                if out is not None:
                    att = None if out.attention is None else out.attention[i : i + k]
                    stream.fold(items, out.probs[i : i + k], att, done)
            except BaseException as exc:  # the other streams' rows still go out
                failure = failure or exc
            finally:
                with self._cond:
                    stream.folded += 1
                    self._cond.notify_all()
            i += k
        if failure is not None:
            raise failure

    def _collect(self, limit: int):
        """Round-robin over the streams, one chunk at a time, up to ``limit`` chunks; and the
        streams that are done (``cond`` held)."""
        active = [s for s in self._streams if not s.finished and not s.stop_event.is_set()]
        if active:
            self._rr += 1
            r = self._rr % len(active)
            active = active[r:] + active[:r]
        taken: dict[int, tuple] = {}
        total = 0
        while total < limit:
            progress = False
            for s in active:
                if total >= limit:
                    break
                got = s.take(1)
                if got:
                    taken.setdefault(id(s), (s, []))[1].extend(got)
                    total += 1
                    progress = True
            if not progress:
                break
        finish = [s for s in active if s.drained and not s.inflight and id(s) not in taken]
        for s in finish:
            s.finished = True  # claimed: no other worker finishes it too
        return list(taken.values()), finish
