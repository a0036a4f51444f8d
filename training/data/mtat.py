"""MagnaTagATune: ``annotations_final.csv`` + mp3 folders ``0`` ... ``f``.

Expected layout (as distributed by the MTAT authors, the three zip parts extracted together)::

    ROOT/annotations_final.csv   tab-separated: clip_id, 188 tag columns (0/1), mp3_path
    ROOT/0/ ... ROOT/f/          the mp3 files; mp3_path is relative to ROOT ("f/xxx.mp3")

Top-50 tags: the 50 most frequent tags of the full annotation file, in decreasing frequency
(the list every paper since Dieleman & Schrauwen 2014 uses; fixed here so a subset of the data
gives the same tag order). Splits, by the first character of ``mp3_path``:

* ``folder``: 0-b train, c valid, d-f test, every clip (~26k);
* ``refined`` (Lee et al. 2017, Won et al. 2019): the same folders, clips with no top-50 tag
  removed (~21k). This is the split of the Spec_Att paper.
* ``won``: the same split read from Won et al.'s published files instead of derived from the
  CSV: ``ROOT/split/mtat/{train,valid,test}.npy`` (entries ``"<row>\t<mp3_path>"``),
  ``binary.npy`` (label rows) and ``tags.npy`` (the 50 tag names), from the
  ``sota-music-tagging-models`` repository; ``annotations_final.csv`` is then not needed.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from rt_tagger.models.musicnn import MTT_TAGS

from .common import Clip, DatasetError, DatasetIndex, require_files

__all__ = ["ALL_TAGS", "SPLITS", "TOP50", "folder_split", "load_mtat"]

#: The 188 tag columns of annotations_final.csv, in file order (between clip_id and mp3_path).
ALL_TAGS = (
    "no voice", "singer", "duet", "plucking", "hard rock", "world", "bongos", "harpsichord",
    "female singing", "clasical", "sitar", "chorus", "female opera", "male vocal", "vocals",
    "clarinet", "heavy", "silence", "beats", "men", "woodwind", "funky", "no strings", "chimes",
    "foreign", "no piano", "horns", "classical", "female", "no voices", "soft rock", "eerie",
    "spacey", "jazz", "guitar", "quiet", "no beat", "banjo", "electric", "solo", "violins", "folk",
    "female voice", "wind", "happy", "ambient", "new age", "synth", "funk", "no singing",
    "middle eastern", "trumpet", "percussion", "drum", "airy", "voice", "repetitive", "birds",
    "space", "strings", "bass", "harpsicord", "medieval", "male voice", "girl", "keyboard",
    "acoustic", "loud", "classic", "string", "drums", "electronic", "not classical", "chanting",
    "no violin", "not rock", "no guitar", "organ", "no vocal", "talking", "choral", "weird",
    "opera", "soprano", "fast", "acoustic guitar", "electric guitar", "male singer",
    "man singing", "classical guitar", "country", "violin", "electro", "reggae", "tribal", "dark",
    "male opera", "no vocals", "irish", "electronica", "horn", "operatic", "arabic", "lol", "low",
    "instrumental", "trance", "chant", "strange", "drone", "synthesizer", "heavy metal", "modern",
    "disco", "bells", "man", "deep", "fast beat", "industrial", "hard", "harp", "no flute",
    "jungle", "pop", "lute", "female vocal", "oboe", "mellow", "orchestral", "viola", "light",
    "echo", "piano", "celtic", "male vocals", "orchestra", "eastern", "old", "flutes", "punk",
    "spanish", "sad", "sax", "slow", "male", "blues", "vocal", "indian", "no singer", "scary",
    "india", "woman", "woman singing", "rock", "dance", "piano solo", "guitars", "no drums",
    "jazzy", "singing", "cello", "calm", "female vocals", "voices", "different", "techno",
    "clapping", "house", "monks", "flute", "not opera", "not english", "oriental", "beat",
    "upbeat", "soft", "noise", "choir", "female singer", "rap", "metal", "hip hop", "quick",
    "water", "baroque", "women", "fiddle", "english",
)

#: Top-50 tags in decreasing frequency: the order of musicnn's and Won et al.'s models, so
#: musicnn's own tag list (read from its wheel) is the single source.
TOP50 = MTT_TAGS

SPLITS = ("folder", "refined", "won")
_HINT = "download the three mp3.zip parts and annotations_final.csv from the MagnaTagATune page"


def folder_split(mp3_path: str) -> str:
    """``train`` for folders 0-b, ``valid`` for c, ``test`` for d-f."""
    folder = mp3_path.split("/", 1)[0].lower()
    if len(folder) != 1 or folder not in "0123456789abcdef":
        raise DatasetError(f"MTAT mp3_path {mp3_path!r} does not start with a folder 0-f")
    return "train" if folder in "0123456789ab" else "valid" if folder == "c" else "test"


def load_mtat(root: str | Path, split: str = "refined", *, check_audio: bool = True) -> DatasetIndex:
    """Read ``annotations_final.csv`` and list the clips of ``split`` with top-50 labels.

    With ``check_audio`` every listed mp3 must exist; the error names the missing folders or
    the first missing files. Empty or corrupt mp3s are found later by preparation.
    """
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"unknown MTAT split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "won":
        return _load_won(root, check_audio)
    require_files(root, ["annotations_final.csv"], "MagnaTagATune", _HINT)
    csv_path = root / "annotations_final.csv"
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows:
        raise DatasetError(f"{csv_path} is empty")
    header = [h.strip().strip('"') for h in rows[0]]
    for col in ("clip_id", "mp3_path"):
        if col not in header:
            raise DatasetError(f"{csv_path}: no {col!r} column; is it the tab-separated "
                               "annotations_final.csv of MagnaTagATune?")
    missing_tags = [t for t in TOP50 if t not in header]
    if missing_tags:
        raise DatasetError(f"{csv_path}: missing top-50 tag column(s): {', '.join(missing_tags)}")
    i_id, i_path = header.index("clip_id"), header.index("mp3_path")
    cols = [header.index(t) for t in TOP50]
    clips: list[Clip] = []
    for n, row in enumerate(rows[1:], start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise DatasetError(f"{csv_path}, line {n}: {len(row)} fields, header has {len(header)}")
        rel = row[i_path].strip().strip('"')
        try:
            labels = np.array([int(row[c].strip().strip('"')) for c in cols], dtype=np.uint8)
        except ValueError:
            raise DatasetError(f"{csv_path}, line {n}: tag values must be 0 or 1") from None
        if split == "refined" and not labels.any():
            continue
        clips.append(Clip(row[i_id].strip().strip('"'), root / rel, folder_split(rel), labels))
    if not clips:
        raise DatasetError(f"{csv_path} lists no clips for split {split!r}")
    if check_audio:
        _check_audio(root, clips)
    return DatasetIndex("mtat", split, list(TOP50), clips, root)


def _check_audio(root: Path, clips: list[Clip]) -> None:
    folders = sorted({c.path.relative_to(root).parts[0] for c in clips})
    absent = [d for d in folders if not (root / d).is_dir()]
    if absent:
        raise DatasetError(f"MagnaTagATune: mp3 folder(s) {', '.join(absent)} missing in {root} "
                           f"({_HINT}; extract all parts into {root})")
    missing = [c.path for c in clips if not c.path.is_file()]
    if missing:
        few = ", ".join(str(p.relative_to(root)) for p in missing[:3])
        raise DatasetError(f"MagnaTagATune: {len(missing)} of {len(clips)} mp3 file(s) listed in "
                           f"annotations_final.csv are missing in {root}, e.g. {few}")


_WON_FILES = ["train.npy", "valid.npy", "test.npy", "binary.npy", "tags.npy"]


def _load_won(root: Path, check_audio: bool) -> DatasetIndex:
    split_dir = root / "split" / "mtat"
    if not split_dir.is_dir() and all((root / f).is_file() for f in _WON_FILES):
        split_dir = root
    require_files(split_dir, _WON_FILES, "MagnaTagATune split of Won et al.",
                  "copy split/mtat/ of the sota-music-tagging-models repository")
    try:
        binary = np.load(split_dir / "binary.npy")
        tags = [str(t) for t in np.load(split_dir / "tags.npy")]
        lists = {s: [str(x) for x in np.load(split_dir / f"{s}.npy")]
                 for s in ("train", "valid", "test")}
    except ValueError as exc:
        raise DatasetError(f"cannot read the split files in {split_dir}: {exc}") from None
    if binary.ndim != 2 or binary.shape[1] != len(tags):
        raise DatasetError(f"{split_dir}/binary.npy has shape {binary.shape}, expected "
                           f"(clips, {len(tags)}) for the {len(tags)} tags of tags.npy")
    clips = []
    for split, entries in lists.items():
        for entry in entries:
            row, sep, rel = entry.partition("\t")
            if not sep or not row.isdigit() or int(row) >= len(binary):
                raise DatasetError(f"{split_dir}/{split}.npy: bad entry {entry!r} (expected "
                                   "'<row of binary.npy>\\t<mp3_path>')")
            clips.append(Clip(rel, root / rel, split, binary[int(row)].astype(np.uint8)))
    if check_audio:
        _check_audio(root, clips)
    return DatasetIndex("mtat", "won", tags, clips, root)
