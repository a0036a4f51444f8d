"""Unlabelled audio for distillation: every audio file under a directory.

Files are sorted by relative path; every ``valid_every``-th file (default 10th) is held out
for validation, the rest is training. Nothing is labelled: the teacher provides the targets.
"""
from __future__ import annotations

from pathlib import Path

from .common import Clip, DatasetError, DatasetIndex

__all__ = ["AUDIO_SUFFIXES", "load_folder"]

AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif")


def load_folder(root: str | Path, split: str = "all", *, valid_every: int = 10) -> DatasetIndex:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"audio folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    clips = [Clip(str(p.relative_to(root)), p, "valid" if i % valid_every == valid_every - 1
                  else "train") for i, p in enumerate(files)]
    return DatasetIndex("folder", split, [], clips, root)
