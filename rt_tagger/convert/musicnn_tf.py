"""Convert the original pretrained musicnn taggers (TensorFlow 1 checkpoints in the PyPI wheel
``musicnn==0.1.0``) into rt-tagger checkpoints, without TensorFlow.

    python -m rt_tagger.convert.musicnn_tf --wheel musicnn-0.1.0-py3-none-any.whl --out rt_tagger/weights/
    python -m rt_tagger.convert.musicnn_tf --download --out rt_tagger/weights/

writes ``musicnn_mtat.safetensors`` (MTT_musicnn) and ``musicnn_msd.safetensors`` (MSD_musicnn).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError, RtTaggerError
from ..models.musicnn import MSD_TAGS, MTT_TAGS, MusiCNN
from .tf_checkpoint import read_tf_checkpoint

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_VERSION = "musicnn==0.1.0"
LICENSE_LINE = ("Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. "
                "Code developed by Jordi Pons (www.jordipons.me).")

#: output file, checkpoint directory in the wheel, tag list, published test-set metrics
#: (``musicnn/<model>/experiment.result`` in the wheel).
MODELS = {
    "MTT_musicnn": dict(
        out="musicnn_mtat.safetensors", tags=MTT_TAGS, dataset="MagnaTagATune (MTAT), top-50 tags",
        metrics={"dataset": "MagnaTagATune test set", "roc_auc": 0.9066769123674747,
                 "pr_auc": 0.38310571748763617},
    ),
    "MSD_musicnn": dict(
        out="musicnn_msd.safetensors", tags=MSD_TAGS, dataset="Million Song Dataset (MSD), top-50 Last.fm tags",
        metrics={"dataset": "Million Song Dataset test set", "roc_auc": 0.8801927178090048,
                 "pr_auc": 0.28906431196994925},
    ),
}


def _conv2d(k: np.ndarray) -> np.ndarray:
    """TF conv kernel (kh, kw, in, out) -> torch Conv2d weight (out, in, kh, kw)."""
    return k.transpose(3, 2, 0, 1)


def _conv1d(k: np.ndarray) -> np.ndarray:
    """TF mid-end kernel (7, C_in, 1, out), a 2-D conv spanning all channels -> Conv1d (out, C_in, 7)."""
    return k[:, :, 0, :].transpose(2, 1, 0)


def state_dict_from_tf(tf: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map musicnn's TF variable names onto :class:`MusiCNN`'s state_dict.

    TF1 numbers layers in creation order (``models.build_musicnn``): conv2d / conv2d_1 are the
    7x38 / 7x67 timbral convs, conv2d_2..4 the 128/64/32 temporal convs, conv2d_5..7 the mid-end;
    batch_normalization is the input BN, _1.._8 follow their convs, _9 the pooled features,
    _10 the penultimate dense layer; dense / dense_1 the two fully connected layers.
    """
    convs = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)] + [f"midend.{i}" for i in range(3)]
    bns = ["input_bn"] + [f"{c}.bn" for c in convs] + ["pool_bn", "dense_bn"]
    out: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in tf:
            raise ModelError(f"musicnn checkpoint lacks variable {name!r}; is it a musicnn (not vgg) checkpoint?")
        return tf[name]

    for i, module in enumerate(convs):
        tf_name = "conv2d" if i == 0 else f"conv2d_{i}"
        kernel = get(f"{tf_name}/kernel")
        out[f"{module}.conv.weight"] = _conv2d(kernel) if i < 5 else _conv1d(kernel)
        out[f"{module}.conv.bias"] = get(f"{tf_name}/bias")
    for i, module in enumerate(bns):
        tf_name = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
        out[f"{module}.weight"] = get(f"{tf_name}/gamma")
        out[f"{module}.bias"] = get(f"{tf_name}/beta")
        out[f"{module}.running_mean"] = get(f"{tf_name}/moving_mean")
        out[f"{module}.running_var"] = get(f"{tf_name}/moving_variance")
    for module, tf_name in (("dense", "dense"), ("classifier", "dense_1")):
        out[f"{module}.weight"] = get(f"{tf_name}/kernel").T  # (in, out) -> (out, in)
        out[f"{module}.bias"] = get(f"{tf_name}/bias")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}


def load_tf_musicnn(wheel: str | os.PathLike, model: str) -> MusiCNN:
    """Build :class:`MusiCNN` (eval mode) with the weights of ``model`` read from the wheel."""
    if model not in MODELS:
        raise ModelError(f"unknown musicnn checkpoint {model!r}; known: {', '.join(MODELS)}")
    tf = read_tf_checkpoint(f"musicnn/{model}/", archive=wheel,
                            include=lambda n: not n.endswith(("/Adam", "/Adam_1", "_power")))
    net = MusiCNN(n_tags=len(MODELS[model]["tags"]))
    state = state_dict_from_tf(tf)
    expected = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    if set(state) != expected:
        raise ModelError(f"musicnn weight mapping mismatch: {sorted(set(state) ^ expected)}")
    for k, v in net.state_dict().items():
        if k in state and tuple(v.shape) != tuple(state[k].shape):
            raise ModelError(f"musicnn weight {k!r}: checkpoint shape {tuple(state[k].shape)}, model {tuple(v.shape)}")
    net.load_state_dict(state, strict=False)
    return net.eval()
