"""The one training configuration: a flat dataclass, every field a command-line option.

Defaults reproduce Won et al. (2019) Spec_Att on MagnaTagATune; comments say where a value
comes from. ``TrainConfig.add_arguments(parser)`` / ``from_args(ns)`` map fields to
``--field-name`` options (lists take several values, dicts take JSON).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

from rt_tagger.config import DictFields
from rt_tagger.errors import ConfigError

__all__ = ["OPTIMIZERS", "TrainConfig"]

OPTIMIZERS = ("paper", "adam", "sgd")


@dataclass
class TrainConfig(DictFields):
    # --- model and data
    model: str = "spec_att"  # registry architecture name
    model_args: dict = field(default_factory=dict)  # JSON, e.g. {"width": 64, "layers": 1}
    data: str = ""  # prepared directory, or a raw dataset root together with --dataset
    dataset: str = ""  # mtat | msd | jamendo | folder: prepare DATA first into --prepared
    split: str = ""  # dataset split (mtat: refined | folder); empty: the dataset's default
    prepared: str = ""  # where --dataset preparation goes (default: OUT/prepared)
    out: str = "runs/spec_att"  # run directory: checkpoints, log.csv, model.safetensors
    # --- optimisation (Won et al. 2019, section 3.4)
    epochs: int = 200  # not stated in the paper (its Figure 5 runs past epoch 100)
    batch_size: int = 16  # global batch, split over DDP ranks (not stated in the paper)
    accum_steps: int = 1  # micro-batches per step (global batch = batch_size either way)
    optimizer: str = "paper"  # paper: Adam -> reload best -> SGD; or plain adam / sgd
    adam_lr: float = 1e-4  # paper: Adam lr 1e-4, betas 0.9/0.999
    sgd_lr: float = 1e-3  # not in the paper; the authors' code switches to SGD at 1e-3
    switch_epoch: int = 60  # paper: after 60 epochs reload the best weights and switch to SGD
    drop_epochs: list = field(default_factory=lambda: [80, 100])  # paper: lr drops, reload best
    lr_drop: float = 0.1  # factor at each drop (the authors' code: 1e-3 -> 1e-4 -> 1e-5)
    momentum: float = 0.9  # SGD, Nesterov
    weight_decay: float = 1e-4  # SGD only (the authors' code)
    steps_per_epoch: int = 0  # 0: one random chunk of every training clip per epoch
    # --- evaluation
    val_chunks: int = 16  # song-level: mean of this many evenly spaced chunks (0: all)
    eval_batch: int = 32
    # --- distillation (student learns the teacher's probabilities on unlabelled audio)
    teacher: str = ""  # registry name or checkpoint, e.g. musicnn.mtat; empty: labels
    teacher_cache: bool = True  # teacher outputs computed once on a grid of chunk starts
    # --- augmentations, all off by default; waveform ones need prepared raw audio
    aug_gain_db: float = 0.0  # random gain in [-x, +x] dB
    aug_noise_snr: float = 0.0  # >0: add white noise at SNR uniform in [x, x + 20] dB
    aug_mix: float = 0.0  # probability of mixing with another clip (labels: union)
    aug_shift: bool = False  # roll each chunk by a random offset (any input kind)
    # --- machinery
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (DDP picks cuda:LOCAL_RANK)
    amp: bool = True  # float16 autocast + grad scaling, CUDA only
    sync_bn: bool = True  # SyncBatchNorm under DDP on CUDA (gloo/CPU keeps per-rank BN)
    threads: int = 0  # torch CPU threads per process; 0 leaves torch's default
    resume: bool = False  # continue OUT/last.pt (after a crash or Ctrl-C)
    tensorboard: bool = False  # also log to OUT/tensorboard (needs the tensorboard package)
    export: bool = True  # write OUT/model.safetensors from the best epoch at the end
    quiet: bool = False

    KEY_NOUN = "training option"

    def validate(self) -> "TrainConfig":
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"invalid training config: {msg}")

        if self.optimizer not in OPTIMIZERS:
            raise bad(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not self.data:
            raise bad("--data is required (a prepared directory or a dataset root)")
        for name in ("epochs", "batch_size", "accum_steps"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.accum_steps:
            raise bad(f"batch_size {self.batch_size} is not divisible by accum_steps "
                      f"{self.accum_steps}")
        if self.optimizer == "paper":
            marks = [self.switch_epoch, *self.drop_epochs]
            if any(b <= a for a, b in zip(marks, marks[1:])) or self.switch_epoch < 1:
                raise bad(f"need 1 <= switch_epoch < drop_epochs in increasing order, got "
                          f"{self.switch_epoch} and {self.drop_epochs}")
        if not 0 <= self.aug_mix <= 1:
            raise bad(f"aug_mix is a probability, got {self.aug_mix}")
        return self

    # --- command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for f in dataclasses.fields(cls):
            opt = "--" + f.name.replace("_", "-")
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else f.default
            if isinstance(default, bool):
                parser.add_argument(opt, action=argparse.BooleanOptionalAction, default=default)
            elif isinstance(default, list):
                parser.add_argument(opt, type=int, nargs="*", default=default)
            elif isinstance(default, dict):
                parser.add_argument(opt, type=_json_dict, default=default)
            else:
                parser.add_argument(opt, type=type(default), default=default)

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> "TrainConfig":
        return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"width\": 64}'")
    return value
