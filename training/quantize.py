"""An int8 graph of a model for onnxruntime on a CPU: static quantization calibrated on audio.

``python -m rt_tagger.training quantize MODEL --calibration DIR_OR_MANIFEST [--out FILE]``

The model's fp32 export (:func:`rt_tagger.engines.ort_engine.cached_onnx`) goes through
onnxruntime's ``quant_pre_process`` and ``quantize_static``; the activation ranges come from
chunks of the calibration audio, cut exactly as the runtime cuts them (the checkpoint's log-mel,
its chunk length). ``--calibration`` is a folder of audio files or a corpus ``manifest.csv``, of
which only the **train** split is used (:func:`training.data.corpus.split_of`): held-out sources
never calibrate. The graph keeps the checkpoint description and gains an ``rt_tagger.int8``
record (:mod:`rt_tagger.engines.quantize`): the checkpoint's SHA-256, the calibration set and
method, the onnxruntime version and the command, so a stale graph is refused at load.

The default method is the one ``bench/bench_int8.py`` chose for the default model (see
``bench/results/int8.md``): QDQ, per-channel weights, only the attention back-end's
MatMul/Gemm quantized (quantizing musicnn's convolutions too costs accuracy and buys no speed
on the CPUs measured).
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rt_tagger.errors import ConfigError

__all__ = ["QuantMethod", "calibration_chunks", "calibration_files", "quantize_model"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif")
OP_SETS = {"matmul": ("MatMul", "Gemm"), "all": ("Conv", "MatMul", "Gemm")}


@dataclass(frozen=True)
class QuantMethod:
    fmt: str = "qdq"  # "qdq" (QuantizeLinear/DequantizeLinear pairs) or "qoperator" (QLinear* ops)
    ops: str = "matmul"  # "matmul": the attention back-end only; "all": the convolutions too
    per_channel: bool = True  # one scale per output channel of each weight
    activation: str = "int8"  # "int8" or "uint8" activations (weights are always int8)


def calibration_files(source: str | os.PathLike[str], *, max_files: int = 64,
                      seed: int = 0) -> tuple[list[Path], str]:
    """``(files, description)``: at most ``max_files`` audio files of a folder (recursively), or
    of a corpus manifest's train split, drawn evenly with ``seed``."""
    src = Path(source)
    if src.is_file() and src.name.endswith(".csv"):
        from .data.corpus import read_manifest, split_of

        rows = [r for r in read_manifest(src.parent) if split_of(r) == "train"]
        files = sorted(src.parent / r["path"] for r in rows)
        what = f"train split of the corpus manifest {src}"
    elif src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        what = f"audio files under {src}"
    else:
        raise ConfigError(f"--calibration {source}: not a folder of audio files or a manifest.csv")
    if not files:
        raise ConfigError(f"--calibration {source}: no audio files found")
    if len(files) > max_files:
        pick = np.random.default_rng(seed).choice(len(files), max_files, replace=False)
        files = [files[i] for i in sorted(pick)]
    return files, what


def calibration_chunks(files: list[Path], ckpt: Any, *, per_file: int = 4,
                       seed: int = 0) -> np.ndarray:
    """``(n, *input shape)`` float32 model inputs: ``per_file`` chunks at seeded random starts
    of each file (a file shorter than one chunk gives its one padded chunk)."""
    from rt_tagger.features import LogMel, LogMelConfig
    from rt_tagger.sources.decode import read_audio

    rng = np.random.default_rng(seed)
    logmel = LogMel(LogMelConfig.from_dict(ckpt.logmel)) if ckpt.logmel else None
    length = int(ckpt.input_length)
    out = []
    for f in files:
        y, _ = read_audio(f, sample_rate=int(ckpt.sample_rate))
        units = logmel(y) if logmel is not None else y
        if units.shape[0] < length:
            pad = np.zeros((length - units.shape[0], *units.shape[1:]), np.float32)
            units = np.concatenate([units, pad])
        starts = rng.integers(0, units.shape[0] - length + 1, min(per_file, units.shape[0]))
        out += [units[s:s + length] for s in starts]
    return np.ascontiguousarray(np.stack(out), np.float32)


class _Reader:
    """onnxruntime's ``CalibrationDataReader``: one chunk per call, batch 1."""

    def __init__(self, chunks: np.ndarray) -> None:
        self._it = iter(chunks)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {"features": x[None]}


