"""ONNX Runtime engine: the default on CPU (and on GPU through the CUDA / TensorRT providers).

With ``precision="int8"`` it runs the model's statically quantized graph on the CPU provider
(:mod:`rt_tagger.engines.quantize`), whole model per chunk: int8 graphs have no frame-reuse
halves.

Given a checkpoint rather than an ``.onnx`` file, the model is exported once into the cache
(``<cache>/onnx``), under a name keyed by the checkpoint's weight checksum and the torch / onnx
versions and opset, and the next start loads that file without exporting again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ConfigError, ModelError
from .base import Engine, cache_dir, int8_only_on_cpu, run_session, slug

TRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"

#: How many ONNX exports this process has done for the cache (tests check cache reuse with it).
export_count = 0


def ort_available() -> str | None:
    """None if onnxruntime imports, else why not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    return None


#: Bumped when what a cache entry holds changes (2: the frame-reuse halves are written first,
#: so a model's main file exists only once its whole export is complete).
CACHE_LAYOUT = 2


def _dist_version(dist: str) -> str:
    """An installed distribution's version, from the name of its metadata folder
    (``NAME-VERSION.dist-info`` / ``.egg-info`` on ``sys.path``): the cache key of the
    onnxruntime runtime must not import torch (or onnx) to be computed, and
    ``importlib.metadata.version`` reads every installed distribution's metadata to find one
    (~13 ms each, a noticeable share of a cold start). "none" when it is not installed."""
    want = re.sub(r"[-_.]+", "_", dist).lower()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, dot, kind = name.rpartition(".")
            if kind not in ("dist-info", "egg-info") or not dot:
                continue
            project, _, version = stem.partition("-")
            if version and re.sub(r"[-_.]+", "_", project).lower() == want:
                return version.split("-py")[0]
    return "none"


