"""A :class:`Session`: N sources, one engine. It owns a
:class:`~rt_tagger.stream.features.FeatureStream` per source and the one
:class:`~rt_tagger.stream.scheduler.InferenceScheduler`, and gives ``start`` / ``poll`` /
``end_input`` / ``stop`` / ``snapshots``. One source is a one-source session: ``rt-tagger FILE``,
``--device``, ``--source ...`` and the GUI all run through here.

Messages of every source arrive in one queue, read with :meth:`Session.poll` (non-blocking
with ``timeout=0``, safe to call again after a ``KeyboardInterrupt``) or :meth:`messages`.
A failure of one source (its stream gave up, its device vanished) is raised from ``poll``,
unless ``on_source_error`` takes it (the monitor restarts sources instead); a failure of the
engine is always raised, after the session stopped.
"""
from __future__ import annotations

import functools
import queue
import threading
from typing import Iterator

from ..errors import ConfigError
from .features import FeatureStream
from .scheduler import InferenceScheduler

__all__ = ["Session", "drain"]


class _Failed:
    def __init__(self, stream: FeatureStream | None, exc: BaseException) -> None:
        self.stream, self.exc = stream, exc


class Session:
    """Sources tagged by ``tagger``'s engine (anything with ``engine``, ``hop_units``,
    ``config``, ``make_aggregator(name)`` and ``status(source, t)``: a
    :class:`~rt_tagger.tagger.Tagger`).

    ``on_source_error(name, exc)``: called (from :meth:`poll`) when one source fails; without
    it the error is raised. ``workers``, ``batch``, ``duration`` (no source reads audio beyond
    it) and ``max_queue`` default to the tagger's ``config``.
    """

    def __init__(self, tagger, *, on_source_error=None, workers: int | None = None,
                 batch: int | None = None, duration: float | None = None,
                 max_queue: int | None = None) -> None:
        cfg = tagger.config
        if duration is not None or max_queue is not None:
            cfg = cfg.replace(**{k: v for k, v in (("duration", duration), ("max_queue", max_queue))
                                 if v is not None})
        self.tagger = tagger
        self.engine = tagger.engine
        self.config = cfg
        self._cond = threading.Condition()
        self._out: queue.Queue = queue.Queue()
        self.scheduler = InferenceScheduler(
            self.engine, self._cond, workers=cfg.workers if workers is None else workers,
            batch=cfg.batch if batch is None else batch, on_error=lambda exc: self._out.put(_Failed(None, exc)))
        self.on_source_error = on_source_error
        self.streams: dict[str, FeatureStream] = {}
        self._closed: set[str] = set()
        self._started = False
        self._stopped = False
        self._attention = None

    # ---- building -----------------------------------------------------------------------------
    def add(self, source, *, taps=(), meter=None, record: str | None = None,
            t_offset: float = 0.0) -> FeatureStream:
        """Adds ``source`` (a :class:`~rt_tagger.sources.Source`, not started) under its name;
        in a started session it starts at once. Replaces an ended or failed stream of that name."""
        name = source.name
        old = self.streams.get(name)
        if old is not None and name not in self._closed:
            raise ConfigError(f"source names must be unique, repeated: {name}")
        if old is not None:
            self.scheduler.remove(old)
        left = None if self.config.duration is None else max(0.0, self.config.duration - t_offset)
        stream = FeatureStream(source, self.engine.checkpoint, self.tagger.hop_units,
                               self.tagger.make_aggregator(name), emit=self._out.put,
                               cond=self._cond, max_queue=self.config.max_queue, duration=left,
                               record=record, taps=taps, meter=meter, t_offset=t_offset,
                               attention=self._attention_axis())
        reuse = getattr(self.engine, "frame_reuse", None)
        if reuse is not None:  # the stream itself is its key (the scheduler's positions too)
            stream.prefetch = functools.partial(reuse.extend, stream)
        self.streams[name] = stream
        self._closed.discard(name)
        if self._started:
            self._start_stream(stream)
        return stream

    def _attention_axis(self):
        if not self.engine.supports_attention:
            return None
        if self._attention is None:
            from .attention import AttentionAxis

            info = getattr(self.engine, "export_info", None) or {}
            self._attention = AttentionAxis(self.engine.checkpoint, getattr(self.engine, "model", None),
                                            time_map=info.get("time_map"))
        return self._attention

    def _start_stream(self, stream: FeatureStream) -> None:
        self._out.put(self.tagger.status(stream.source, t=stream.t_offset))
        self.scheduler.add(stream)
        stream.start(self._on_stream_error)

    def _on_stream_error(self, stream: FeatureStream, exc: BaseException) -> None:
        self._out.put(_Failed(stream, exc))

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Starts every source and the inference workers."""
        if self._started:
            return
        self._started = True
        if any(s.live for s in self.streams.values()):
            self.engine_warm_up()
        self.scheduler.start()
        for stream in list(self.streams.values()):
            self._start_stream(stream)

    def engine_warm_up(self) -> None:
        """Warm the engine before live audio flows (a remote or failing engine is not fatal here:
        the first chunk will say what is wrong)."""
        try:
            self.scheduler.engine.warm_up()
        except Exception:  # noqa: BLE001 - reported by the first real chunk instead
            pass

    def end_input(self, name: str | None = None) -> None:
        """Stops capture (of ``name``, or of every source); what was captured is still tagged
        and the summaries come (``--duration``, the first Ctrl-C)."""
        for n, s in list(self.streams.items()):
            if name is None or n == name:
                s.end_input()

    def remove(self, name: str) -> FeatureStream | None:
        """Stops source ``name`` now (no summary) and forgets its queue."""
        s = self.streams.get(name)
        if s is None:
            return None
        s.stop()
        self.scheduler.remove(s)
        self._closed.add(name)
        return s

    def stop(self) -> None:
        """Stops every source and the workers now (threads joined). Idempotent."""
        self._stopped = True
        for s in list(self.streams.values()):
            s.stop_event.set()
        self.scheduler.stop()
        for name in list(self.streams):
            self.remove(name)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- messages -----------------------------------------------------------------------------
    def ended(self, name: str) -> bool:
        """Source ``name`` will send nothing more (summary sent, failed or removed)."""
        return name in self._closed

    def poll(self, timeout: float = 0.2):
        """The next message of any source, or ``None`` if none came within ``timeout``.
        Raises ``StopIteration`` once every source has ended, and a failure (see the class)."""
        while True:
            # Every source has ended and nothing waits: say so now, not after ``timeout`` (a
            # file run would idle that long after its summary, ~5 % of a 30 s file's cold start).
            # A source that ended in error is closed only by its failure, which comes last.
            if set(self.streams) <= self._closed and self._out.empty():
                raise StopIteration
            try:
                item = self._out.get(timeout=timeout) if timeout > 0 else self._out.get_nowait()
            except queue.Empty:
                if set(self.streams) <= self._closed and self._out.empty():
                    raise StopIteration from None
                return None
            if isinstance(item, _Failed):
                if item.stream is None:  # the engine failed: nothing can go on
                    self.stop()
                    raise item.exc
                name = item.stream.name
                self._closed.add(name)
                if self.on_source_error is None:
                    self.stop()
                    raise item.exc
                item.stream.stop()
                self.on_source_error(name, item.exc)
                continue
            if item.type == "summary":
                s = self.streams.get(item.source)
                if s is not None and s.source.error is None:
                    self._closed.add(item.source)
            return item

    def messages(self) -> Iterator:
        """Every message until every source has ended (or :meth:`stop`)."""
        return drain(self.poll)

    # ---- readers ------------------------------------------------------------------------------
    def snapshots(self) -> dict:
        """``{name: Snapshot}`` of every source (copies, safe from any thread)."""
        return {name: s.snapshot() for name, s in list(self.streams.items())}

    def threads(self) -> list[threading.Thread]:
        out = self.scheduler.threads
        for s in self.streams.values():
            out += s.threads
        return out


def drain(poll) -> Iterator:
    """Iterates a ``poll()`` that returns a message or ``None`` and raises ``StopIteration``
    at the end (:meth:`Session.poll`, ``Monitor.poll``)."""
    while True:
        try:
            msg = poll()
        except StopIteration:
            return
        if msg is not None:
            yield msg
