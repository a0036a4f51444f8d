"""What every dataset loader returns: a list of clips with split and labels, and its errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rt_tagger.errors import AudioFileError

__all__ = ["SPLITS", "Clip", "DatasetError", "DatasetIndex", "require_files"]

SPLITS = ("train", "valid", "test")


class DatasetError(AudioFileError):
    """A dataset directory or prepared directory that is missing files or is inconsistent."""


@dataclass(frozen=True)
class Clip:
    """One audio file of a dataset.

    ``key`` is unique within the dataset (MTAT clip_id, MSD track id, Jamendo track id),
    ``path`` the audio file, ``split`` one of :data:`SPLITS`, ``labels`` a ``(n_tags,)`` uint8
    vector or ``None`` for unlabelled audio (distillation).
    """

    key: str
    path: Path
    split: str
    labels: np.ndarray | None = field(default=None, compare=False)


@dataclass
class DatasetIndex:
    """A dataset as the loaders describe it, before any audio is read.

    ``min_seconds``: clips shorter than this are dropped during preparation (MSD: 29.1 s).
    """

    name: str
    split: str
    tags: list[str]
    clips: list[Clip]
    root: Path
    min_seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {s: sum(c.split == s for c in self.clips) for s in SPLITS}


def require_files(root: Path, names: list[str], what: str, hint: str) -> None:
    """Raise :class:`DatasetError` naming every missing file of ``names`` under ``root``."""
    if not root.is_dir():
        raise DatasetError(f"{what}: directory {root} does not exist ({hint})")
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        raise DatasetError(f"{what}: missing {', '.join(missing)} in {root} ({hint})")