def onnx_cache_path(ckpt: Any, *, opset: int | None = None,
                    cache: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`cached_onnx` keeps the export of checkpoint (description) ``ckpt``."""
    from ..export import DEFAULT_OPSET, default_exporter

    if not ckpt.sha256:
        raise BackendError(f"checkpoint of {ckpt.arch!r} has no sha256; cannot key the ONNX cache")
    # The description (tags, features) is embedded in the file, so it is part of the key too.
    described = hashlib.sha256(json.dumps([CACHE_LAYOUT, ckpt.metadata()], sort_keys=True)
                               .encode()).hexdigest()
    exporter = default_exporter()  # "legacy" where onnxscript is missing: a graph of its own
    name = (f"{slug(ckpt.arch)}-{ckpt.sha256[:16]}-{described[:8]}"
            f"-torch{slug(_dist_version('torch'))}-onnx{slug(_dist_version('onnx'))}"
            f"-op{opset or DEFAULT_OPSET}-{exporter}.onnx")
    return cache_dir("onnx", cache) / name


def cached_onnx(source: Any, *, opset: int | None = None, cache: str | os.PathLike[str] | None = None,
                ) -> tuple[Path, bool]:
    """``(path, exported_now)``: the cached ONNX export of a checkpoint, made if missing.

    The file name holds the architecture, the weights' SHA-256, a hash of the description (tags,
    features), the torch / onnx versions, the opset and the exporter (see
    :func:`rt_tagger.export.default_exporter`), so a new checkpoint, a relabelled one or a new
    toolchain gets its own file. Finding a cached export reads only the checkpoint's header and
    checksum: torch is imported only to export.
    """
    global export_count
    from ..export import DEFAULT_OPSET, default_exporter, export_frame_reuse, export_onnx
    from ..factory import describe_model, resolve_model

    opset = opset or DEFAULT_OPSET
    path = onnx_cache_path(describe_model(source), opset=opset, cache=cache)
    if path.is_file():
        return path, False
    try:
        model, ckpt = resolve_model(source)
    except ImportError as exc:  # an onnxruntime-only install meets a model not exported yet
        raise BackendError(f"{path.name} is not in the ONNX cache ({path.parent}) and exporting "
                           f"it needs PyTorch, which cannot be imported ({exc})") from None
    exporter = default_exporter()
    # Frame-reuse halves (rt_tagger.engines.reuse) first, the main graph last: its presence
    # says the whole export is there.
    export_frame_reuse(model, path, with_attention=True, opset=opset, exporter=exporter)
    export_onnx(model, path, batch=None, with_attention=True, opset=opset, exporter=exporter)
    export_count += 1
    return path, True


def session_metadata(session: Any, where: Path) -> tuple[Any, dict[str, Any]]:
    """``(checkpoint description, export info)`` an rt-tagger export carries, read from an
    onnxruntime session (as :func:`rt_tagger.export.read_onnx_metadata` reads the file, without
    parsing the graph a second time with ``onnx``)."""
    from ..checkpoint import checkpoint_from_metadata
    from ..export import EXPORT_KEY, META_KEY

    props = session.get_modelmeta().custom_metadata_map
    try:
        info = json.loads(props.get(EXPORT_KEY) or "{}")
    except json.JSONDecodeError:
        raise ModelError(f"{where}: rt-tagger export info is not valid JSON") from None
    return checkpoint_from_metadata(props.get(META_KEY), str(where), where), info


class _Metadata:
    """What :func:`session_metadata` and the int8 checks read of a session, for a graph whose
    session is not open: ``get_modelmeta().custom_metadata_map``."""

    def __init__(self, props: dict[str, str]) -> None:
        self.custom_metadata_map = props

    def get_modelmeta(self) -> "_Metadata":
        return self


def onnx_metadata_props(path: Path) -> dict[str, str] | None:
    """An ONNX file's ``metadata_props`` read straight from its protobuf (the top-level fields
    of ModelProto, the graph skipped by its length), or None where the file is not one."""

    def varint(buf: memoryview, i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            if i >= len(buf) or shift > 63:
                raise ValueError("truncated varint")
            b = buf[i]
            value |= (b & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if b < 0x80:
                return value, i

    def fields(buf: memoryview):
        i = 0
        while i < len(buf):
            tag, i = varint(buf, i)
            kind = tag & 7
            if kind == 0:
                _, i = varint(buf, i)
                continue
            if kind == 1 or kind == 5:
                i += 8 if kind == 1 else 4
                continue
            if kind != 2:
                raise ValueError(f"wire type {kind}")
            n, i = varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            yield tag >> 3, buf[i:i + n]
            i += n

    try:
        data = memoryview(path.read_bytes())  # slices of it are views: the graph is not copied
        props = {}
        for field, value in fields(data):
            if field == 14:  # metadata_props: StringStringEntryProto {key = 1; value = 2}
                entry = dict(fields(value))
                props[bytes(entry.get(1, b"")).decode()] = bytes(entry.get(2, b"")).decode()
        return props
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _lazy_metadata(path: Path, providers: list[Any], verify: Any,
                   precision: str) -> dict[str, str] | None:
    """The metadata of a graph whose whole-graph session can wait (see OrtEngine), else None:
    a float, dynamic-batch rt-tagger export on the CPU provider alone, with its frame-reuse
    halves beside it and no check of its own to run."""
    from ..export import EXPORT_KEY, META_KEY, frame_reuse_paths
    from .quantize import INT8_KEY

    if verify is not None or precision == "int8" or providers != [CPU_EP] \
            or not all(p.is_file() for p in frame_reuse_paths(path)):
        return None
    props = onnx_metadata_props(path)
    if not props or META_KEY not in props or INT8_KEY in props:
        return None
    try:
        info = json.loads(props.get(EXPORT_KEY) or "{}")
    except json.JSONDecodeError:
        return None
    return props if isinstance(info, dict) and not info.get("batch") else None


def choose_providers(device: str | None, precision: str, cache: Path | None) -> list[Any]:
    """Execution providers in preference order for ``device`` ("cpu", "cuda[:N]" or None=auto)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    index = _cuda_index(device)
    if precision == "int8":  # a CPU-only graph: quantized kernels of the CPU provider
        if device is not None and str(device) != "cpu":
            raise BackendError(int8_only_on_cpu("onnxruntime", str(device)))
        return [CPU_EP]
    want_gpu = device is None or str(device).startswith("cuda")
    providers: list[Any] = []
    if want_gpu and TRT_EP in available:
        opts = {"device_id": index, "trt_fp16_enable": precision == "fp16"}
        if cache is not None:
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache))
        providers.append((TRT_EP, opts))
    if want_gpu and CUDA_EP in available:
        providers.append((CUDA_EP, {"device_id": index}))
    if device and str(device).startswith("cuda") and not providers:
        raise BackendError(f"device {device!r} requested but this onnxruntime has no CUDA or "
                           f"TensorRT provider (available: {', '.join(available)}); install "
                           "onnxruntime-gpu")
    if precision == "fp16" and not any(_name(p) == TRT_EP for p in providers):
        raise BackendError("precision fp16 with onnxruntime needs its TensorRT provider "
                           "(onnxruntime-gpu with TensorRT); use fp32 or the tensorrt backend")
    providers.append(CPU_EP)
    return providers


