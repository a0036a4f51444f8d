"""Beyond one machine: sources sharded over Ray actors (``--cluster local`` or
``--cluster ray://HEAD:PORT``), inference in each actor or in one Ray Serve deployment.

Ray is the optional extra ``rt-tagger[cluster]``; nothing outside this package imports it, and
this package imports it only when a cluster run starts (:func:`~.connect.require_ray`).

* :class:`~.driver.ClusterMonitor`: the driver side, with the monitor's surface (``start``,
  ``poll``, ``messages``, ``end_input``, ``stop``, ``status``, ``add``, ``remove``), so the
  usual sinks are fed unchanged;
* :class:`~.actor.SourceActor`: one shard of the sources (a :class:`~rt_tagger.monitor.Monitor`
  in a Ray actor);
* :mod:`.serve_engine`: the shared Ray Serve deployment (``@serve.batch``) and the engine
  client the actors use with ``cluster_inference = "serve"``.
"""
from __future__ import annotations

from ..config import ClusterSettings  # the settings are checked with the rest of a run's config

_EXPORTS = {"ClusterMonitor": "driver", "require_ray": "connect", "SourceActor": "actor"}
__all__ = sorted([*_EXPORTS, "ClusterSettings"])


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
