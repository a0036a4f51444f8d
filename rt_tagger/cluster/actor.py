"""One shard of the sources in a Ray actor: a :class:`~rt_tagger.monitor.Monitor` (capture and
decoding, FeatureStream, aggregator, alarms, restarts of failing live sources) on the actor's
own engine, or on the shared Ray Serve deployment (``inference = "serve"``).

:class:`SourceActor` is a plain class; :func:`remote_class` makes the Ray actor class of it
with the restart policy. Ray re-runs ``__init__`` with the same arguments after the actor
(or its node) died; the driver then calls :meth:`SourceActor.start` again with each source's
last time, so the restarted sources continue their timelines.
"""
from __future__ import annotations

import os
import socket
import time

from ..monitor.runner import Monitor
from .wire import to_wire

__all__ = ["SourceActor", "remote_class"]


class _ShardMonitor(Monitor):
    """A monitor whose sources start at given times (a shard resumed after its actor died)."""

    offsets: dict[str, float] = {}

    def _open(self, slot, t_offset: float = 0.0) -> None:
        super()._open(slot, t_offset or self.offsets.get(slot.spec.name, 0.0))


class SourceActor:
    """``config``: the :class:`~rt_tagger.config.StreamConfig`; ``specs``: this shard's
    :class:`~rt_tagger.monitor.SourceSpec` list; ``serve_app``: the Ray Serve application
    to infer with (``None``: the actor's own engine)."""

    def __init__(self, config, specs, *, monitoring: bool = True, restart_delay: float | None = 30.0,
                 serve_app: str | None = None, max_queue: int = 8) -> None:
        self.config, self.specs = config, list(specs)
        self.monitoring, self.restart_delay = monitoring, restart_delay
        self.serve_app, self.max_queue = serve_app, max_queue
        self.mon: _ShardMonitor | None = None
        self.born = time.time()

    # ---- where this actor runs ----------------------------------------------------------------
    def place(self) -> dict:
        """Where this actor runs, and whether its sources run (``started``: False right after
        Ray restarted it)."""
        import ray

        ctx = ray.get_runtime_context()
        return {"actor": ctx.get_actor_id(), "node": ctx.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
                "pid": os.getpid(), "started": self.mon is not None, "born": self.born}

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self, offsets: dict[str, float] | None = None, specs=None) -> dict:
        """Loads the model (or connects to the Serve deployment) and starts the shard's sources,
        each at ``offsets[name]`` seconds of its timeline. ``specs``: the shard's current
        sources (after add/remove), default those it was created with."""
        if self.mon is not None:
            return self.place()
        from ..tagger import Tagger

        if specs is not None:
            self.specs = list(specs)
        engine = None
        if self.serve_app is not None:  # the deployment's engine: no model loaded here
            from .serve_engine import ServeEngine

            engine = ServeEngine.connect(self.serve_app)
        tagger = Tagger(None, self.config, engine=engine)
        mon = _ShardMonitor(tagger, self.specs, max_queue=self.max_queue, restart_delay=self.restart_delay,
                            monitoring=self.monitoring)
        mon.offsets = dict(offsets or {})
        mon.start()
        self.mon = mon
        return self.place()

    def add(self, spec, t_offset: float = 0.0) -> None:
        self.mon.add(spec, t_offset)

    def remove(self, name: str) -> None:
        self.mon.remove(name)

    def end_input(self) -> None:
        if self.mon is not None:
            self.mon.end_input()

    def stop(self) -> None:
        if self.mon is not None:
            self.mon.stop()
            self.mon.tagger.close()

    # ---- messages and status ------------------------------------------------------------------
    def pull(self, timeout: float = 0.2, max_items: int = 1024) -> tuple[list[dict], bool]:
        """The messages ready now (waiting up to ``timeout`` for the first), as wire dicts,
        and whether the shard has ended (every source sent its last message)."""
        out: list[dict] = []
        try:
            msg = self.mon.poll(timeout)
            while msg is not None:
                out.append(to_wire(msg))
                if len(out) >= max_items:
                    break
                msg = self.mon.poll(0)
        except StopIteration:
            return out, True
        return out, False

    def status(self) -> dict:
        """The shard's monitor status (JSON-ready) and where it runs."""
        st = self.mon.status() if self.mon is not None else {"sources": {}}
        st.pop("events", None)  # the driver keeps the recent events (these are not picklable)
        st["place"] = self.place()
        st["batches"] = dict(self.mon.batches) if self.mon is not None else {}
        return st


def remote_class(ray, settings):
    """The Ray actor class of :class:`SourceActor` with ``settings``' restart policy and
    resources. ``max_concurrency``: ``status`` is answered while ``pull`` waits."""
    return ray.remote(SourceActor).options(
        max_restarts=settings.max_restarts, max_task_retries=0, max_concurrency=4,
        num_cpus=settings.actor_cpus)
