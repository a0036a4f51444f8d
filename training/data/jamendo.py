"""MTG-Jamendo autotagging top-50 from the dataset's split TSV files.

Expected layout (files from the ``mtg-jamendo-dataset`` repository, audio from its download
script)::

    ROOT/autotagging_top50tags-train.tsv        or ROOT/data/splits/<split>/autotagging_top50tags-*.tsv
    ROOT/autotagging_top50tags-validation.tsv
    ROOT/autotagging_top50tags-test.tsv
    ROOT/audio/<PATH>                            PATH column of the TSVs, e.g. 14/1214.mp3

Each TSV has a header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS`` and one track per
line, its tags (``genre---rock``, ``mood/theme---happy``, ``instrument---piano``) in the
tab-separated columns from TAGS on. The tag list is the sorted union of the three files
(50 tags for the official files). ``split`` names the split folder (``split-0`` ... ``split-4``).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .common import Clip, DatasetError, DatasetIndex

__all__ = ["load_jamendo"]

_PARTS = (("train", "train"), ("validation", "valid"), ("test", "test"))
_HINT = "take them from mtg-jamendo-dataset/data/splits/<split>/"


def _tsv_dir(root: Path, split: str) -> Path:
    names = [f"autotagging_top50tags-{p}.tsv" for p, _ in _PARTS]
    cands = [root, root / "data" / "splits" / split, root / "splits" / split, root / split]
    have = [[n for n in names if (c / n).is_file()] for c in cands]
    best = max(range(len(cands)), key=lambda k: len(have[k]))
    if len(have[best]) == len(names):
        return cands[best]
    if not have[best]:
        raise DatasetError(f"MTG-Jamendo: no autotagging_top50tags-*.tsv in {root} nor in "
                           f"{cands[1]}; {_HINT}")
    missing = [n for n in names if n not in have[best]]
    raise DatasetError(f"MTG-Jamendo: missing {', '.join(missing)} in {cands[best]}; {_HINT}")


def load_jamendo(root: str | Path, split: str = "split-0", *, audio_dir: str | Path | None = None,
                 check_audio: bool = True) -> DatasetIndex:
    """List the tracks of the autotagging top-50 split with their label vectors."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"MTG-Jamendo: directory {root} does not exist")
    tsv_dir = _tsv_dir(root, split)
    audio = Path(audio_dir) if audio_dir is not None else root / "audio"
    rows: list[tuple[str, str, str, list[str]]] = []
    for part, name in _PARTS:
        path = tsv_dir / f"autotagging_top50tags-{part}.tsv"
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader, None)
            if not header or header[:4] != ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH"]:
                raise DatasetError(f"{path}: header must start with TRACK_ID ARTIST_ID "
                                   "ALBUM_ID PATH DURATION TAGS")
            for n, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < 6:
                    raise DatasetError(f"{path}, line {n}: needs TRACK_ID ... DURATION and at "
                                       "least one tag")
                rows.append((row[0], row[3], name, [t.strip() for t in row[5:] if t.strip()]))
    tags = sorted({t for *_, ts in rows for t in ts})
    col = {t: i for i, t in enumerate(tags)}
    clips = []
    for tid, rel, name, ts in rows:
        labels = np.zeros(len(tags), np.uint8)
        labels[[col[t] for t in ts]] = 1
        clips.append(Clip(tid, audio / rel, name, labels))
    if check_audio:
        if not audio.is_dir():
            raise DatasetError(f"MTG-Jamendo: audio directory {audio} does not exist "
                               "(download the audio or pass audio_dir)")
        missing = [c for c in clips if not c.path.is_file()]
        if missing:
            few = ", ".join(str(c.path.relative_to(audio)) for c in missing[:3])
            raise DatasetError(f"MTG-Jamendo: {len(missing)} of {len(clips)} audio file(s) "
                               f"missing under {audio}, e.g. {few}")
    return DatasetIndex("jamendo", split, tags, clips, root)
