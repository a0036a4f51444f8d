"""The real-audio corpus that ``python -m rt_tagger.training corpus DEST`` builds (Debian game
soundtracks, music on hold, drum demos, FluidSynth renders of public-domain scores, speech): ``ROOT/manifest.csv`` plus wav files.

Distillation data, so unlabelled (the teacher labels it). Validation and test hold out **whole
sources**, never chunks of a file that also trains:

* real recordings (soundtracks, music on hold, stems, drum demos, speech) are grouped by
  ``source`` (one Debian package, one speech corpus); :data:`HELD_OUT` names the held-out ones;
* score renders and sung clips are grouped by score (``meta``): every rendering of one piece
  stays in one split; a score goes to test or valid by a stable hash of its name (~20 % / ~10 %).

``ground_truth(root)`` returns the manifest's known tags (rendered instruments, drums, speech)
for the instrument evaluation of :mod:`training.compare`.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from .common import Clip, DatasetError, DatasetIndex

__all__ = ["HELD_OUT", "RENDER_KINDS", "ground_truth", "group_of", "load_corpus", "read_manifest",
           "split_of"]

#: Whole sources held out from training, picked to span the corpus' styles.
HELD_OUT = {
    "test": ("supertuxkart", "widelands", "blobwars", "asterisk_moh", "fof_sectoid", "flare",
             "pingus", "drascula", "openclonk", "asterisk_fr", "festival"),
    "valid": ("hedgewars", "singularity", "marsshooter", "xmoto", "asterisk_it"),
}
RENDER_KINDS = ("midi_render",)
# split by score: a piece's renders and its sung version stay together
_SCORE_SOURCES = ("music21+fluidsynth", "music21+timidity", "sung_world")


def read_manifest(root: str | Path) -> list[dict[str, str]]:
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise DatasetError(f"corpus {root}: no manifest.csv (build it with "
                           "python -m rt_tagger.training corpus DEST, see docs/training.md)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0] or "source" not in rows[0]:
        raise DatasetError(f"{path}: not a corpus manifest (needs path and source columns)")
    return rows


def group_of(row: dict[str, str]) -> str:
    """The unit a split keeps together: a score for renders, else the source."""
    if row["source"] in _SCORE_SOURCES and row.get("meta"):
        return "score:" + row["meta"]
    return row["source"]


def split_of(row: dict[str, str]) -> str:
    g = group_of(row)
    if g.startswith("score:"):
        h = int(hashlib.sha1(g.encode()).hexdigest()[:8], 16) % 10
        return "test" if h < 2 else "valid" if h == 2 else "train"
    for split, sources in HELD_OUT.items():
        if row["source"] in sources:
            return split
    return "train"


def load_corpus(root: str | Path, split: str = "sources") -> DatasetIndex:
    if split != "sources":
        raise DatasetError(f"corpus split {split!r}: only 'sources' (whole sources held out)")
    root = Path(root)
    clips = []
    for row in read_manifest(root):
        p = root / row["path"]
        if not p.is_file():
            raise DatasetError(f"corpus {root}: {row['path']} is in the manifest but missing")
        clips.append(Clip(row["path"], p, split_of(row)))
    return DatasetIndex("corpus", split, [], clips, root)


def ground_truth(root: str | Path) -> dict[str, set[str]]:
    """``{manifest path: known tags}`` for rows whose ``tags`` column is ground truth."""
    return {r["path"]: {t for t in r["tags"].split(";") if t} for r in read_manifest(root)
            if r["tags"]}
