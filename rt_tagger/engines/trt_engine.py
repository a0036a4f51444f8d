"""TensorRT engine through torch-tensorrt (optional extra ``rt-tagger[tensorrt]``, NVIDIA GPUs).

The model is compiled ahead of time with ``torch_tensorrt.compile(ir="dynamo")`` for a few static
batch sizes (by default 1, for live streaming, and ``max_batch``, for files); a smaller batch is
zero-padded up to the nearest compiled size. fp16 compiles a half-precision copy of the model
(explicit typing, which every torch-tensorrt 2.x honours), fp32 the model as it is.

Compiled programs are serialised with ``torch_tensorrt.save`` into ``<cache>/tensorrt`` under a
name keyed by the weights' SHA-256, the GPU name, the TensorRT and torch-tensorrt versions, the
precision and the batch size, and loaded with ``torch_tensorrt.load`` on the next start: a new
driver stack or GPU gets its own file instead of a stale engine.

Nothing here imports torch_tensorrt until an engine is built, so this module is import-safe on
machines without it.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError, ConfigError
from .base import Engine, cache_dir, slug
from .torch_engine import torch_device

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from ..checkpoint import Checkpoint

log = logging.getLogger(__name__)

#: Programs compiled (not loaded from the cache) by this process; tests check cache reuse with it.
compile_count = 0


def trt_unavailable(*, requested: bool = False) -> str | None:
    """None if the tensorrt backend can run here, else a short reason.

    ``requested``: the user asked for this backend by name, so a missing ``[tensorrt]`` extra
    is named (with the missing GPU, if that is missing too); for ``--backend auto`` on a
    machine without a GPU the reason is the GPU alone, and the extra is not advertised.
    """
    from .base import cuda_visible

    if requested and not _module_present("torch_tensorrt"):
        gpu = "" if cuda_visible() else "; it also needs a CUDA GPU, and none is visible"
        return f"torch-tensorrt is not installed (pip install 'rt-tagger[tensorrt]'){gpu}"
    if not cuda_visible():
        return "no CUDA device; tensorrt needs a GPU"
    try:
        importlib.import_module("torch_tensorrt")
    except Exception as exc:  # ImportError, or a broken CUDA/TensorRT install raising OSError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"torch-tensorrt is not importable (pip install 'rt-tagger[tensorrt]'): {first}"
    return None


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as absent
        return False


def _versions() -> tuple[str, str]:
    """(TensorRT version, torch-tensorrt version)."""
    import torch_tensorrt

    try:
        import tensorrt

        trt = str(tensorrt.__version__)
    except ImportError:
        trt = "unknown"
    return trt, str(torch_tensorrt.__version__)


class TensorRTEngine(Engine):
    """Runs TensorRT programs compiled from the PyTorch model, one per static batch size.

    ``batch_sizes``: the sizes to compile (default ``(1, max_batch)``); all must be at most
    ``max_batch``, which is always included.
    """

    name = "tensorrt"

    def __init__(self, model: "nn.Module", checkpoint: "Checkpoint", *, device: str | None = None,
                 precision: str = "fp32", max_batch: int = 16,
                 batch_sizes: tuple[int, ...] | None = None, attention: bool = True,
                 cache: str | os.PathLike[str] | None = None) -> None:
        import torch

        from ..export import export_graph
        from ..factory import supports_attention

        why = trt_unavailable(requested=True)
        if why:
            raise BackendError(why)
        dev = torch_device(device or "cuda")
        if dev.type != "cuda":
            raise BackendError(f"the tensorrt backend runs on CUDA devices only, got {device!r}")
        super().__init__(checkpoint, device=str(dev), max_batch=max_batch, precision=precision,
                         supports_attention=attention and supports_attention(model))
        sizes = sorted({1, max_batch, *(batch_sizes or ())})
        if any(not isinstance(b, int) or not 1 <= b <= max_batch for b in sizes):
            raise ConfigError(f"batch_sizes must be integers in [1, max_batch={max_batch}], "
                              f"got {batch_sizes!r}")
        self.batch_sizes = tuple(sizes)
        self._dev = dev
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self.gpu_name = torch.cuda.get_device_name(dev)
        self.trt_version, self.torch_trt_version = _versions()
        graph = export_graph(model, self.supports_attention).to(dev, self._dtype)
        self._cache = cache_dir("tensorrt", cache)
        self.compiled_now: list[int] = []
        self._programs = {b: self._load_or_compile(graph, b) for b in sizes}

    def cache_path(self, batch: int) -> Path:
        """The cache file of the program compiled for ``batch``."""
        ck = self.checkpoint
        parts = [slug(ck.arch), ck.sha256[:20], slug(self.gpu_name), f"trt{slug(self.trt_version)}",
                 f"tt{slug(self.torch_trt_version)}", self.precision, f"b{batch}",
                 "attn" if self.supports_attention else "noattn"]
        return self._cache / ("-".join(parts) + ".ep")

    def _load_or_compile(self, graph: Any, batch: int) -> Any:
        global compile_count
        import torch
        import torch_tensorrt

        path = self.cache_path(batch)
        if path.is_file():
            try:
                return torch_tensorrt.load(str(path)).module()
            except Exception as exc:  # stale or truncated file: rebuild it below
                log.warning("ignoring unusable TensorRT cache file %s: %s", path, exc)
        example = torch.zeros((batch, *self.input_shape), dtype=self._dtype, device=self._dev)
        try:
            with torch.no_grad():
                program = torch_tensorrt.compile(graph, ir="dynamo", inputs=[example],
                                                 min_block_size=1)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"TensorRT compilation of {self.checkpoint.arch!r} "
                               f"({self.precision}, batch {batch}) failed: {first}") from exc
        compile_count += 1
        self.compiled_now.append(batch)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch_tensorrt.save(program, str(tmp), output_format="exported_program",
                                inputs=[example])
            os.replace(tmp, path)
        except Exception as exc:  # a cache we cannot write only costs the next start time
            tmp.unlink(missing_ok=True)
            log.warning("could not cache the TensorRT program in %s: %s", path, exc)
        return program

    def _run(self, x: np.ndarray, attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        n = x.shape[0]
        size = next(b for b in self.batch_sizes if b >= n)  # n <= max_batch == batch_sizes[-1]
        if size > n:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), dtype=x.dtype)])
        with torch.no_grad():  # what torch-tensorrt documents for running compiled programs
            t = torch.from_numpy(x).to(self._dev, self._dtype)
            out = self._programs[size](t)
            if self.supports_attention:
                logits, attn = out[0], out[1]
            else:
                logits, attn = (out[0] if isinstance(out, (tuple, list)) else out), None
            logits_np = logits[:n].float().cpu().numpy()
            attn_np = attn[:n].float().cpu().numpy() if attention and attn is not None else None
        return logits_np, attn_np

    def close(self) -> None:
        self._programs = {}
        super().close()
