"""Triton Inference Server engine: ``--backend triton://HOST:PORT[/MODEL]`` (optional extra
``rt-tagger[triton]``, which installs ``tritonclient``).

Log-mel stays local (the native kernel); chunks go to the server as FP32 ``features`` and come
back as ``logits`` (and ``attention`` when the served model has it and it is asked for).

* ``triton://`` and ``triton+http://`` speak Triton's HTTP/REST protocol (default port 8000),
  ``triton+grpc://`` its gRPC protocol (default port 8001). HTTP is the default because it needs
  no extra runtime; gRPC has less per-request overhead. ``MODEL`` defaults to the name
  ``rt-tagger export --triton`` gives the model (``spec_att.w256`` -> ``spec_att_w256``).
* On connect the server's model config is checked against the local checkpoint: the
  ``features`` input dims, one ``logits`` per tag and, when the config carries the rt-tagger
  description (``parameters["rt_tagger"]``, written by the exporter), its tags, features and
  weights' checksum. A mismatch is one :class:`~rt_tagger.errors.BackendError` line.
* One request in flight per calling thread (each thread gets its own client), so nothing queues
  here; the pipeline's bounded chunk queue drops old chunks of a live source and reports
  ``overload`` when the server is slower than the audio. A server whose own queue is full
  (``default_queue_policy.max_queue_size``) rejects the request: counted in ``overloads`` and
  retried with backoff like a lost connection (the client is rebuilt: ``reconnects``); after
  ``retries`` attempts the call raises a BackendError that says which of the two it was. After
  a lost connection the model is checked again before the next request (a restarted server may
  serve another model, or another ``max_batch_size``: requests are split to fit it).
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import BackendError
from .base import Engine

if TYPE_CHECKING:  # pragma: no cover
    from ..checkpoint import Checkpoint

__all__ = ["SCHEMES", "TritonEngine", "create_triton_engine", "is_triton_url", "parse_url",
           "triton_unavailable"]

SCHEMES = {"triton": "http", "triton+http": "http", "triton+grpc": "grpc"}
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
_OVERLOAD = ("maximum queue size", "exceeds the max queue", "resource exhausted")


def is_triton_url(backend: Any) -> bool:
    return isinstance(backend, str) and backend.split("://", 1)[0] in SCHEMES and "://" in backend


def parse_url(url: str) -> tuple[str, str, int, str | None]:
    """``(protocol, host, port, model or None)`` of ``triton[+grpc|+http]://HOST[:PORT][/MODEL]``."""
    parts = urlsplit(url)
    protocol = SCHEMES.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = -1
    model = parts.path.strip("/") or None
    if protocol is None or not parts.hostname or port == -1 or (model and "/" in model) \
            or parts.query or parts.fragment:
        raise BackendError(f"bad Triton backend {url!r}; use triton://HOST:PORT[/MODEL] (HTTP) "
                           "or triton+grpc://HOST:PORT[/MODEL]")
    return protocol, parts.hostname, port or DEFAULT_PORTS[protocol], model


