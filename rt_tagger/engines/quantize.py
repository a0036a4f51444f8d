"""int8 graphs for onnxruntime on a CPU: where a model's quantized ``.onnx`` lives, and whether
it still belongs to the checkpoint.

An int8 graph is an rt-tagger export run through onnxruntime's static quantization
(``python -m rt_tagger.training quantize``, :mod:`training.quantize`). It carries the
checkpoint description (:data:`~rt_tagger.export.META_KEY`) like any export, plus
:data:`INT8_KEY`: the SHA-256 of the checkpoint it was made from and how it was calibrated.
Looked up, in order:

* beside the checkpoint: ``<name>.int8.onnx`` next to ``<name>.safetensors`` (the default model
  ships one in ``rt_tagger/weights``);
* in the ONNX cache: ``<cache>/onnx/<arch>-<sha256[:16]>.int8.onnx`` (the quantize command's
  default output).

Nothing here imports torch or onnx: reading the metadata is onnxruntime's job.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import BackendError, ModelError
from .base import cache_dir, slug

__all__ = ["INT8_KEY", "check_int8", "find_int8", "int8_cache_path", "int8_info", "quantize_hint"]

#: Metadata key of an int8 graph: ``{"checkpoint_sha256", "calibration", "method", ...}``.
INT8_KEY = "rt_tagger.int8"


def int8_cache_path(ckpt: Any, cache: str | os.PathLike[str] | None = None) -> Path:
    """Where the quantize command writes ``ckpt``'s int8 graph by default (the ONNX cache)."""
    if not ckpt.sha256:
        raise BackendError(f"checkpoint of {ckpt.arch!r} has no sha256; cannot key its int8 graph")
    return cache_dir("onnx", cache) / f"{slug(ckpt.arch)}-{ckpt.sha256[:16]}.int8.onnx"


def beside_checkpoint(ckpt: Any) -> Path | None:
    """``<name>.int8.onnx`` next to the checkpoint file, or None for a checkpoint without one."""
    if ckpt.path is None:
        return None
    p = Path(ckpt.path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".int8.onnx")


def quantize_hint(source: Any) -> str:
    """The command that makes an int8 graph for ``source`` (a name or a checkpoint path)."""
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "MODEL"
    return (f"python -m rt_tagger.training quantize {name} --calibration AUDIO_DIR_OR_MANIFEST")


def int8_info(session: Any) -> dict[str, Any] | None:
    """The :data:`INT8_KEY` record of an onnxruntime session's graph, None for a float graph."""
    text = session.get_modelmeta().custom_metadata_map.get(INT8_KEY)
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ModelError(f"int8 record ({INT8_KEY}) of the graph is not valid JSON") from None


def check_int8(session: Any, path: Path, ckpt: Any, source: Any) -> None:
    """Whether ``session`` (the engine's own session of the graph at ``path``: the graph is
    opened once) is an int8 graph of exactly ``ckpt`` (same weights, same description); else
    one :class:`ModelError` line saying it is stale and how to remake it."""
    from ..export import META_KEY

    info = int8_info(session)
    described = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if info is None:
        raise ModelError(f"{path} is not an rt-tagger int8 graph (no {INT8_KEY} record); "
                         f"make one with: {quantize_hint(source)}")
    made_from = str(info.get("checkpoint_sha256", ""))
    if made_from != ckpt.sha256:
        raise ModelError(f"int8 graph {path.name} is stale: made from checkpoint "
                         f"{made_from[:12] or '?'}..., but {ckpt.arch!r} is now "
                         f"{ckpt.sha256[:12]}...; remake it with: {quantize_hint(source)}")
    try:
        same = described is not None and json.loads(described) == json.loads(
            json.dumps(ckpt.metadata(), sort_keys=True))
    except json.JSONDecodeError:
        same = False
    if not same:
        raise ModelError(f"int8 graph {path.name} describes another version of {ckpt.arch!r} "
                         f"(tags, thresholds or features differ); remake it with: "
                         f"{quantize_hint(source)}")


def find_int8(source: Any, cache: str | os.PathLike[str] | None = None) -> tuple[Path, Any]:
    """``(path, checkpoint description)``: where the int8 graph of ``source`` (a model name,
    checkpoint path, checkpoint or model) is, beside the checkpoint or in the cache;
    :class:`ModelError` (one line, with the command that makes one) where there is none. The
    engine that opens it checks it against the checkpoint (:func:`check_int8`)."""
    from ..factory import describe_model

    ckpt = describe_model(source)
    for path in (beside_checkpoint(ckpt), int8_cache_path(ckpt, cache)):
        if path is not None and path.is_file():
            return path, ckpt
    raise ModelError(f"no int8 graph for {ckpt.arch!r} (checkpoint {ckpt.sha256[:12]}...); "
                     f"make one with: {quantize_hint(source)}")
