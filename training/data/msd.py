"""Million Song Dataset with Last.fm top-50 tags and the split of Won et al. (2019/2020).

Expected layout (the split files are those of Won et al.'s ``sota-music-tagging-models``
repository, ``split/msd/``, which come from Lee et al.; the audio are the 7digital previews)::

    ROOT/50tagList.txt            the 50 Last.fm tags, one per line, in label-vector order
    ROOT/filtered_list_train.cP   pickle: list of MSD track ids (train + valid)
    ROOT/filtered_list_test.cP    pickle: list of MSD track ids (test)
    ROOT/msd_id_to_tag_vector.cP  pickle: dict track id -> 50 binary values (any shape)
    ROOT/audio/                   the audio files
    ROOT/audio_paths.tsv          optional: "<track id>\\t<path relative to audio/>" per line
    ROOT/MSD_id_to_7D_id.pkl      optional (with 7D_id_to_path.pkl): the 7digital mapping of
    ROOT/7D_id_to_path.pkl        the split repository, paths like "8/9/8947470.clip.mp3"

A track's file is audio/<path> from audio_paths.tsv, else from the 7digital mapping, else
audio/<track id>.mp3. A few missing previews (at most ``max_missing``, 0.1 %, like the handful
Won et al. skip) are kept in the list and reported by preparation as unreadable; more than
that is an error (probably the wrong directory).

The pickles may be Python 2 pickles (read with latin-1 decoding); pickle runs code from the
file, so only load files you trust. Split: the first 201,680 ids of the train list are
training, the rest validation (as in Won et al.'s loader), the test list is test. Clips shorter
than 29.1 s are dropped during preparation (``min_seconds``), as in the paper (~242k remain).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .common import Clip, DatasetError, DatasetIndex, require_files

__all__ = ["N_TRAIN", "load_msd"]

N_TRAIN = 201_680  # Won et al.: filtered_list_train[:201680] train, the rest valid
MIN_SECONDS = 29.1
_FILES = ["50tagList.txt", "filtered_list_train.cP", "filtered_list_test.cP",
          "msd_id_to_tag_vector.cP", "audio"]
_HINT = "see docs/training.md for the MSD file formats"


def _unpickle(path: Path):
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise DatasetError(f"cannot read {path} as a pickle: {exc}") from None


def _as_str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def load_msd(root: str | Path, split: str = "won", *, n_train: int = N_TRAIN,
             check_audio: bool = True, max_missing: float = 0.001) -> DatasetIndex:
    """List the MSD clips of Won et al.'s split with their top-50 label vectors."""
    root = Path(root)
    if split != "won":
        raise DatasetError(f"unknown MSD split {split!r}; the only split is 'won'")
    require_files(root, _FILES, "Million Song Dataset", _HINT)
    tags = [t.strip() for t in (root / "50tagList.txt").read_text(encoding="utf-8").splitlines()
            if t.strip()]
    if len(tags) != 50:
        raise DatasetError(f"{root / '50tagList.txt'} lists {len(tags)} tags, expected 50")
    train = [_as_str(t) for t in _unpickle(root / "filtered_list_train.cP")]
    test = [_as_str(t) for t in _unpickle(root / "filtered_list_test.cP")]
    vectors = {_as_str(k): v for k, v in _unpickle(root / "msd_id_to_tag_vector.cP").items()}
    paths: dict[str, str] = {}
    index_file = root / "audio_paths.tsv"
    if index_file.is_file():
        for n, line in enumerate(index_file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                parts = line.split("\t")
                if len(parts) != 2:
                    raise DatasetError(f"{index_file}, line {n}: expected 'track id<TAB>path'")
                paths[parts[0].strip()] = parts[1].strip()
    if (root / "MSD_id_to_7D_id.pkl").is_file() and (root / "7D_id_to_path.pkl").is_file():
        to7d = {_as_str(k): _as_str(v) for k, v in _unpickle(root / "MSD_id_to_7D_id.pkl").items()}
        path7d = {_as_str(k): _as_str(v) for k, v in _unpickle(root / "7D_id_to_path.pkl").items()}
        for tid, d7 in to7d.items():
            if d7 in path7d:
                paths.setdefault(tid, path7d[d7])
    clips = []
    for ids, which in ((train[:n_train], "train"), (train[n_train:], "valid"), (test, "test")):
        for tid in ids:
            if tid not in vectors:
                raise DatasetError(f"track {tid} of the {which} list has no tag vector in "
                                   "msd_id_to_tag_vector.cP")
            labels = np.asarray(vectors[tid]).reshape(-1).astype(np.uint8)
            if labels.size != 50:
                raise DatasetError(f"tag vector of {tid} has {labels.size} values, expected 50")
            clips.append(Clip(tid, root / "audio" / paths.get(tid, f"{tid}.mp3"), which, labels))
    if check_audio:
        missing = [c for c in clips if not c.path.is_file()]
        if len(missing) > max_missing * len(clips):
            few = ", ".join(f"{c.key} -> {c.path.relative_to(root)}" for c in missing[:3])
            raise DatasetError(f"Million Song Dataset: {len(missing)} of {len(clips)} audio "
                               f"file(s) missing under {root / 'audio'}, e.g. {few} "
                               f"(more than {max_missing:.1%}; give their locations in audio_paths.tsv)")
    return DatasetIndex("msd", split, tags, clips, root, min_seconds=MIN_SECONDS)