def triton_unavailable(protocol: str = "http") -> str | None:
    """None if tritonclient's ``protocol`` client imports, else why not (naming the extra)."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc  # noqa: F401
        else:
            import tritonclient.http  # noqa: F401
    except ImportError as exc:
        return f"tritonclient is not installed ({exc}); pip install 'rt-tagger[triton]'"
    return None


class TritonEngine(Engine):
    """Runs the checkpoint's model on a Triton server (see the module docstring).

    ``timeout``: seconds per request; ``retries``: further attempts after a lost connection or
    a full server queue, spaced ``backoff``, 2x``backoff``, ... (at most 2 s) apart.
    """

    name = "triton"

    def __init__(self, checkpoint: "Checkpoint", url: str, *, model: str | None = None,
                 max_batch: int = 16, attention: bool = True, timeout: float = 30.0,
                 retries: int = 5, backoff: float = 0.1) -> None:
        self.protocol, self.host, self.port, named = parse_url(url)
        why = triton_unavailable(self.protocol)
        if why:
            raise BackendError(f"backend {url} is not available: {why}")
        self.model_name = named or model or "model"
        self.url = f"{self.host}:{self.port}"
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.reconnects = 0
        self.overloads = 0
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._stale = False  # a connection was lost: check the model again before using it
        self.checkpoint = checkpoint  # the checks below read it before Engine.__init__ runs
        config = self._call(self._fetch_config)
        outputs = {t["name"] for t in config.get("output") or []}
        super().__init__(checkpoint, device=f"{self.protocol}://{self.url}/{self.model_name}",
                         max_batch=max_batch,
                         supports_attention=attention and "attention" in outputs)

    # ---- connection --------------------------------------------------------------------------
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc as tc

                client = tc.InferenceServerClient(self.url)
            else:
                import tritonclient.http as tc

                client = tc.InferenceServerClient(self.url, connection_timeout=self.timeout,
                                                  network_timeout=self.timeout)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            try:
                client.close()
            except Exception:  # a client whose connection is already gone
                pass

    def _fetch_config(self) -> dict:
        from .triton_contract import config_mismatches

        client = self._client()
        where = f"Triton server {self.protocol}://{self.url}"
        if not client.is_model_ready(self.model_name):
            names = sorted({m.get("name", "?") if isinstance(m, dict) else m.name
                            for m in _index(client, self.protocol)})
            raise BackendError(f"{where} has no ready model {self.model_name!r} (models: "
                               f"{', '.join(names) or 'none'})")
        if self.protocol == "grpc":
            config = client.get_model_config(self.model_name, as_json=True)["config"]
        else:
            config = client.get_model_config(self.model_name)
        problems = config_mismatches(config, self.checkpoint)
        if problems:
            raise BackendError(f"{where} model {self.model_name!r} does not match checkpoint "
                               f"{self.checkpoint.arch!r}: {'; '.join(problems)}")
        self.server_config = config
        self.server_batch = int(config["max_batch_size"])  # requests are split to fit it
        self._stale = False
        return config

    def _call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, retried with backoff on a lost connection or a full server queue."""
        from tritonclient.utils import InferenceServerException

        t0 = time.perf_counter()
        for attempt in range(self.retries + 1):
            try:
                if self._stale:  # reconnected: the server may serve another model now
                    self._fetch_config()
                return fn(*args)
            except BackendError:
                raise
            except InferenceServerException as exc:
                text = str(exc.message() or exc)
                status = str(exc.status() or "")
                overload = any(s in text.lower() for s in _OVERLOAD)
                lost = "UNAVAILABLE" in status or "DEADLINE" in status or "connect" in text.lower()
                if not (overload or lost):
                    raise BackendError(f"Triton server {self.url} refused the request: "
                                       f"{_first(text)}") from None
                kind = "overloaded (its queue is full)" if overload else "unreachable"
                reason = text
            except (OSError, TimeoutError, ConnectionError) as exc:  # refused, reset, timed out
                overload, kind, reason = False, "unreachable", f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # gevent / grpc transport errors have their own types
                if type(exc).__module__.split(".")[0] not in ("gevent", "geventhttpclient", "grpc"):
                    raise
                overload, kind, reason = False, "unreachable", f"{type(exc).__name__}: {exc}"
            if overload:
                self.overloads += 1
            else:
                self._stale = True
            self._drop_client()
            if attempt == self.retries:
                raise BackendError(f"Triton server {self.protocol}://{self.url} {kind} after "
                                   f"{attempt + 1} attempts over {time.perf_counter() - t0:.1f} s: "
                                   f"{_first(reason)}") from None
            time.sleep(min(2.0, self.backoff * 2 ** attempt))
            self.reconnects += 1
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- running -----------------------------------------------------------------------------
    def _infer(self, x: np.ndarray, attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        client = self._client()
        names = ["logits", "attention"] if attention else ["logits"]
        if self.protocol == "grpc":
            import tritonclient.grpc as tc

            inp = tc.InferInput("features", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            res = client.infer(self.model_name, [inp], client_timeout=self.timeout,
                               outputs=[tc.InferRequestedOutput(n) for n in names])
        else:
            import tritonclient.http as tc

            inp = tc.InferInput("features", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=True)
            res = client.infer(self.model_name, [inp],
                               outputs=[tc.InferRequestedOutput(n, binary_data=True) for n in names])
        logits = res.as_numpy("logits")
        if logits is None or logits.shape != (x.shape[0], self.n_tags):
            raise BackendError(f"Triton model {self.model_name!r} returned logits of shape "
                               f"{None if logits is None else logits.shape}, expected "
                               f"{(x.shape[0], self.n_tags)}")
        return logits, (res.as_numpy("attention") if attention else None)

    def _run(self, x: np.ndarray, attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self._stale:
            self._call(self._fetch_config)
        step = max(1, self.server_batch)
        parts = [self._call(self._infer, x[i:i + step], attention) for i in range(0, len(x), step)]
        if len(parts) == 1:
            return parts[0]
        return (np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]) if attention else None)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.close()
            except Exception:  # already disconnected
                pass
        self._local = threading.local()
        super().close()


def _index(client: Any, protocol: str) -> list:
    try:
        index = client.get_model_repository_index()
    except Exception:  # the index is only for the message
        return []
    return list(index.models) if protocol == "grpc" else list(index)


def _first(text: str) -> str:
    return (str(text).strip().splitlines() or ["(no message)"])[0]


def create_triton_engine(source: Any, url: str, *, max_batch: int = 16,
                         attention: bool = True) -> TritonEngine:
    """The engine for ``--backend URL``: ``source``'s checkpoint (model name, ``.safetensors``
    or rt-tagger ``.onnx``) checked against the server's model."""
    import os

    from .triton_contract import default_model_name
    from ..export import read_onnx_metadata
    from ..factory import resolve_model

    protocol = parse_url(url)[0]
    why = triton_unavailable(protocol)
    if why:  # before loading the model
        raise BackendError(f"backend {url} is not available: {why}")
    if isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".onnx"):
        ckpt = read_onnx_metadata(source)[0]
    else:
        ckpt = resolve_model(source)[1]
    engine = TritonEngine(ckpt, url, model=default_model_name(source), max_batch=max_batch,
                          attention=attention)
    engine.selection_reason = (f"triton ({engine.protocol} {engine.url}, model "
                               f"{engine.model_name!r}): requested")
    return engine
