"""The driver of a cluster run: :class:`ClusterMonitor` shards the sources over
:class:`~rt_tagger.cluster.actor.SourceActor` actors, pulls their messages and yields them as
one stream, with the surface of :class:`~rt_tagger.monitor.Monitor` (``start``, ``poll``,
``messages``, ``end_input``, ``stop``, ``status``, ``events``, ``outputs``) plus ``add`` and
``remove``. The sinks (JSON Lines, event log, OSC, HTTP status) are the usual ones.

Each actor is pulled by one call in flight at a time, so its messages keep their order. When an
actor (or its node) dies, Ray restarts it (``max_restarts``); the driver then

1. emits ``source_state`` ``failed`` for each of its sources, at the last time it saw of each;
2. waits until the restarted actor answers, and starts the same sources in it again, each at
   its last time (the timeline goes on, as a monitor's restart does);
3. emits ``source_restart`` for each, with ``gap_s`` (wall seconds without output from it) and
   ``lost_samples`` (those seconds at the model's sample rate: the live audio nobody tagged).

A file source starts again from its beginning (it is not a live stream); a live source
reconnects. Nothing else is lost: the other actors never stop.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Iterator

from ..config import ClusterSettings
from ..errors import ConfigError, RtTaggerError
from ..messages import Event
from ..monitor.spec import check_source_names
from ..stream import drain
from .wire import from_wire

__all__ = ["ClusterMonitor"]

RETRY_S = 0.5  # between "is the restarted actor back?" probes
STATUS_TIMEOUT_S = 2.0  # an actor that does not answer /status within this shows its last status


class _Shard:
    """One source actor as the driver sees it."""

    def __init__(self, index: int, handle, specs) -> None:
        self.index, self.handle = index, handle
        self.specs = {s.name: s for s in specs}
        self.place: dict = {}
        self.state = "starting"  # running, recovering, done, dead
        self.pending = None  # the one call in flight: (kind, ObjectRef)
        self.retry_at: float | None = None
        self.died_at: float | None = None
        self.failures = 0  # failed probes since it died
        self.restarts = 0
        self.status: dict = {}

    def where(self) -> dict:
        p = self.place
        return {"actor": p.get("actor"), "actor_index": self.index, "node": p.get("node"),
                "node_ip": p.get("node_ip"), "host": p.get("host"), "pid": p.get("pid")}


class ClusterMonitor:
    """Runs ``sources`` (:class:`~rt_tagger.monitor.SourceSpec` list) with ``config``
    (:class:`~rt_tagger.config.StreamConfig`) on a Ray cluster (``settings``:
    :class:`~rt_tagger.cluster.ClusterSettings`). Iterate :meth:`messages` (or :meth:`poll`)."""

    def __init__(self, config, sources, settings: ClusterSettings | None = None, *,
                 monitoring: bool = True, restart_delay: float | None = 30.0, max_queue: int = 8,
                 recent_events: int = 100) -> None:
        check_source_names(sources)
        self.config, self.sources = config, list(sources)
        self.settings = settings or ClusterSettings()
        self.monitoring, self.restart_delay, self.max_queue = monitoring, restart_delay, max_queue
        self.events: collections.deque = collections.deque(maxlen=recent_events)
        self.outputs: dict[str, object] = {}  # name -> output with a ``status`` dict (as Monitor)
        self.shards: list[_Shard] = []
        self._owner: dict[str, _Shard] = {}
        self._buf: collections.deque = collections.deque()
        self._last_t: dict[str, float] = {}
        self._last_wall: dict[str, float] = {}
        self._rate: dict[str, int] = {}
        self._ended: set[str] = set()
        self._head: dict = {}  # model, backend, hop: from the first status message
        self._lock = threading.Lock()
        self._ray = None
        self._connected = False
        self._app: str | None = None
        self._ending = self._stopped = False

    @property
    def names(self) -> list[str]:
        return list(self._owner)

    def shard(self, name: str) -> _Shard:
        """The actor that runs source ``name`` (``handle``: its Ray actor, ``place``, ``state``)."""
        return self._owner[name]

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Connects (``local``: starts Ray on 127.0.0.1), deploys the Serve model if asked,
        starts the actors and their sources. A failure stops what started and raises."""
        from .actor import remote_class
        from .connect import connect, require_ray

        self._connected = connect(self.settings.address)
        self._ray = ray = require_ray()
        try:
            if self.settings.inference == "serve":
                from .serve_engine import deploy

                self._app = deploy(self.config, self.settings)
            cls = remote_class(ray, self.settings)
            n = min(self.settings.actors, len(self.sources))
            for i in range(n):
                specs = self.sources[i::n]
                handle = cls.remote(self.config, specs, monitoring=self.monitoring,
                                    restart_delay=self.restart_delay, serve_app=self._app,
                                    max_queue=self.max_queue)
                shard = _Shard(i, handle, specs)
                self.shards.append(shard)
                self._owner.update((s.name, shard) for s in specs)
            places = ray.get([s.handle.start.remote() for s in self.shards])
        except BaseException as exc:
            self.stop()
            raise _user_error(ray, exc) from None
        for shard, place in zip(self.shards, places):
            shard.place, shard.state = place, "running"
            self._pull(shard)

    def end_input(self) -> None:
        """Every actor stops capture; what was captured drains and the summaries come."""
        self._ending = True
        for shard in self.shards:
            if shard.state == "running":
                shard.handle.end_input.remote()
            elif shard.state == "recovering":  # nothing to drain there
                self._give_up(shard, "stopped while its Ray actor restarted")

    def stop(self) -> None:
        """Stops the actors (and the Serve deployment, and Ray if this monitor started it)."""
        if self._stopped or self._ray is None:
            self._stopped = True
            return
        self._stopped = True
        ray = self._ray
        stops = [s.handle.stop.remote() for s in self.shards if s.state in ("running", "done")]
        try:
            ray.wait(stops, num_returns=len(stops), timeout=10.0)
        except Exception:  # noqa: BLE001 - an actor that is gone needs no stopping
            pass
        for s in self.shards:
            ray.kill(s.handle, no_restart=True)
        if self._app is not None:
            from .serve_engine import undeploy

            undeploy(self._app, shutdown=not self._connected)
        if self._connected:
            ray.shutdown()

    def __enter__(self) -> "ClusterMonitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- adding and removing sources while running --------------------------------------------
    def add(self, spec) -> None:
        """Starts ``spec`` on the running actor with the fewest sources."""
        if spec.name in self._owner and spec.name not in self._ended:
            raise ConfigError(f"source names must be unique, repeated: {spec.name}")
        running = [s for s in self.shards if s.state == "running"]
        if not running:
            raise ConfigError("no running actor to take the source")
        shard = min(running, key=lambda s: len(s.specs))
        self._ray.get(shard.handle.add.remote(spec))
        with self._lock:
            old = self._owner.get(spec.name)
            if old is not None:
                old.specs.pop(spec.name, None)
            shard.specs[spec.name] = spec
            self._owner[spec.name] = shard
            self._ended.discard(spec.name)

    def remove(self, name: str) -> None:
        """Stops source ``name`` now (no summary), wherever it runs."""
        shard = self._owner.get(name)
        if shard is None:
            raise ConfigError(f"no source named {name!r} (sources: {', '.join(self._owner)})")
        if shard.state == "running":
            self._ray.get(shard.handle.remove.remote(name))
        with self._lock:
            shard.specs.pop(name, None)
            del self._owner[name]
            self._ended.add(name)

    # ---- messages -----------------------------------------------------------------------------
    def poll(self, timeout: float = 0.2):
        """The next message of any source, or ``None`` after ``timeout``; ``StopIteration``
        once every actor has ended (a restarting one is waited for)."""
        ray = self._ray
        deadline = time.monotonic() + timeout
        while True:
            if self._buf:
                return self._buf.popleft()
            now = time.monotonic()
            for shard in self.shards:
                if shard.retry_at is not None and now >= shard.retry_at:
                    shard.retry_at = None
                    self._probe(shard)
            live = [s for s in self.shards if s.state in ("running", "recovering")]
            if not live:
                raise StopIteration
            waiting = {s.pending[1]: s for s in live if s.pending is not None}
            left = max(0.0, deadline - now)
            if waiting:
                ready, _ = ray.wait(list(waiting), num_returns=1, timeout=left)
                if ready:
                    ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
                for ref in ready:
                    self._settle(waiting[ref], ref)
            else:  # only restarts waiting for their next probe
                time.sleep(min(left, 0.05))
            if not self._buf and time.monotonic() >= deadline:
                return None

    def messages(self) -> Iterator:
        return drain(self.poll)

    def _pull(self, shard: _Shard) -> None:
        shard.pending = ("pull", shard.handle.pull.remote())

    def _probe(self, shard: _Shard) -> None:
        shard.pending = ("place", shard.handle.place.remote())

    def _settle(self, shard: _Shard, ref) -> None:
        ray = self._ray
        kind, _ = shard.pending
        shard.pending = None
        try:
            value = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self._lost(shard, exc)
            return
        except ray.exceptions.RayTaskError as exc:  # the shard itself failed (its engine)
            self._give_up(shard, str(_user_error(ray, exc)))
            return
        if kind == "pull":
            msgs, done = value
            for d in msgs:
                self._buf.append(self._observe(from_wire(d)))
            if done:
                shard.state = "done"
            else:
                self._pull(shard)
        elif kind == "place":
            if self._ending:
                self._give_up(shard, "stopped while its Ray actor restarted")
            elif value["started"]:  # it never went away (a transient error): pull on
                shard.state, shard.failures = "running", 0
                self._pull(shard)
            else:
                offsets = {n: self._last_t.get(n, 0.0) for n in shard.specs}
                specs = [s for n, s in shard.specs.items() if n not in self._ended]
                shard.pending = ("start", shard.handle.start.remote(offsets, specs))
        elif kind == "start":
            self._resumed(shard, value)

    def _lost(self, shard: _Shard, exc: BaseException) -> None:
        """A call to ``shard`` failed because its actor died or is unavailable."""
        now = time.monotonic()
        if shard.state == "running":
            shard.state, shard.died_at, shard.failures = "recovering", now, 0
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            for name in self._live_names(shard):
                self._buf.append(self._observe(Event(
                    name, round(self._last_t.get(name, 0.0), 3), "source_state",
                    {"state": "failed", "detail": f"its Ray actor died ({why[:160]}); waiting for Ray to restart it",
                     **shard.where()}), ours=True))
        else:
            shard.failures += 1
        limit = self.settings.max_restarts
        if isinstance(exc, self._ray.exceptions.ActorDiedError) and limit >= 0 and shard.failures > limit + 1:
            self._give_up(shard, f"its Ray actor is gone (restarted at most {limit} times)")
            return
        shard.retry_at = now + (0.0 if shard.failures == 0 else RETRY_S)

    def _resumed(self, shard: _Shard, place: dict) -> None:
        now = time.monotonic()
        shard.place, shard.state, shard.failures = place, "running", 0
        shard.restarts += 1
        for name in self._live_names(shard):
            gap = now - self._last_wall.get(name, shard.died_at or now)
            rate = self._rate.get(name, 0)
            kind = shard.specs[name].kind
            self._buf.append(self._observe(Event(
                name, round(self._last_t.get(name, 0.0), 3), "source_restart",
                {"restarts": shard.restarts, "gap_s": round(gap, 3), "lost_samples": int(round(gap * rate)),
                 "detail": f"its Ray actor was restarted on node {place.get('node_ip')}; "
                           + ("the file starts again from its beginning" if kind == "file"
                              else "the source reconnected"),
                 **shard.where()}), ours=True))
        self._pull(shard)

    def _give_up(self, shard: _Shard, why: str) -> None:
        shard.state, shard.pending, shard.retry_at = "dead", None, None
        for name in self._live_names(shard):
            self._buf.append(self._observe(Event(name, round(self._last_t.get(name, 0.0), 3), "source_state",
                                                 {"state": "failed", "detail": why, **shard.where()}),
                                           ours=True))
            self._ended.add(name)

    def _live_names(self, shard: _Shard) -> list[str]:
        return [n for n in shard.specs if n not in self._ended]

    def _observe(self, msg, *, ours: bool = False):
        """Notes what ``msg`` tells (times, rate, end); ``ours``: an event of the driver's own,
        which says nothing of when the source last delivered."""
        name = msg["source"]
        self._last_t[name] = max(self._last_t.get(name, 0.0), float(msg["t"]))
        if not ours:
            self._last_wall[name] = time.monotonic()
        kind = msg["type"]
        if kind == "status":
            self._rate[name] = int(msg["sample_rate"])
            if not self._head:
                self._head = {"model": msg["model"], "backend": msg["backend"], "hop": msg["hop"]}
        elif kind == "summary":
            self._ended.add(name)
        elif kind == "event":
            self.events.append(msg)
        return msg

    # ---- readers (HTTP status) ----------------------------------------------------------------
    def status(self) -> dict:
        """JSON-ready status of every source, as :meth:`Monitor.status`, plus where each runs
        (``actor``, ``actor_index``, ``node``, ``node_ip``, ``host``, ``pid``) and ``cluster``."""
        ray = self._ray
        with self._lock:
            shards = list(self.shards)
            owner = dict(self._owner)
        asked = {s.handle.status.remote(): s for s in shards if s.state in ("running", "done")}
        if asked:
            ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=STATUS_TIMEOUT_S)
            for ref in ready:
                try:
                    asked[ref].status = ray.get(ref)
                except ray.exceptions.RayError:
                    pass  # it died meanwhile: its last status stays
        sources = {}
        for name, shard in owner.items():
            row = dict(shard.status.get("sources", {}).get(name) or
                       {"input": shard.specs[name].target, "state": "starting", "restarts": 0, "error": None})
            if shard.state == "recovering":
                row["state"] = "restarting"
            elif shard.state == "dead":
                row["state"] = "failed"
            row["restarts"] = row.get("restarts", 0) + shard.restarts
            row.update(shard.where())
            sources[name] = row
        return {**{"model": None, "backend": None, "hop": None}, **self._head, "sources": sources,
                "cluster": {"address": self.settings.address, "inference": self.settings.inference,
                            "actors": [{"index": s.index, "state": s.state, "restarts": s.restarts,
                                        "sources": sorted(s.specs), **s.where()} for s in shards]},
                "outputs": {name: dict(o.status) for name, o in list(self.outputs.items())},
                "events": list(self.events)[-20:]}


def _user_error(ray, exc: BaseException) -> BaseException:
    """The error an actor raised (a user mistake in one line), or ``exc`` itself."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, RtTaggerError):
            return cause
        if cause is not None:
            return RtTaggerError(f"a source actor failed: {type(cause).__name__}: {cause}")
    return exc
