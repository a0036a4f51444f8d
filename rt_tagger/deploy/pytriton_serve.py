"""Serve rt-tagger ONNX models through PyTriton (a real ``tritonserver`` with its Python backend)
running the project's own :class:`~rt_tagger.engines.ort_engine.OrtEngine`.

    python -m rt_tagger.deploy.pytriton_serve NAME=MODEL.onnx [...] --http-port P --grpc-port Q

binds HTTP and gRPC to 127.0.0.1 unless ``--host`` says otherwise (metrics, SageMaker and Vertex
endpoints stay off) and prints one JSON line ``{"ready": ...}`` once every model is loaded; with
``--ready-file PATH`` it also writes that JSON to PATH (atomically). Clients wait on the file, not
on stdout: ``tritonserver`` writes its own log to the same stdout, and its lines and ours can
interleave mid-line (seen: ``model_lifecycle.cc:839{"ready": ...}] "``).

Two facts about PyTriton 0.7 on this kind of machine:

* it pins ``numpy<2`` and returns empty outputs under numpy 2, so the server runs in its own
  virtual environment (``--setup`` makes one under the rt-tagger cache dir with the same
  onnxruntime / onnx versions as this one), and rt-tagger is put on its path through a directory
  holding only a link to this package;
* its Python-backend stub links ``libpython3.X.so`` dynamically and, where the interpreter is
  not the system one (pyenv, conda), picks up the system's copy; the fix from PyTriton's docs is
  ``LD_LIBRARY_PATH`` starting with the interpreter's own ``LIBDIR``, which :func:`main` sets
  before PyTriton starts ``tritonserver``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

__all__ = ["ServerHandle", "main", "server_python", "setup_server_venv", "start_server"]

VENV_KIND = "pytriton-venv"


# ---- the client side: find or make the server's interpreter, start and stop a server ----------
def _venv_dir() -> Path:
    from ..engines.base import cache_dir

    return cache_dir(VENV_KIND)


def server_python() -> tuple[str | None, str]:
    """``(python, why)``: the interpreter that can run PyTriton, or ``None`` and the reason."""
    env = os.environ.get("RT_TAGGER_PYTRITON_PYTHON")
    if env:
        return (env, "RT_TAGGER_PYTRITON_PYTHON") if os.access(env, os.X_OK) else \
            (None, f"RT_TAGGER_PYTRITON_PYTHON={env} is not an executable")
    venv_py = _venv_dir() / "bin" / "python"
    if venv_py.exists():
        return str(venv_py), f"server venv {venv_py.parent.parent}"
    if importlib.util.find_spec("pytriton") is not None:
        import numpy

        if int(numpy.__version__.split(".")[0]) < 2:
            return sys.executable, "this interpreter"
    return None, ("no PyTriton server environment: nvidia-pytriton 0.7 needs numpy<2 (this venv "
                  f"has numpy {_numpy_version()}); make one with `python -m "
                  "rt_tagger.deploy.pytriton_serve --setup`, or point RT_TAGGER_PYTRITON_PYTHON "
                  "at a Python with nvidia-pytriton and onnxruntime")


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


def setup_server_venv() -> Path:
    """Create the PyTriton server venv in the rt-tagger cache (``pytriton-venv``), with this
    environment's onnxruntime and onnx versions, so the server runs the same kernels."""
    from importlib.metadata import version

    target = _venv_dir()
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(target)], check=True)
    pins = [f"onnxruntime=={version('onnxruntime')}", f"onnx=={version('onnx')}"]
    subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q",
                    "nvidia-pytriton", *pins], check=True)
    return target


