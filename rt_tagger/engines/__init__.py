"""Inference engines: one interface (:class:`Engine`) over torch, onnxruntime and TensorRT.

``create_engine("musicnn.mtat")`` picks the fastest backend this machine can run and says why
in ``engine.selection_reason``; ``backend=`` forces one. Backends import their heavy libraries
only when used.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from ..errors import BackendError
from .base import PRECISIONS, Engine, EngineOutput, cache_dir, int8_only_on_cpu, sigmoid

__all__ = ["BACKENDS", "PRECISIONS", "Engine", "EngineOutput", "available_backends", "cache_dir",
           "create_engine", "sigmoid"]

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


def _is_onnx(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".onnx")


def _ort_gpu() -> bool:
    import onnxruntime as ort

    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"}
                & set(ort.get_available_providers()))


def available_backends() -> dict[str, str | None]:
    """``{backend: None if usable here else the reason it is not}`` (no model is loaded)."""
    from .ort_engine import ort_available
    from .trt_engine import trt_unavailable

    return {"tensorrt": trt_unavailable(), "onnxruntime": ort_available(), "torch": None}


def _choose(device: str | None, onnx_file: bool) -> tuple[str, str]:
    """(backend, why) for ``backend="auto"``."""
    from .base import cuda_visible
    from .ort_engine import ort_available
    from .trt_engine import trt_unavailable

    cpu_only = device is not None and str(device) == "cpu"
    if cpu_only:
        no_trt = "device cpu requested"
    elif onnx_file:
        no_trt = "an .onnx file runs on onnxruntime"
    else:
        no_trt = trt_unavailable() or ""
    if not no_trt:
        return "tensorrt", "CUDA GPU and torch-tensorrt available"
    no_ort = ort_available()
    if no_ort is None:
        if cpu_only or onnx_file or not cuda_visible() or _ort_gpu():
            return "onnxruntime", no_trt
        # A GPU, but only a CPU onnxruntime: PyTorch on the GPU beats onnxruntime on the CPU.
        return "torch", f"{no_trt}; onnxruntime has no GPU provider (install onnxruntime-gpu)"
    if onnx_file:
        raise BackendError(f"cannot run an .onnx file: {no_ort}")
    return "torch", f"{no_ort}; {no_trt}"


def create_engine(
    source: Any,
    backend: str = "auto",
    *,
    threads: int | None = None,
    device: str | None = None,
    precision: str = "fp32",
    max_batch: int = 16,
    attention: bool = True,
    cache: str | os.PathLike[str] | None = None,
    batch_sizes: tuple[int, ...] | None = None,
) -> Engine:
    """Build an engine for ``source`` on ``backend``.

    ``source``: a model name (``"musicnn.mtat"``, or an architecture with pretrained weights), a
    ``.safetensors`` checkpoint path, a :class:`~rt_tagger.checkpoint.Checkpoint` or a model
    built from one, or (onnxruntime only) an ``.onnx`` file exported by rt-tagger.

    ``backend``: ``"auto"`` (tensorrt if a CUDA GPU and torch-tensorrt are present, else
    onnxruntime, else torch), or one of ``"tensorrt"``, ``"onnxruntime"``, ``"torch"``.
    ``threads``: intra-op CPU threads (torch: process-wide). ``device``: ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or None (best available). ``precision``: ``"fp32"``, ``"fp16"`` (GPU only) or
    ``"int8"`` (onnxruntime on a CPU, with the model's quantized graph:
    :mod:`rt_tagger.engines.quantize`).
    ``max_batch``: largest batch run at once (bigger ones are split). ``attention``: produce
    attention maps when the model has them. ``cache``: cache root for exported/compiled models.
    ``batch_sizes``: static batch sizes compiled by the tensorrt backend.
    ``backend`` may also be a Triton server, ``triton[+grpc]://HOST:PORT[/MODEL]``
    (:mod:`rt_tagger.engines.triton_engine`; ``threads``/``device``/``cache`` do not apply).
    """
    from .triton_engine import create_triton_engine, is_triton_url

    if precision == "int8" and (is_triton_url(backend) or backend in ("tensorrt", "torch")
                                or (device is not None and str(device) != "cpu")):
        raise BackendError(int8_only_on_cpu("triton" if is_triton_url(backend) else backend,
                                            None if device is None else str(device)))
    if is_triton_url(backend):
        return create_triton_engine(source, backend, max_batch=max_batch, attention=attention)
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}, "
                           "triton[+grpc]://HOST:PORT[/MODEL]")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    onnx_file = _is_onnx(source)
    if backend == "auto" and precision == "int8":
        backend, why = "onnxruntime", "precision int8 runs on onnxruntime's CPU provider"
    elif backend == "auto":
        backend, why = _choose(device, onnx_file)
    else:
        why = "requested"
    if onnx_file and backend != "onnxruntime":
        raise BackendError(f"backend {backend} needs a PyTorch checkpoint or model name, got the "
                           f"ONNX file {os.fspath(source)} (use backend onnxruntime)")
    engine = _build(source, backend, threads=threads, device=device, precision=precision,
                    max_batch=max_batch, attention=attention, cache=cache, batch_sizes=batch_sizes)
    where = "CPU" if engine.device == "cpu" else f"CUDA {engine.device}"
    engine.selection_reason = f"{engine.name} ({where}, {engine.precision}): {why}"
    return engine


def _build(source: Any, backend: str, *, threads: int | None, device: str | None, precision: str,
           max_batch: int, attention: bool, cache: Any, batch_sizes: Any) -> Engine:
    from ..factory import resolve_model

    if backend == "tensorrt":
        from .trt_engine import TensorRTEngine, trt_unavailable

        if device is not None and str(device) == "cpu":
            raise BackendError("backend tensorrt needs a CUDA device, but device cpu was requested")
        why = trt_unavailable(requested=True)
        if why:
            raise BackendError(f"backend tensorrt is not available: {why}")
        model, ckpt = resolve_model(source)
        return TensorRTEngine(model, ckpt, device=device, precision=precision, max_batch=max_batch,
                              batch_sizes=batch_sizes, attention=attention, cache=cache)
    if backend == "onnxruntime":
        from .ort_engine import OrtEngine, cached_onnx, choose_providers, ort_available

        why = ort_available()
        if why:
            raise BackendError(f"backend onnxruntime is not available: {why}")
        choose_providers(device, precision, None)  # fail on a bad device/precision before exporting
        exported = False
        path, verify = source, None
        if precision == "int8" and not _is_onnx(source):
            from .quantize import check_int8, find_int8

            (path, ckpt), device = find_int8(source, cache), "cpu"
            verify = functools.partial(check_int8, path=path, ckpt=ckpt, source=source)
        elif not _is_onnx(source):
            path, exported = cached_onnx(source, cache=cache)
        engine = OrtEngine(path, device=device, threads=threads, precision=precision,
                           max_batch=max_batch, attention=attention, cache=cache, verify=verify)
        engine.exported = exported
        return engine
    from .torch_engine import TorchEngine

    model, ckpt = resolve_model(source)
    return TorchEngine(model, ckpt, device=device, threads=threads, precision=precision,
                       max_batch=max_batch, attention=attention)
