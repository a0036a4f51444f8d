"""A Triton Inference Server model repository from an rt-tagger checkpoint.

Layout written by :func:`write_triton_repository` (``rt-tagger export MODEL --triton REPO``)::

    REPO/<name>/config.pbtxt        platform onnxruntime_onnx, I/O from the ONNX graph
    REPO/<name>/1/model.onnx        the graph from rt_tagger.export.export_onnx (dynamic batch)
    REPO/<name>/rt_tagger.json      the checkpoint's JSON description + how the repo was made
    REPO/<name>_trt/...             only with plan=True, on a machine with a CUDA GPU + TensorRT

``config.pbtxt`` follows Triton's model configuration schema (``model_config.proto``): the batch
axis is Triton's (``max_batch_size`` > 0, so ``dims`` leave it out), ``dynamic_batching`` with a
stated ``max_queue_delay_microseconds`` and a bounded queue (``default_queue_policy.
max_queue_size``: a full queue rejects a request instead of growing, and the client reports it
as overload), one CPU ``instance_group``, and the checkpoint description under
``parameters["rt_tagger"]`` so a client can check tags and features against its own.
:func:`validate_config` parses the file with the ``ModelConfig`` protobuf shipped in
``tritonclient`` and checks it against the checkpoint.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engines.triton_contract import DESCRIPTION_KEY, config_mismatches, default_model_name
from ..errors import BackendError, ConfigError, ModelError

if TYPE_CHECKING:  # pragma: no cover
    from ..checkpoint import Checkpoint

__all__ = ["DESCRIPTION_KEY", "DESCRIPTION_FILE", "default_model_name", "graph_io",
           "render_config", "validate_config", "write_triton_repository"]

DESCRIPTION_FILE = "rt_tagger.json"  # the same description beside config.pbtxt
MAX_QUEUE_DELAY_US = 2000  # 2 ms: a live chunk every 0.5 s loses nothing, many streams batch up
# ONNX TensorProto element types -> Triton data types (the ones an rt-tagger graph can have)
_ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32",
                   7: "TYPE_INT64", 9: "TYPE_BOOL"}


def graph_io(onnx_path: str | os.PathLike[str]) -> tuple[list[dict], list[dict]]:
    """``(inputs, outputs)`` of an ONNX graph as ``{"name", "data_type", "dims"}`` dicts; dims
    leave out the batch axis, and a symbolic axis other than the batch is -1."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph

    def describe(values: Any) -> list[dict]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dtype = _ONNX_TO_TRITON.get(t.elem_type)
            if dtype is None:
                raise ModelError(f"{onnx_path}: tensor {v.name!r} has ONNX element type "
                                 f"{t.elem_type}, which this exporter does not map to Triton")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append({"name": v.name, "data_type": dtype, "dims": dims[1:]})
        return out

    return describe(graph.input), describe(graph.output)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensors(label: str, tensors: list[dict]) -> list[str]:
    lines = [f"{label} ["]
    for i, t in enumerate(tensors):
        lines += ["  {", f"    name: {_quote(t['name'])}", f"    data_type: {t['data_type']}",
                  f"    dims: [ {', '.join(str(d) for d in t['dims'])} ]",
                  "  }" + ("," if i < len(tensors) - 1 else "")]
    return lines + ["]"]


def render_config(name: str, inputs: list[dict], outputs: list[dict], *, platform: str,
                  max_batch: int, max_queue_delay_us: int, max_queue_size: int, instances: int,
                  kind: str = "KIND_CPU", description: dict | None = None) -> str:
    """The text of a ``config.pbtxt`` (Triton's ``ModelConfig`` in protobuf text format)."""
    lines = [f"name: {_quote(name)}", f"platform: {_quote(platform)}",
             f"max_batch_size: {max_batch}"]
    lines += _tensors("input", inputs) + _tensors("output", outputs)
    lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {max_queue_delay_us}",
              "  default_queue_policy {", f"    max_queue_size: {max_queue_size}", "  }", "}",
              "instance_group [", "  {", f"    count: {instances}", f"    kind: {kind}", "  }", "]"]
    if description is not None:
        text = json.dumps(description, sort_keys=True, ensure_ascii=True)
        lines += ["parameters {", f"  key: {_quote(DESCRIPTION_KEY)}",
                  f"  value {{ string_value: {_quote(text)} }}", "}"]
    return "\n".join(lines) + "\n"