def _cuda_index(device: str | None) -> int:
    """GPU index of "cuda[:N]" (0 if absent); :class:`BackendError` for anything but cpu/cuda."""
    text = "cpu" if device is None else str(device)
    head, _, index = text.partition(":")
    if head not in ("cpu", "cuda") or (index and (head == "cpu" or not index.isdigit())):
        raise BackendError(f"invalid device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return int(index or 0)


def _name(provider: Any) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


class OrtEngine(Engine):
    """Runs an rt-tagger ``.onnx`` file (from :func:`rt_tagger.export.export_onnx`).

    ``threads``: intra-op threads (None: onnxruntime's default, one per physical core). The
    session runs sequentially with all graph optimisations and without spinning idle threads,
    which keeps the latency of one chunk low without burning the cores the audio and GUI need.
    ``verify(session)``, if given, checks the opened graph before anything else reads it (an int8
    graph against its checkpoint: :func:`~rt_tagger.engines.quantize.check_int8`), so a graph is
    opened once. A float graph on the CPU with its frame-reuse halves beside it opens its own
    session only when chunks come without stream positions (:meth:`_open_main`).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike[str], *, device: str | None = None,
                 threads: int | None = None, precision: str = "fp32", max_batch: int = 16,
                 attention: bool = True, cache: str | os.PathLike[str] | None = None,
                 verify: Callable[[Any], None] | None = None) -> None:
        import onnxruntime as ort

        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise ModelError(f"ONNX file not found: {self.onnx_path}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                    or threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {threads!r}")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads or 0
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only: no provider fallback chatter on stderr
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Denormals (|x| < 1.2e-38, e.g. in far-off softmax tails) are slow on x86; flush them.
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
        trt_cache = cache_dir("onnx-trt", cache) if device != "cpu" else None
        providers = choose_providers(device, precision, trt_cache)
        self._so, self._providers, self._main_lock = so, providers, threading.Lock()
        self._session = None
        # A float graph on the CPU whose frame-reuse halves lie beside it: a stream's chunks
        # run through the halves, so the whole graph's session (~15 ms to open) is opened only
        # if something runs chunks without their stream positions. Its description comes
        # from the file's metadata meanwhile.
        props = _lazy_metadata(self.onnx_path, providers, verify, precision)
        meta = _Metadata(props) if props is not None else self._open_main()
        if verify is not None:  # e.g. that an int8 graph is still its checkpoint's
            verify(meta)
        ckpt, info = session_metadata(meta, self.onnx_path)
        from .quantize import int8_info, quantize_hint

        self.int8_info = int8_info(meta)
        if precision == "int8" and self.int8_info is None:
            raise ModelError(f"{self.onnx_path.name} is a float graph, not an int8 one; make one "
                             f"from the {ckpt.arch} checkpoint with: {quantize_hint(None)}")
        if self.int8_info is not None:  # the graph decides: an int8 file runs int8
            precision = "int8"
        if self._session is not None:
            outputs = self._check_io(self._session)
            used = self._session.get_providers()
        else:
            outputs, used = list(info.get("outputs") or ["logits"]), [CPU_EP]
        on_gpu = used[0] in (TRT_EP, CUDA_EP)
        if device and str(device).startswith("cuda") and not on_gpu:
            raise BackendError(f"onnxruntime could not start a GPU provider for {device!r} "
                               f"(running providers: {', '.join(used)})")
        dev = f"cuda:{_cuda_index(device)}"
        super().__init__(ckpt, device=dev if on_gpu else "cpu", max_batch=max_batch,
                         precision=precision, supports_attention=attention and "attention" in outputs)
        self.providers = used
        self.export_info = info
        self.exported = False  # set by create_engine when it had to export first
        self._fixed_batch = info.get("batch")
        if self._fixed_batch:  # a static-batch export: run pieces of that size, padding the last
            self.max_batch = int(self._fixed_batch)
        elif not on_gpu and self.int8_info is None:  # int8: the whole model per chunk
            self.frame_reuse = self._open_frame_reuse(so, providers)
        if self._session is None and self.frame_reuse is None:  # halves of another model
            self._open_main()

    def _open_main(self) -> Any:
        """The whole graph's session (opened once, on first need)."""
        import onnxruntime as ort

        with self._main_lock:
            if self._session is None:
                try:
                    session = ort.InferenceSession(str(self.onnx_path), sess_options=self._so,
                                                   providers=self._providers)
                except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                    raise BackendError(f"onnxruntime cannot load {self.onnx_path}: "
                                       f"{str(exc).strip().splitlines()[0]}") from None
                self._check_io(session)
                self._session = session
            return self._session

    def _check_io(self, session: Any) -> list[str]:
        """The graph's output names, once its inputs and outputs are an rt-tagger export's."""
        from ..export import INPUT_NAME

        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [INPUT_NAME] or "logits" not in outputs:
            raise BackendError(f"{self.onnx_path} does not look like an rt-tagger export: inputs "
                               f"{inputs}, outputs {outputs} (want features -> logits)")
        return outputs

    def _open_frame_reuse(self, so: Any, providers: list[Any]) -> Any:
        """The model's frame-reuse halves when they lie beside its file (:func:`export_frame_reuse
        <rt_tagger.export.export_frame_reuse>`), else None."""
        import onnxruntime as ort

        from ..export import frame_reuse_paths
        from .reuse import FrameReuse

        stage_path, head_path = frame_reuse_paths(self.onnx_path)
        if not (stage_path.is_file() and head_path.is_file()):
            return None
        try:
            stage, head = (ort.InferenceSession(str(p), sess_options=so, providers=providers)
                           for p in (stage_path, head_path))
        except Exception as exc:
            raise BackendError(f"onnxruntime cannot load {stage_path.name} / {head_path.name}: "
                               f"{str(exc).strip().splitlines()[0]}") from None
        described, info = session_metadata(head, head_path)
        if described.metadata() != self.checkpoint.metadata():  # halves of another model
            return None
        return FrameReuse(stage, head, context=tuple(info["frame_stage_context"]),
                          length=self.input_length)

    def _run(self, x: np.ndarray, attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = x.shape[0]
        if self._fixed_batch and n < self._fixed_batch:
            x = np.concatenate([x, np.zeros((self._fixed_batch - n, *x.shape[1:]), x.dtype)])
        session = self._session or self._open_main()
        out = run_session(session, ["logits", "attention"] if attention else ["logits"],
                          {"features": x})
        return out[0][:n], (out[1][:n] if attention else None)

    def close(self) -> None:
        self._session = None
        super().close()
