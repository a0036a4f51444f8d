"""Convert musicnn's VGG baseline (``MTT_vgg``, TensorFlow 1 checkpoint in the PyPI wheel
``musicnn==0.1.0``) into an rt-tagger checkpoint, without TensorFlow.

    python -m rt_tagger.convert.musicnn_tf --wheel musicnn-0.1.0-py3-none-any.whl --out rt_tagger/weights/

writes ``musicnn_vgg_mtat.safetensors`` (:func:`convert_vgg`) with the two musicnn checkpoints.
(The wheel's ``MSD_vgg`` directory holds no checkpoint: musicnn 0.1.0 says "still training".)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from ..models.musicnn import MTT_TAGS
from ..models.musicnn_vgg import MusicnnVGG
from .musicnn_tf import file_sha256, load_wheel_weights, provenance, wheel_model

#: the VGG baseline's checkpoint in the wheel (``musicnn/MTT_vgg/``).
VGG_MODELS = {
    "MTT_vgg": wheel_model("musicnn_vgg_mtat.safetensors", MTT_TAGS, "MagnaTagATune (MTAT), top-50 tags",
                           test_set="MagnaTagATune test set", roc_auc=0.9030268990308291,
                           pr_auc=0.38226768521737713,
                           note="experiment.result prints both as 'AUC:'; ROC-AUC then PR-AUC, the "
                                "order MTT_musicnn's file labels"),
}
N_VALUES = 607_030  # TF's 36 inference variables (kernels, biases, BN parameters and statistics)


def state_dict_from_tf(tf: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map MTT_vgg's TF variable names onto :class:`MusicnnVGG`'s state_dict.

    ``models.vgg`` names its convs ``1CNN``..``5CNN``; TF1 numbers the batch norms in creation
    order: ``batch_normalization`` is the input BN, ``_1``..``_5`` follow the convs; ``dense``
    is the classifier.
    """
    out: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in tf:
            raise ModelError(f"MTT_vgg checkpoint lacks variable {name!r}; is it a musicnn vgg checkpoint?")
        return tf[name]

    for i in range(5):
        out[f"blocks.{i}.conv.weight"] = get(f"{i + 1}CNN/kernel").transpose(3, 2, 0, 1)  # (kh,kw,in,out)
        out[f"blocks.{i}.conv.bias"] = get(f"{i + 1}CNN/bias")
    for i, module in enumerate(["input_bn"] + [f"blocks.{i}.bn" for i in range(5)]):
        tf_name = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
        out[f"{module}.weight"] = get(f"{tf_name}/gamma")
        out[f"{module}.bias"] = get(f"{tf_name}/beta")
        out[f"{module}.running_mean"] = get(f"{tf_name}/moving_mean")
        out[f"{module}.running_var"] = get(f"{tf_name}/moving_variance")
    out["classifier.weight"] = get("dense/kernel").T  # (in, out) -> (out, in); rows already in TF's flatten order
    out["classifier.bias"] = get("dense/bias")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}


def load_tf_vgg(wheel: str | Path, model: str = "MTT_vgg") -> MusicnnVGG:
    """Build :class:`MusicnnVGG` (eval mode) with the weights of ``model`` read from the wheel."""
    if model not in VGG_MODELS:
        raise ModelError(f"unknown musicnn vgg checkpoint {model!r}; known: {', '.join(VGG_MODELS)}")
    return load_wheel_weights(MusicnnVGG(n_tags=len(VGG_MODELS[model]["tags"])), wheel, model,
                              state_dict_from_tf, "musicnn vgg", all_used=True)


def convert_vgg(wheel: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``musicnn_vgg_mtat.safetensors`` into ``out_dir``."""
    from ..checkpoint import save_checkpoint
    from ..features.config import MUSICNN

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ModelError(f"output directory does not exist: {out_dir}")
    wheel_sha = file_sha256(wheel)
    written = []
    for model, spec in VGG_MODELS.items():
        net = load_tf_vgg(wheel, model)
        arch_args = dict(n_tags=net.n_tags, n_mels=net.n_mels, input_length=net.input_length, filters=net.filters)
        written.append(save_checkpoint(
            out_dir / spec["out"], net, arch="musicnn_vgg", arch_args=arch_args, tags=list(spec["tags"]),
            sample_rate=16000, input_kind="logmel", input_length=net.input_length, logmel=MUSICNN,
            provenance=provenance(model, wheel, wheel_sha, spec),
            model_card=f"musicnn's VGG baseline {model} by Pons & Serra (2019), converted from the original "
                       f"TensorFlow weights; {spec['dataset']}. Input: exactly 187 frames (3 s) of "
                       "log10(1 + 10000 * mel).",
        ))
    return written