def _positive(value: Any, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def write_triton_repository(
    source: Any,
    repo: str | os.PathLike[str],
    *,
    name: str | None = None,
    max_batch: int = 16,
    max_queue_delay_us: int = MAX_QUEUE_DELAY_US,
    max_queue_size: int = 64,
    instances: int = 1,
    attention: bool = True,
    plan: bool = False,
) -> Path:
    """Write ``REPO/<name>/`` for ``source`` (model name, checkpoint or rt-tagger ``.onnx``);
    returns that directory. ``plan=True`` also builds a TensorRT plan (needs a CUDA GPU)."""
    from ..export import export_onnx, read_onnx_metadata

    _positive(max_batch, "max_batch")
    _positive(max_queue_delay_us, "max_queue_delay_us", 0)
    _positive(max_queue_size, "max_queue_size", 0)
    _positive(instances, "instances")
    name = name or default_model_name(source)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"Triton model name {name!r} may hold only letters, digits, '_', '-', '.'")
    root = Path(repo)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"Triton repository {root} exists and is not a directory")
    if plan:  # fail before exporting anything
        _plan_unavailable_error()
    model_dir = root / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    onnx_path = model_dir / "1" / "model.onnx"
    if isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".onnx"):
        read_onnx_metadata(source)  # an rt-tagger export, or ModelError
        shutil.copyfile(source, onnx_path)
    else:  # exported in a scratch directory: the exporter may leave side files next to its output
        with tempfile.TemporaryDirectory(prefix=".export-", dir=model_dir) as tmp:
            exported = export_onnx(source, Path(tmp) / "model.onnx", batch=None,
                                   with_attention=attention)
            os.replace(exported, onnx_path)
    ckpt, info = read_onnx_metadata(onnx_path)
    if info.get("batch"):
        raise ModelError(f"{source}: a static-batch ONNX export cannot serve Triton's dynamic "
                         f"batch (export it with a dynamic batch)")
    inputs, outputs = graph_io(onnx_path)
    description = ckpt.metadata()
    config = render_config(name, inputs, outputs, platform="onnxruntime_onnx",
                           max_batch=max_batch, max_queue_delay_us=max_queue_delay_us,
                           max_queue_size=max_queue_size, instances=instances,
                           description=description)
    (model_dir / "config.pbtxt").write_text(config)
    side = {"checkpoint": description, "export": info, "triton": {
        "name": name, "platform": "onnxruntime_onnx", "max_batch_size": max_batch,
        "inputs": inputs, "outputs": outputs}}
    (model_dir / DESCRIPTION_FILE).write_text(json.dumps(side, indent=2, sort_keys=True) + "\n")
    if plan:
        _write_plan(root, name, onnx_path, inputs, outputs, description, max_batch=max_batch,
                    max_queue_delay_us=max_queue_delay_us, max_queue_size=max_queue_size)
    return model_dir


