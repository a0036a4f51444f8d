"""rt-tagger's training package (installed as ``rt_tagger.training``).

Datasets (MagnaTagATune, Million Song Dataset, MTG-Jamendo, a folder of audio) are prepared
into memory-mapped log-mel / raw arrays, models from the registry are trained with Won et al.'s
recipe (or distilled from a teacher), evaluated song-level and exported as self-describing
checkpoints the runtime serves. Command line: ``python -m rt_tagger.training --help``;
guide: ``docs/training.md``.
"""
from __future__ import annotations

from .config import TrainConfig
from .data.prepare import prepare
from .evaluate import evaluate
from .export import export_run
from .train import train  # the function shadows the submodule name on purpose

__all__ = ["TrainConfig", "evaluate", "export_run", "prepare", "train"]