class ServerHandle:
    """A running PyTriton server process: ``http_url``, ``grpc_url``, ``models``, ``log``."""

    def __init__(self, proc: subprocess.Popen, http_port: int, grpc_port: int, host: str,
                 models: dict, logfile: Path) -> None:
        self.proc, self.host, self.models, self.logfile = proc, host, models, logfile
        self.http_port, self.grpc_port = http_port, grpc_port
        self.http_url = f"{host}:{http_port}"
        self.grpc_url = f"{host}:{grpc_port}"

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self) -> None:
        """SIGTERM to the server's whole process group (PyTriton's tritonserver child too),
        then SIGKILL if it has not ended within 30 s."""
        if self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc, signal.SIGKILL)
                self.proc.wait()
        else:
            _signal_group(self.proc, signal.SIGKILL)  # children left behind by a dead server


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_server(models: dict[str, str | os.PathLike[str]], *, host: str = "127.0.0.1",
                 max_batch: int = 16, max_queue_size: int = 0, threads: int | None = None,
                 http_port: int | None = None, grpc_port: int | None = None,
                 timeout: float = 180.0, python: str | None = None) -> Iterator[ServerHandle]:
    """Run the server for ``{name: onnx path}`` on ``host`` (free ports unless given); stopped
    on exit. ``max_queue_size``: bound of Triton's request queue (0: unbounded).

    Raises ``RuntimeError`` with the server's log tail if it is not ready within ``timeout`` s.
    """
    import rt_tagger

    python = python or server_python()[0]
    if python is None:
        raise RuntimeError(server_python()[1])
    http_port, grpc_port = http_port or free_port(host), grpc_port or free_port(host)
    with tempfile.TemporaryDirectory(prefix="rt-tagger-pytriton-") as tmp:
        link = Path(tmp) / "path" / "rt_tagger"
        link.parent.mkdir()
        link.symlink_to(Path(rt_tagger.__file__).parent, target_is_directory=True)
        logfile = Path(tmp) / "server.log"
        ready_file = Path(tmp) / "ready.json"
        cmd = [python, "-m", "rt_tagger.deploy.pytriton_serve",
               *(f"{n}={os.fspath(p)}" for n, p in models.items()), "--host", host,
               "--http-port", str(http_port), "--grpc-port", str(grpc_port),
               "--max-batch", str(max_batch), "--max-queue-size", str(max_queue_size),
               "--ready-file", str(ready_file)] + (["--threads", str(threads)] if threads else [])
        env = {**os.environ, "PYTHONPATH": str(link.parent)}
        # A server that has not come up within half the time is stopped (its whole process
        # group) and started once more: a tritonserver start can stall on a busy machine.
        for attempt in (1, 2):
            with open(logfile, "wb") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        cwd=tmp, start_new_session=True)
            handle = ServerHandle(proc, http_port, grpc_port, host, dict(models), logfile)
            if _wait_ready(proc, ready_file, timeout / 2) is not None:
                break
            tail = handle.log()[-3000:]
            handle.stop()
            if attempt == 2:
                raise RuntimeError(f"PyTriton server not ready after two tries of {timeout / 2:.0f} s "
                                   f"(exit status {proc.poll()}); log tail:\n{tail}")
        try:
            yield handle
        finally:
            handle.stop()


def _wait_ready(proc: subprocess.Popen, ready_file: Path, timeout: float) -> dict | None:
    """The server's ready message, once ``ready_file`` holds it; ``None`` if the server ended
    or ``timeout`` s passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            msg = json.loads(ready_file.read_text())
            if isinstance(msg, dict) and "ready" in msg:
                return msg
        if proc.poll() is not None:
            return None
        time.sleep(0.1)
    return None


# ---- the server side (runs inside the PyTriton interpreter) ----------------------------------
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rt_tagger.deploy.pytriton_serve",
                                description="Serve rt-tagger ONNX models with PyTriton.")
    p.add_argument("models", nargs="*", metavar="NAME=MODEL.onnx")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--max-queue-size", type=int, default=0, help="0: unbounded")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--ready-file", type=Path, default=None,
                   help="also write the ready JSON here (atomically) once every model is loaded")
    p.add_argument("--setup", action="store_true", help="create the server venv and exit")
    return p.parse_args(argv)


def _binding(name: str, path: str, args: argparse.Namespace) -> dict:
    import numpy as np

    from .triton_repo import graph_io
    from ..engines.ort_engine import OrtEngine

    engine = OrtEngine(path, device="cpu", threads=args.threads, max_batch=args.max_batch)
    _, outputs = graph_io(path)
    names = [o["name"] for o in outputs if o["name"] in ("logits", "attention")]

    def infer(features: "np.ndarray") -> dict:
        out = engine.run(np.ascontiguousarray(features, np.float32),
                         attention="attention" in names)
        res = {"logits": out.logits}
        if out.attention is not None:
            res["attention"] = out.attention
        return res

    dims = {o["name"]: tuple(o["dims"]) for o in outputs}
    return {"name": name, "infer": infer, "input": engine.input_shape, "outputs": dims,
            "names": names}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.setup:
        print(f"server venv: {setup_server_venv()}")
        return 0
    libdir = sysconfig.get_config_var("LIBDIR")  # the stub must load *this* libpython
    if libdir:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            [libdir, *filter(None, [os.environ.get("LD_LIBRARY_PATH")])])
    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor
    from pytriton.triton import Triton, TritonConfig

    specs = []
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"model {item!r}: give NAME=MODEL.onnx")
        specs.append(_binding(name, path, args))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cfg = TritonConfig(http_address=args.host, http_port=args.http_port,
                       grpc_address=args.host, grpc_port=args.grpc_port, allow_metrics=False,
                       exit_timeout_secs=5, log_verbose=0)
    t0 = time.perf_counter()
    with Triton(config=cfg) as triton:
        for s in specs:
            triton.bind(model_name=s["name"], infer_func=batch(s["infer"]),
                        inputs=[Tensor(name="features", dtype=np.float32, shape=s["input"])],
                        outputs=[Tensor(name=n, dtype=np.float32, shape=s["outputs"][n])
                                 for n in s["names"]],
                        config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(
                            max_queue_delay_microseconds=args.queue_delay_us,
                            default_queue_policy=QueuePolicy(max_queue_size=args.max_queue_size)
                            if args.max_queue_size else None)),
                        strict=True)
        triton.run()
        ready = json.dumps({"ready": [s["name"] for s in specs], "http": args.http_port,
                            "grpc": args.grpc_port, "seconds": round(time.perf_counter() - t0, 2)})
        if args.ready_file is not None:
            part = args.ready_file.with_name(args.ready_file.name + ".part")
            part.write_text(ready)
            os.replace(part, args.ready_file)
        print(ready, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
