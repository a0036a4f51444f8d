"""Reading a prepared directory: labels, memory-mapped features, chunks.

``Prepared(path)`` opens what :func:`~.prepare.prepare` wrote. Features are looked up by the
log-mel configuration a model needs (``features_for(model)``); when only raw audio was prepared
the log-mel is computed on the fly by the same native kernel.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rt_tagger.chunker import chunk_starts as live_chunk_starts
from rt_tagger.features import LogMel, LogMelConfig

from .common import SPLITS, DatasetError
from .prepare import FORMAT, RAW, feature_id

__all__ = ["FeatureStore", "Prepared", "chunk_starts", "take"]


class FeatureStore:
    """One prepared feature: ``clip(i)`` is a memory-mapped ``(frames, n_mels)`` or ``(samples,)``.

    ``kind`` is ``"logmel"`` or ``"raw"`` (int16 in the file, float32 from :meth:`clip`).
    ``on_the_fly``: a log-mel computed from the raw audio with ``logmel`` (when the requested
    log-mel was not prepared).
    """

    def __init__(self, root: Path, fid: str, logmel: LogMelConfig | None = None) -> None:
        fdir = root / "features" / fid
        self.spec = json.loads((fdir / "spec.json").read_text())
        self.data = np.load(fdir / "data.npy", mmap_mode="r")
        self.offsets = np.load(fdir / "offsets.npy")
        self.kind = self.spec["kind"]
        self.on_the_fly = logmel is not None
        self.logmel = LogMel(logmel) if logmel is not None else None
        if self.logmel is not None:
            self.kind = "logmel"

    def length(self, i: int) -> int:
        n = int(self.offsets[i + 1] - self.offsets[i])
        return self.logmel.n_frames(n) if (self.logmel is not None and n) else n

    def raw(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i]:self.offsets[i + 1]]

    def clip(self, i: int) -> np.ndarray:
        a = self.raw(i)
        if a.dtype == np.int16:
            a = a.astype(np.float32) / np.float32(32767.0)
        if self.logmel is not None:
            return self.logmel(np.ascontiguousarray(a, np.float32), nonfinite="zero")
        return a

    def chunk(self, i: int, start: int, length: int) -> np.ndarray:
        """``length`` steps from ``start`` (clips shorter than ``length`` are tiled)."""
        if self.logmel is not None:
            return take(self.clip(i), start, length)
        a = self.raw(i)
        if start + length <= a.shape[0]:
            a = a[start:start + length]
            return a.astype(np.float32) / np.float32(32767.0) if a.dtype == np.int16 else \
                np.array(a, np.float32)
        return take(self.clip(i), start, length)


def take(a: np.ndarray, start: int, length: int) -> np.ndarray:
    """``a[start:start + length]`` as float32, the clip tiled when it is too short."""
    if a.shape[0] >= start + length:
        return np.array(a[start:start + length], np.float32)
    reps = -(-(start + length) // max(a.shape[0], 1))
    return np.array(np.concatenate([a] * reps)[start:start + length], np.float32)




def chunk_starts(n: int, length: int, n_chunks: int) -> np.ndarray:
    """Song-level evaluation chunks of a clip of ``n`` steps: with ``n_chunks`` 0, exactly the
    live tagger's non-overlapping chunks (:func:`rt_tagger.chunker.chunk_starts` with hop
    ``length``: one chunk for a clip of at most ``length``, the tail after the last whole chunk
    dropped); otherwise a sample of ``n_chunks`` evenly spaced starts over the clip."""
    if n_chunks <= 0:
        return live_chunk_starts(n, length, length)
    return np.linspace(0, max(n - length, 0), n_chunks).round().astype(np.int64)


class Prepared:
    """A prepared dataset directory (see :mod:`.prepare`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "prepared.json"
        if not meta_path.is_file():
            raise DatasetError(f"{self.root} is not a prepared dataset (no prepared.json); run "
                               "'python -m rt_tagger.training prepare' first")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise DatasetError(f"{meta_path}: unsupported format {self.meta.get('format')!r}")
        if not self.meta["features"]:
            raise DatasetError(f"{self.root}: preparation did not finish; run prepare again "
                               "to resume it")
        self.tags: list[str] = self.meta["tags"]
        self.labels = np.load(self.root / "labels.npy")
        self.sample_rate: int = self.meta["sample_rate"]
        self.splits = np.array([c["split"] for c in self.meta["clips"]])
        self.keys = [c["key"] for c in self.meta["clips"]]

    @property
    def labelled(self) -> bool:
        return bool(self.meta.get("labelled", True)) and len(self.tags) > 0

    def features(self, logmel: LogMelConfig | None) -> FeatureStore:
        """The prepared feature for ``logmel`` (``None``: raw audio), else on the fly from raw."""
        fid = feature_id(logmel)
        if fid in self.meta["features"]:
            return FeatureStore(self.root, fid)
        if logmel is not None and RAW in self.meta["features"]:
            if logmel.sample_rate != self.sample_rate:
                raise DatasetError(f"the model needs {logmel.sample_rate} Hz, {self.root} holds "
                                   f"{self.sample_rate} Hz audio")
            return FeatureStore(self.root, RAW, logmel)
        what = "raw audio" if logmel is None else f"log-mel {logmel}"
        raise DatasetError(f"{self.root} has no {what} prepared ({feature_id(logmel)}); run "
                           "prepare again with --features <model name> (or raw)")

    def indices(self, split: str, stores: list[FeatureStore] = ()) -> np.ndarray:
        """Clips of ``split`` that every store in ``stores`` holds (unreadable ones excluded)."""
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        ok = self.splits == split
        for s in stores:
            ok &= np.diff(s.offsets) > 0
        return np.flatnonzero(ok)
