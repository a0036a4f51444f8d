"""rt-tagger's training package (installed as ``rt_tagger.training``).

Datasets (MagnaTagATune, Million Song Dataset, MTG-Jamendo, a folder of audio) are prepared
into memory-mapped log-mel / raw arrays, models from the registry are trained with Won et al.'s
recipe (or distilled from a teacher), evaluated song-level and exported as self-describing
checkpoints the runtime serves. Command line: ``python -m rt_tagger.training --help``;
guide: ``docs/training.md``.
"""
from __future__ import annotations

__all__ = ["TrainConfig", "evaluate", "export_run", "prepare", "train"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from .config import TrainConfig
        return TrainConfig
    if name == "train":
        from .train import train
        return train
    if name == "evaluate":
        from .evaluate import evaluate
        return evaluate
    if name == "export_run":
        from .export import export_run
        return export_run
    if name == "prepare":
        from .data.prepare import prepare
        return prepare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
