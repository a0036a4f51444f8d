"""Teacher outputs computed once per prepared dataset, on a grid the student's chunks land on.

Running the teacher for every training batch costs as much as the student's own step (two
musicnn patches per chunk). The alignment of :mod:`.distill` puts a 256-frame chunk's two
187-frame patches at ``f0`` and ``f0 + 69``; so if chunks start only at multiples of
``stride = 69`` frames, every patch a chunk needs starts on the same grid, and the teacher runs
once per grid point of the whole dataset. In general ``stride = (span - patch) / (k - 1)`` for
``k = ceil(span / patch)`` patches; a teacher that covers the chunk with one patch, or a spacing
that is not a whole number of frames, has no grid and falls back to per-batch targets.

Layout: ``PREPARED/teacher/<teacher slug>/`` with ``meta.json`` (teacher, checkpoint sha256,
stride, patch, tags), ``probs.npy`` ``(grid points, n_tags)`` float32 and ``offsets.npy`` (clip
``i`` owns rows ``offsets[i]:offsets[i + 1]``, patch ``j`` of it starting at frame
``j * stride``). Building is resumable: finished blocks of clips are kept in ``parts/``.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np

from .progress import Progress

__all__ = ["TeacherCache", "build_for", "grid_stride"]

_BLOCK = 32  # clips per resumable part


def grid_stride(span: int, patch: int) -> int | None:
    """Frames between grid points so that every chunk of ``span`` frames starting on the grid
    is covered by grid patches (None when no such grid exists)."""
    if span <= patch:
        return None
    k = math.ceil(span / patch)
    step = (span - patch) / (k - 1)
    return int(step) if step == int(step) and step > 0 else None


class TeacherCache:
    """Grid targets for a :class:`~training.distill.Teacher` (see the module docstring)."""

    def __init__(self, teacher, root: str | Path) -> None:
        self.teacher = teacher
        self.patch, self.span = teacher.patch, teacher.span
        self.stride = grid_stride(self.span, self.patch)
        self.k = math.ceil(self.span / self.patch) if self.stride else 0
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", teacher.name).strip("_")
        self.dir = Path(root) / "teacher" / slug
        self.meta = {"teacher": teacher.name, "sha256": teacher.model.checkpoint.sha256,
                     "stride": self.stride, "patch": self.patch, "tags": teacher.tags}
        self.probs: np.ndarray | None = None
        self.offsets: np.ndarray | None = None

    @property
    def usable(self) -> bool:
        return self.stride is not None and self.teacher.scale == 1.0

    def n_points(self, n_frames: int) -> int:
        return (n_frames - self.patch) // self.stride + 1 if n_frames >= self.patch else 0

    # ---- building
    def load_or_build(self, n_clips: int, *, threads: int = 0, progress: bool = True) -> None:
        meta_path = self.dir / "meta.json"
        if meta_path.is_file() and json.loads(meta_path.read_text()) == self.meta \
                and (self.dir / "probs.npy").is_file():
            self.probs = np.load(self.dir / "probs.npy", mmap_mode="r")
            self.offsets = np.load(self.dir / "offsets.npy")
            if self.offsets.size == n_clips + 1:
                return
        self._build(n_clips, threads, progress)

    def _build(self, n_clips: int, threads: int, progress: bool) -> None:
        from rt_tagger.engines import create_engine

        parts = self.dir / "parts"
        if parts.exists() and (not (parts / "meta.json").is_file()
                               or json.loads((parts / "meta.json").read_text()) != self.meta):
            shutil.rmtree(parts)  # parts of another teacher or grid
        parts.mkdir(parents=True, exist_ok=True)
        (parts / "meta.json").write_text(json.dumps(self.meta))
        device = str(self.teacher.device)
        engine = create_engine(self.teacher.model, threads=threads or None, max_batch=16,
                               attention=False, device="cpu" if device == "cpu" else device)
        store = self.teacher.source.store
        blocks = range(0, n_clips, _BLOCK)
        with Progress(len(blocks), f"teacher {self.teacher.name} on a {self.stride}-frame grid",
                      enabled=progress) as bar:
            for b in blocks:
                path = parts / f"{b:08d}.npy"
                if not path.is_file():
                    rows = [self._clip_probs(engine, store, i)
                            for i in range(b, min(b + _BLOCK, n_clips))]
                    tmp = path.with_name(path.name + ".tmp.npy")
                    np.save(tmp, np.concatenate(rows) if rows else
                            np.zeros((0, len(self.teacher.tags)), np.float32))
                    os.replace(tmp, path)
                bar.update()
        engine.close()
        probs = np.concatenate([np.load(parts / f"{b:08d}.npy") for b in blocks])
        counts = [self.n_points(store.length(i)) for i in range(n_clips)]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if offsets[-1] != probs.shape[0]:
            raise RuntimeError(f"teacher cache {self.dir}: {probs.shape[0]} rows for "
                               f"{offsets[-1]} grid points; delete the directory and rebuild")
        np.save(self.dir / "probs.npy", probs.astype(np.float32))
        np.save(self.dir / "offsets.npy", offsets)
        (self.dir / "meta.json").write_text(json.dumps(self.meta, indent=1))
        shutil.rmtree(parts)
        self.probs, self.offsets = np.load(self.dir / "probs.npy", mmap_mode="r"), offsets

    def _clip_probs(self, engine, store, i: int) -> np.ndarray:
        n = store.length(i)
        m = self.n_points(n)
        if m == 0:
            return np.zeros((0, len(self.teacher.tags)), np.float32)
        clip = np.ascontiguousarray(store.clip(i), np.float32)
        win = np.lib.stride_tricks.sliding_window_view(clip, self.patch, axis=0)
        patches = np.ascontiguousarray(win[::self.stride][:m].transpose(0, 2, 1))
        return engine.run(patches).probs

    # ---- targets
    def targets(self, clips: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Mean teacher probabilities over the grid patches of each chunk (``starts`` on the
        grid); chunks off the grid or past a clip's patches are computed by the teacher."""
        out = np.empty((len(clips), len(self.teacher.tags)), np.float32)
        miss = []
        for k, (i, s) in enumerate(zip(clips, starts)):
            j = int(s) // self.stride
            lo, hi = self.offsets[int(i)], self.offsets[int(i) + 1]
            if int(s) % self.stride == 0 and lo + j + self.k <= hi:
                out[k] = np.mean(self.probs[lo + j:lo + j + self.k], axis=0)
            else:
                miss.append(k)
        if miss:
            out[miss] = self.teacher.targets(np.asarray(clips)[miss], np.asarray(starts)[miss])
        return out


def build_for(teacher: str, data, model: str, model_args: dict, *, threads: int = 0,
              progress: bool = True) -> TeacherCache:
    """Build (or find) the cache a student ``model(**model_args)`` would use on ``data``."""
    import torch

    from rt_tagger.errors import ConfigError
    from rt_tagger.factory import model_cfg

    from .data.dataset import Prepared
    from .distill import Teacher

    data = Prepared(data)
    student = model_cfg(model, **{"n_tags": 1, **model_args})
    t = Teacher(teacher, data, student.logmel, student.input_length, torch.device("cpu"))
    cache = TeacherCache(t, data.root)
    if not cache.usable:
        raise ConfigError(f"teacher {teacher} has no patch grid under {student.input_length}-step "
                          "chunks; distill computes its targets per batch instead")
    cache.load_or_build(len(data.keys), threads=threads, progress=progress)
    return cache
