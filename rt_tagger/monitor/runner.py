"""Several sources in one process, with one shared engine: a
:class:`~rt_tagger.stream.Session` plus what monitoring adds, restart policy and alarms.
``monitoring=False`` leaves both out (a plain run: no meters, a failing source is raised).

Each source gets a :class:`~rt_tagger.monitor.alarms.MeterTap` (loudness and alarms) on its
stream; its readings go into that source's updates. A source that fails (a stream that gave
up reconnecting, a device that cannot be reopened) is marked ``failed`` and, if it is live,
restarted after ``restart_delay`` seconds; :meth:`Monitor.restart` restarts one by hand. The
others never stop. A restarted source continues its timeline (``t`` goes on from where it was).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Iterator

from ..errors import ConfigError, RtTaggerError
from ..stream import drain
from .alarms import MeterTap
from .spec import SourceSnapshot, SourceSpec, check_source_names

__all__ = ["Monitor", "SourceSnapshot", "SourceSpec"]

PENDING = 3600.0  # a restart under way: poll() must not end meanwhile


class _Slot:
    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.tap: MeterTap | None = None
        self.state = "starting"
        self.restarts = 0
        self.error: str | None = None
        self.restart_at: float | None = None


class Monitor:
    """Runs ``sources`` on ``tagger``'s engine. Iterate :meth:`messages` (or :meth:`poll`)."""

    def __init__(self, tagger, sources: list[SourceSpec], *, max_queue: int = 8,
                 restart_delay: float | None = 30.0, recent_events: int = 100,
                 workers: int | None = None, batch: int | None = None,
                 max_seconds: float | None = None, records: dict[str, str] | None = None,
                 monitoring: bool = True) -> None:
        check_source_names(sources)
        self.tagger = tagger
        self.engine = tagger.engine
        self.monitoring = monitoring
        self.session = tagger.session(on_source_error=self._on_source_error if monitoring else None,
                                      workers=workers,
                                      batch=batch, duration=max_seconds, max_queue=max_queue)
        self.restart_delay = restart_delay
        self.records = dict(records or {})  # name -> --record WAV
        self._slots = {s.name: _Slot(s) for s in sources}
        self._lock = threading.Lock()
        self._ending = False
        self._stopped = False
        self.events: collections.deque = collections.deque(maxlen=recent_events)
        self.outputs: dict[str, object] = {}  # name -> output with a ``status`` dict (OSC, ...)

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    @property
    def batches(self):
        """Engine calls by batch size (``Counter``)."""
        return self.session.scheduler.batches

    @property
    def taps(self) -> dict[str, MeterTap | None]:
        return {n: s.tap for n, s in self._slots.items()}

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
        self.session.start()

    def _open(self, slot: _Slot, t_offset: float = 0.0) -> None:
        from ..sources import open_source

        spec = slot.spec
        src = open_source(spec.target, name=spec.name, realtime=spec.realtime, channel=spec.channel)
        weight = 2.0 if spec.channel is None and src.channels == 2 else 1.0
        tap = MeterTap(src.sample_rate, spec.alarms, weight=weight) if self.monitoring else None
        with self._lock:
            self.session.add(src, meter=tap, t_offset=t_offset, record=self.records.get(spec.name))
            slot.tap = tap
            slot.state, slot.error, slot.restart_at = "starting", None, None

    def add(self, spec: SourceSpec, t_offset: float = 0.0) -> None:
        """Add source ``spec`` (started at once in a running monitor, on its timeline from
        ``t_offset`` seconds); replaces an ended source of that name."""
        if spec.name in self._slots and not self.session.ended(spec.name):
            raise ConfigError(f"source names must be unique, repeated: {spec.name}")
        slot = self._slots[spec.name] = _Slot(spec)
        self._open(slot, t_offset)

    def remove(self, name: str) -> None:
        """Stop source ``name`` for good (no summary; no restart)."""
        self.session.remove(name)
        slot = self._slots.pop(name, None)
        if slot is not None:
            slot.restart_at = None

    def restart(self, name: str, reason: str = "requested") -> None:
        """Stop source ``name`` and open it again; the other sources go on undisturbed."""
        if name not in self._slots:
            raise ConfigError(f"no source named {name!r} (sources: {', '.join(self._slots)})")
        slot = self._slots[name]
        slot.restart_at = time.monotonic() + PENDING
        old = self.session.remove(name)
        t_last = old.t_last if old is not None else 0.0
        slot.restarts += 1
        if old is not None:
            old.event_now("source_restart", restarts=slot.restarts, detail=reason)
        try:
            self._open(slot, t_offset=t_last)
        except RtTaggerError as exc:
            self._fail(slot, str(exc), old)

    def end_input(self) -> None:
        """Stop every source but let what was captured drain (summaries still come)."""
        self._ending = True
        for slot in self._slots.values():
            slot.restart_at = None
        self.session.end_input()

    def stop(self) -> None:
        self._stopped = True
        self.session.stop()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- failures and restarts ----------------------------------------------------------------
    def _on_source_error(self, name: str, exc: BaseException) -> None:
        if not isinstance(exc, RtTaggerError):
            raise exc
        self._fail(self._slots[name], str(exc), self.session.streams.get(name))

    def _fail(self, slot: _Slot, error: str, stream) -> None:
        slot.state, slot.error, slot.restart_at = "failed", error, None
        live = slot.spec.kind in ("device", "url")
        if live and self.restart_delay is not None and not self._ending:
            slot.restart_at = time.monotonic() + self.restart_delay
            error += f"; restarting in {self.restart_delay:g} s"
        if stream is not None:
            stream.event_now("source_state", state="failed", detail=error)

    # ---- messages -----------------------------------------------------------------------------
    def poll(self, timeout: float = 0.2):
        """The next message of any source, or ``None`` after ``timeout``; ``StopIteration``
        once every source has ended (and none waits for a restart)."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            for slot in self._slots.values():
                if slot.restart_at is not None and now >= slot.restart_at and not self._stopped:
                    slot.restart_at = now + PENDING  # pending; _open or _fail sets it again
                    # In the background: reopening a stream can block for its connect timeout.
                    threading.Thread(target=self.restart, daemon=True, name="rt-tagger-restart",
                                     args=(slot.spec.name, f"automatic restart after: {slot.error}")).start()
            try:
                msg = self.session.poll(timeout=min(0.05, max(0.0, deadline - now)))
            except StopIteration:
                if any(s.restart_at is not None for s in self._slots.values()):
                    msg = None
                    if time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                else:
                    raise
            if msg is not None:
                self._observe(msg)
                return msg
            if time.monotonic() >= deadline:
                return None

    def _observe(self, msg) -> None:
        slot = self._slots.get(msg.source)
        if slot is None or msg.type != "event":
            return
        if msg.event == "source_state" and msg["state"] != "stopped":
            slot.state = msg["state"]
        self.events.append(msg)

    def messages(self) -> Iterator:
        return drain(self.poll)

    # ---- readers (GUI, HTTP status) -----------------------------------------------------------
    def snapshots(self) -> dict[str, SourceSnapshot]:
        out = {}
        streams = self.session.streams
        for name, s in self._slots.items():
            tap, stream = s.tap, streams.get(name)
            out[name] = SourceSnapshot(
                name=name, target=s.spec.target, state=s.state, restarts=s.restarts, error=s.error,
                loudness=tap.reading() if tap else {}, alarms=tap.alarms.active if tap else [],
                tags=stream.snapshot() if stream is not None else None)
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
                "t": round(float(tags.t), 3) if tags is not None else 0.0,
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