def quantize_model(source: Any, chunks: np.ndarray, out: str | os.PathLike[str] | None = None,
                   *, method: QuantMethod = QuantMethod(), calibration: dict[str, Any] | None = None,
                   cache: str | None = None) -> Path:
    """Write the int8 graph of model ``source`` calibrated on ``chunks``; returns its path
    (default: :func:`rt_tagger.engines.quantize.int8_cache_path`, where the runtime finds it)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from rt_tagger.engines.ort_engine import cached_onnx
    from rt_tagger.engines.quantize import INT8_KEY, int8_cache_path
    from rt_tagger.export import EXPORT_KEY, META_KEY
    from rt_tagger.factory import describe_model

    if method.fmt not in ("qdq", "qoperator") or method.ops not in OP_SETS \
            or method.activation not in ("int8", "uint8"):
        raise ConfigError(f"unknown quantization method {method}")
    ckpt = describe_model(source)
    fp32, _ = cached_onnx(source, cache=cache)
    target = Path(out) if out is not None else int8_cache_path(ckpt, cache)
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(chunks)
    with tempfile.TemporaryDirectory() as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # The dynamo export's shapes defeat the symbolic shape inference; onnx's own is enough.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q), reader,
                        quant_format=QuantFormat.QDQ if method.fmt == "qdq" else QuantFormat.QOperator,
                        op_types_to_quantize=list(OP_SETS[method.ops]), per_channel=method.per_channel,
                        activation_type=QuantType.QInt8 if method.activation == "int8" else QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        proto = onnx.load(str(q))
    exported = {m.key: m.value for m in onnx.load(str(fp32), load_external_data=False).metadata_props}
    record = {"checkpoint_sha256": ckpt.sha256, "checkpoint": ckpt.path.name if ckpt.path else None,
              "calibration": {**(calibration or {}), "chunks": int(chunks.shape[0])},
              "method": {**asdict(method), "op_types": list(OP_SETS[method.ops]),
                         "weights": "int8", "calibrate_method": "MinMax",
                         "tool": "onnxruntime.quantization.quantize_static"},
              "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
              "command": "python -m rt_tagger.training " + shlex.join(sys.argv[1:])}
    del proto.metadata_props[:]
    meta = {META_KEY: json.dumps(ckpt.metadata(), sort_keys=True),
            EXPORT_KEY: exported.get(EXPORT_KEY, "{}"), INT8_KEY: json.dumps(record, sort_keys=True)}
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"rt-tagger {ckpt.arch} tagger, {len(ckpt.tags)} tags, int8 (onnxruntime CPU)"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_target = target.with_name(target.name + ".tmp")
    onnx.save(proto, str(tmp_target))
    os.replace(tmp_target, target)
    return target


def add_arguments(p: Any) -> None:
    p.add_argument("model", help="registry name or .safetensors checkpoint")
    p.add_argument("--calibration", required=True,
                   help="folder of audio files, or a corpus manifest.csv (its train split only)")
    p.add_argument("--out", default=None, help="int8 .onnx to write (default: the ONNX cache, "
                                               "where --precision int8 finds it)")
    p.add_argument("--files", type=int, default=64, help="at most this many calibration files")
    p.add_argument("--chunks-per-file", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", dest="fmt", default="qdq", choices=["qdq", "qoperator"])
    p.add_argument("--ops", default="matmul", choices=list(OP_SETS),
                   help="matmul: quantize the MatMul/Gemm (attention back-end) only; all: Conv too")
    p.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor")
    p.add_argument("--activation", default="int8", choices=["int8", "uint8"])


def run(args: Any) -> Path:
    from rt_tagger.factory import describe_model

    files, what = calibration_files(args.calibration, max_files=args.files, seed=args.seed)
    chunks = calibration_chunks(files, describe_model(args.model), per_file=args.chunks_per_file,
                                seed=args.seed)
    method = QuantMethod(fmt=args.fmt, ops=args.ops, per_channel=not args.per_tensor,
                         activation=args.activation)
    calibration = {"set": what, "files": len(files), "chunks_per_file": args.chunks_per_file,
                   "seed": args.seed}
    return quantize_model(args.model, chunks, args.out, method=method, calibration=calibration)
