"""Datasets: loaders (MTAT, MSD, MTG-Jamendo, a folder of audio, the real-audio corpus), preparation, prepared data."""
from __future__ import annotations

from .common import SPLITS, Clip, DatasetError, DatasetIndex

__all__ = ["DATASETS", "SPLITS", "Clip", "DatasetError", "DatasetIndex", "load_dataset"]

#: dataset name -> default split
DATASETS = {"mtat": "refined", "msd": "won", "jamendo": "split-0", "folder": "all",
            "corpus": "sources"}


def load_dataset(name: str, root, split: str | None = None) -> DatasetIndex:
    """The clips of dataset ``name`` (see :data:`DATASETS`) found under ``root``."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    split = split or DATASETS[name]
    if name == "mtat":
        from .mtat import load_mtat
        return load_mtat(root, split)
    if name == "msd":
        from .msd import load_msd
        return load_msd(root, split)
    if name == "jamendo":
        from .jamendo import load_jamendo
        return load_jamendo(root, split)
    if name == "corpus":
        from .corpus import load_corpus
        return load_corpus(root, split)
    from .folder import load_folder
    return load_folder(root, split)
