"""What a Triton model must look like to serve an rt-tagger checkpoint: its name and the
config checks. Shared by the Triton client engine (:mod:`.triton_engine`, which checks the
server it talks to) and the repository writer (:mod:`rt_tagger.deploy.triton_repo`)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..checkpoint import Checkpoint

__all__ = ["DESCRIPTION_KEY", "config_mismatches", "default_model_name"]

DESCRIPTION_KEY = "rt_tagger"  # parameters[...] in config.pbtxt: the checkpoint JSON


def default_model_name(source: Any) -> str:
    """The Triton model name for ``source``: its registry name or file stem, made of
    ``[A-Za-z0-9_-]`` only (``"spec_att.w256"`` -> ``"spec_att_w256"``)."""
    if isinstance(source, (str, os.PathLike)):
        text = Path(os.fspath(source)).name
        for suffix in (".safetensors", ".onnx"):
            if text.endswith(suffix):
                text = text[: -len(suffix)]
    else:
        ckpt = getattr(source, "checkpoint", source)
        text = getattr(ckpt, "arch", "model")
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "model"


def config_mismatches(config: dict, ckpt: "Checkpoint") -> list[str]:
    """What in a Triton model config (the HTTP API's JSON shape) disagrees with ``ckpt``:
    batching, the ``features`` input (dims, FP32), the ``logits`` output (one per tag) and, if
    the config carries the rt-tagger description, its tags, features and weights."""
    from ..export import INPUT_NAME

    want_in = [ckpt.input_length, int(ckpt.logmel["n_mels"])] if ckpt.logmel else [ckpt.input_length]
    problems = []
    if int(config.get("max_batch_size") or 0) < 1:
        problems.append("max_batch_size must be >= 1 (rt-tagger batches on the first axis)")
    ins = {t["name"]: t for t in config.get("input") or []}
    outs = {t["name"]: t for t in config.get("output") or []}
    feat = ins.get(INPUT_NAME)
    if feat is None:
        problems.append(f"no input {INPUT_NAME!r} (inputs: {', '.join(ins) or 'none'})")
    else:
        if [int(x) for x in feat["dims"]] != want_in:
            problems.append(f"input {INPUT_NAME!r} has dims {list(feat['dims'])}, the checkpoint "
                            f"needs {want_in}")
        if feat.get("data_type") != "TYPE_FP32":
            problems.append(f"input {INPUT_NAME!r} is {feat.get('data_type')}, needs TYPE_FP32")
    logits = outs.get("logits")
    if logits is None:
        problems.append(f"no output 'logits' (outputs: {', '.join(outs) or 'none'})")
    elif [int(x) for x in logits["dims"]] != [ckpt.n_tags]:
        problems.append(f"output 'logits' has dims {list(logits['dims'])}: the checkpoint has "
                        f"{ckpt.n_tags} tags")
    carried = ((config.get("parameters") or {}).get(DESCRIPTION_KEY) or {}).get("string_value")
    if carried:
        meta = json.loads(carried)
        if meta.get("tags") != list(ckpt.tags):
            problems.append("the served model's tags differ from the checkpoint's")
        for key in ("sample_rate", "input_kind", "input_length", "logmel"):
            if meta.get(key) != getattr(ckpt, key):
                problems.append(f"the served model's {key} differs from the checkpoint's")
        if ckpt.sha256 and meta.get("sha256") and meta["sha256"] != ckpt.sha256:
            problems.append(f"the served model's weights (sha256 {meta['sha256'][:12]}...) are "
                            f"not the checkpoint's ({ckpt.sha256[:12]}...)")
    return problems


# ---- TensorRT plan (GPU only) ----------------------------------------------------------------
