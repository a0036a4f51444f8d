"""Inference shared by every source actor: a Ray Serve deployment that wraps one engine
(:func:`~rt_tagger.engines.create_engine`, e.g. onnxruntime on a GPU node) and merges the
batches of many actors with ``@serve.batch``, so the model sees large batches from many
stations; and :class:`ServeEngine`, the engine an actor's session runs on instead of its own.

The chunks, their order and their results are the same as with an engine in each actor, so
the message stream is the same (``status`` names the deployment's backend); only frame reuse,
a per-stream cache of the model's frame stage, is not used across the wire.
"""
from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from ..engines.base import Engine

__all__ = ["APP", "ServeEngine", "TaggerModel", "deploy"]

APP = "rt-tagger"  # the Serve application's name


class TaggerModel:
    """The deployment: one engine, requests (one actor's batch each) merged by ``@serve.batch``."""

    def __init__(self, config, max_batch: int, wait_s: float) -> None:
        from ..engines import create_engine
        from ..tagger import DEFAULT_MODEL

        self.engine = create_engine(config.model or DEFAULT_MODEL, config.backend, threads=config.threads,
                                    precision=config.precision,
                                    max_batch=config.max_batch)
        self.infer.set_max_batch_size(max_batch)
        self.infer.set_batch_wait_timeout_s(wait_s)
        self.sizes: dict[int, int] = {}  # chunks per engine call -> calls

    def describe(self) -> dict:
        """The engine as an actor's session needs it, its checkpoint description included (so an
        actor need not load the model itself)."""
        e = self.engine
        return {"name": e.name, "selection_reason": e.selection_reason, "device": e.device,
                "max_batch": e.max_batch, "precision": e.precision, "supports_attention": e.supports_attention,
                "checkpoint": e.checkpoint.without_weights()}

    def batch_sizes(self) -> dict[int, int]:
        """Chunks per engine call -> number of calls (how well the batching works)."""
        return dict(self.sizes)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def infer(self, xs: list[np.ndarray]) -> list[tuple]:
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        self.sizes[len(x)] = self.sizes.get(len(x), 0) + 1
        out = await asyncio.to_thread(self.engine.run, x)  # the loop gathers the next batch meanwhile
        ends = np.cumsum([len(b) for b in xs])
        starts = ends - np.array([len(b) for b in xs])
        return [(out.logits[a:b], None if out.attention is None else out.attention[a:b])
                for a, b in zip(starts, ends)]


def deploy(config, settings, app: str = APP) -> str:
    """Starts Serve (no HTTP proxy: actors call the deployment through handles) and the
    deployment; returns the application name the actors connect to."""
    import logging

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # no INFO lines among the run's output
    serve.start(proxy_location="Disabled", http_options={"host": "127.0.0.1"})
    options = {"num_cpus": settings.serve_cpus}
    if settings.serve_gpus:
        options["num_gpus"] = settings.serve_gpus
    dep = serve.deployment(TaggerModel, name="TaggerModel").options(
        num_replicas=settings.serve_replicas, ray_actor_options=options,
        max_ongoing_requests=max(256, 2 * settings.serve_max_batch))
    serve.run(dep.bind(config, settings.serve_max_batch, settings.serve_wait_s), name=app,
              route_prefix=None)
    return app


def undeploy(app: str = APP, *, shutdown: bool = True) -> None:
    """Deletes the application (and stops Serve, unless Ray itself is about to stop)."""
    serve.delete(app)
    if shutdown:
        serve.shutdown()


class ServeEngine(Engine):
    """An engine whose ``run`` goes to the Serve deployment (called from a session's
    inference thread in a source actor). Name, device and attention are the deployment's."""

    def __init__(self, handle, checkpoint, info: dict) -> None:
        self.name = info["name"]
        super().__init__(checkpoint, device=info["device"], max_batch=int(info["max_batch"]),
                         supports_attention=bool(info["supports_attention"]), precision=info["precision"])
        self.selection_reason = info["selection_reason"]
        self._handle = handle

    @classmethod
    def connect(cls, app: str) -> "ServeEngine":
        handle = serve.get_app_handle(app)
        info = handle.describe.remote().result()
        return cls(handle, info["checkpoint"], info)

    def _run(self, x: np.ndarray, attention: bool):
        logits, attn = self._handle.infer.remote(x).result()
        return logits, attn if attention else None
