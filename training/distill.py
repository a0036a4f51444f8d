"""Distillation targets: a teacher's probabilities on the student's training chunks.

The student (e.g. spec_att, 256 frames) learns ``sigmoid(teacher)`` with BCE on unlabelled
audio. Alignment: the student chunk covers ``[t0, t0 + D)`` seconds; in teacher frames that is
``[f0, f0 + span)``. The teacher sees ``ceil(span / P)`` patches of its input length ``P``,
evenly spaced from ``f0`` to ``f0 + span - P`` so that together they cover the chunk exactly,
and the target is the **mean of the patch probabilities**. For musicnn (P = 187 frames) under
a 256-frame student that is two patches, starting at ``f0`` and ``f0 + 69``. A teacher longer
than the chunk sees one patch centred on it (clipped to the clip). Validation scores agreement:
the student's song-level output against the teacher's song-level decisions: its probabilities
at the teacher checkpoint's thresholds or, for a teacher without thresholds (musicnn), its
top-:data:`TOP_K` tags of each song. :mod:`.teacher_cache` precomputes the targets on a grid.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from rt_tagger.errors import ConfigError

from .chunks import ChunkSource, model_logmel
from .data.dataset import Prepared
from .evaluate import predict_songs
from .metrics import top_k

__all__ = ["TOP_K", "Teacher", "patch_starts"]

#: song-level decisions of a teacher without thresholds: its top-k tags
TOP_K = 5


def patch_starts(f0: int, span: int, patch: int, n_frames: int) -> np.ndarray:
    """Teacher patch starts covering frames ``[f0, f0 + span)`` (see the module docstring)."""
    if span <= patch:
        s = f0 - (patch - span) // 2
        return np.array([min(max(s, 0), max(n_frames - patch, 0))], np.int64)
    k = math.ceil(span / patch)
    return np.linspace(f0, f0 + span - patch, k).round().astype(np.int64)


class Teacher:
    """A frozen registry model producing targets for a student's chunks."""

    def __init__(self, name: str, data: Prepared, student_logmel, student_length: int,
                 device: torch.device) -> None:
        from rt_tagger.factory import create_model

        self.model = create_model(name).to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        ckpt = self.model.checkpoint
        if ckpt.input_kind != "logmel":
            raise ConfigError(f"teacher {name} must be a log-mel model")
        self.name, self.tags, self.device = name, list(ckpt.tags), device
        self.source = ChunkSource(data, model_logmel(ckpt.arch, self.model), ckpt.input_length)
        self.patch = ckpt.input_length
        t_hop = self.source.hop
        s_hop = student_logmel.hop_length if student_logmel is not None else 1
        self.scale = s_hop / t_hop  # teacher frames per student step
        self.span = max(1, round(student_length * self.scale))
        self.thresholds = np.asarray(ckpt.thresholds) if ckpt.thresholds else None

    @torch.no_grad()
    def targets(self, clips: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """``(b, n_tags)`` mean teacher probabilities over the patches covering each chunk."""
        xs, owner = [], []
        for k, (i, s) in enumerate(zip(clips, starts)):
            n = self.source.store.length(int(i))
            for p in patch_starts(round(int(s) * self.scale), self.span, self.patch, n):
                xs.append(self.source.store.chunk(int(i), int(p), self.patch))
                owner.append(k)
        probs = torch.sigmoid(self.model(torch.from_numpy(np.stack(xs)).to(self.device))).cpu()
        out = np.zeros((len(clips), len(self.tags)), np.float32)
        np.add.at(out, np.array(owner), probs.numpy())
        return out / np.bincount(owner, minlength=len(clips))[:, None]

    def decisions(self, p: np.ndarray) -> np.ndarray:
        """Binary ``(n, n_tags)`` teacher decisions for probabilities ``p``."""
        if self.thresholds is not None:
            return (p >= self.thresholds[None, :]).astype(np.uint8)
        return top_k(p, TOP_K)

    def song_labels(self, clips: np.ndarray, n_chunks: int, dist=None, cache=None) -> np.ndarray:
        """Binary song-level teacher decisions: the reference of the validation metrics.

        ``cache``: an ``.npy`` path; reused when it holds decisions for the same clips.
        """
        if cache is not None and Path(cache).is_file():
            saved = np.load(cache)
            if saved.shape == (len(clips), len(self.tags) + 1) and \
                    np.array_equal(saved[:, 0], clips):
                return saved[:, 1:].astype(np.uint8)
        p = predict_songs(self.model, self.source, clips, n_chunks=n_chunks, device=self.device,
                          dist=dist)
        out = self.decisions(p)
        if cache is not None and (dist is None or dist.main):
            np.save(cache, np.concatenate([np.asarray(clips)[:, None], out], axis=1))
        return out