# ---- validation ------------------------------------------------------------------------------
def validate_config(model_dir: str | os.PathLike[str], checkpoint: "Checkpoint | None" = None):
    """Parse ``model_dir/config.pbtxt`` with tritonclient's ``ModelConfig`` protobuf and check it
    against ``checkpoint`` (default: the description beside it); returns the message.

    Raises :class:`ModelError` for a file that does not parse or does not match, and
    :class:`ConfigError` when ``tritonclient`` (``pip install 'rt-tagger[triton]'``) is missing.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise ConfigError(f"validating a Triton config needs tritonclient ({exc}); "
                          "pip install 'rt-tagger[triton]'") from None
    d = Path(model_dir)
    path = d / "config.pbtxt"
    try:
        cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except text_format.ParseError as exc:
        raise ModelError(f"{path} is not a valid Triton model config: {exc}") from None
    if checkpoint is None:
        from ..checkpoint import checkpoint_from_metadata

        if DESCRIPTION_KEY not in cfg.parameters:
            raise ModelError(f"{path} carries no rt-tagger description; pass the checkpoint")
        checkpoint = checkpoint_from_metadata(cfg.parameters[DESCRIPTION_KEY].string_value,
                                              str(path))
    problems = config_mismatches(_config_view(cfg), checkpoint)
    if cfg.name != d.name:
        problems.append(f"name {cfg.name!r} is not the directory name {d.name!r}")
    if problems:
        raise ModelError(f"{path} does not match the checkpoint: {'; '.join(problems)}")
    return cfg


def _config_view(cfg: Any) -> dict:
    """The fields of a ``ModelConfig`` message the checks read, as the HTTP API returns them."""
    def tensors(items: Any) -> list[dict]:
        return [{"name": t.name, "data_type": model_type_name(t.data_type), "dims": list(t.dims)}
                for t in items]

    return {"max_batch_size": cfg.max_batch_size, "input": tensors(cfg.input),
            "output": tensors(cfg.output),
            "parameters": {k: {"string_value": v.string_value} for k, v in cfg.parameters.items()}}


def model_type_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


def _plan_unavailable_error() -> None:
    import importlib.util

    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (none is visible here)")
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("the TensorRT Python package (pip install tensorrt)")
    if missing:
        raise BackendError(f"a TensorRT plan is built on the GPU that will serve it and needs "
                           f"{' and '.join(missing)}; export without --plan here and build the "
                           "plan on the GPU machine")


def _write_plan(root: Path, name: str, onnx_path: Path, inputs: list[dict], outputs: list[dict],
                description: dict, *, max_batch: int, max_queue_delay_us: int,
                max_queue_size: int) -> Path:
    """``REPO/<name>_trt/1/model.plan`` built from the ONNX graph for batches 1..max_batch."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    feat = inputs[0]
    dims = tuple(feat["dims"])
    profile.set_shape(feat["name"], (1, *dims), (max(1, max_batch // 2), *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise BackendError(f"TensorRT could not build a plan from {onnx_path}")
    plan_dir = root / f"{name}_trt"
    (plan_dir / "1").mkdir(parents=True, exist_ok=True)
    (plan_dir / "1" / "model.plan").write_bytes(bytes(blob))
    text = render_config(f"{name}_trt", inputs, outputs, platform="tensorrt_plan",
                         max_batch=max_batch, max_queue_delay_us=max_queue_delay_us,
                         max_queue_size=max_queue_size, instances=1, kind="KIND_GPU",
                         description=description)
    (plan_dir / "config.pbtxt").write_text(text)
    return plan_dir


def export_cli(args: Any) -> str:
    """``rt-tagger export MODEL --triton REPO``: write the repository, validate the config with
    tritonclient's protobuf when it is installed, and say what was written."""
    if args.format != "onnx" or args.output or args.batch:
        raise ConfigError("--triton writes an ONNX model repository with a dynamic batch: give "
                          "no --format torchscript, --output or --batch with it")
    d = write_triton_repository(args.model, args.triton, name=args.name, max_batch=args.max_batch,
                                attention=not args.no_attention, plan=args.plan)
    try:
        validate_config(d)
        checked = "config.pbtxt parsed with tritonclient's ModelConfig and matches the checkpoint"
    except ConfigError:  # no tritonclient here: the file is still written
        checked = "not validated (pip install 'rt-tagger[triton]' to check it)"
    lines = [f"wrote {d}/1/model.onnx, {d}/config.pbtxt, {d}/{DESCRIPTION_FILE}"]
    if args.plan:
        lines.append(f"wrote {d.parent / (d.name + '_trt')}/1/model.plan")
    lines += [checked, f"serve: tritonserver --model-repository {d.parent}",
              f"tag:   rt-tagger FILE --model {args.model} --backend triton://HOST:8000/{d.name}"]
    return "\n".join(lines)
