"""Connecting to Ray: the one place that imports it, with this project's defaults (usage
stats and the dashboard off, a local cluster bound to 127.0.0.1)."""
from __future__ import annotations

import os
import signal

from ..errors import ConfigError

EXTRA = "pip install 'rt-tagger[cluster]'"


def require_ray(*, local: bool = False):
    """The ``ray`` module, or one ConfigError line naming the extra. ``local``: for a cluster
    started here (:func:`local_env` first: Ray reads it when it is imported)."""
    if local:
        local_env()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before the first import of ray
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--cluster needs Ray, which is not installed: {EXTRA}") from None
    return ray


def local_env() -> None:
    """Environment for a Ray cluster started on this machine: every process on 127.0.0.1
    (Ray otherwise resolves 127.0.0.1 to the machine's outward address), no usage stats.
    Set before ``import ray``; the Ray processes inherit it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # node IP: the loopback address


def connect(address: str, **init_kw) -> bool:
    """``ray.init`` for ``address`` unless Ray is connected already (tests, a bench, a notebook).
    Returns True if this call connected (the caller then shuts Ray down at the end).
    ``"local"`` starts a cluster on 127.0.0.1 without a dashboard."""
    ray = require_ray(local=address == "local")
    if ray.is_initialized():
        return False
    if address == "local":
        # Ray read the environment when it was first imported; if that was before local_env()
        # (someone imported ray earlier), its node address would still be the outward one.
        from ray._private import ray_constants

        flag = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"]
        ray_constants.ENABLE_RAY_CLUSTER = flag.lower() not in ("0", "false")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    kw = {"log_to_driver": False, "configure_logging": False}
    if address == "local":
        kw.update(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        kw.update(address=address)
        if not address.startswith("ray://"):
            kw["include_dashboard"] = False
    kw.update(init_kw)
    try:
        ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--cluster {address}: cannot connect to Ray: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    finally:
        for sig, h in handlers.items():  # ray.init installs its own SIGTERM handler: keep ours
            if h is not None:
                signal.signal(sig, h)
    return True
