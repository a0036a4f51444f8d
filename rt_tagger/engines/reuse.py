"""Frame reuse: overlapping chunks of a stream share their frame-stage work.

At the default hop (0.5 s) with 3 s chunks, every log-mel frame is in six chunks. For a model
with a *frame stage* (musicnn's timbral front-end, ~80 % of its work: see
:meth:`rt_tagger.models.musicnn.MusicnnBody.frame_stage`), each frame's stage rows are computed
once per stream and kept; a chunk then needs the stage only for the frames no earlier chunk
covered, plus the rest of the model (``*.reuse.onnx``), whose result equals the whole model on
the chunk (bit for bit on onnxruntime's CPU provider: tests/test_frame_reuse.py).

A stream is any hashable key the caller gives with each chunk's start frame
(:meth:`~rt_tagger.engines.base.Engine.run`'s ``positions``); chunks of one stream must come in
order of start (a gap or a step back just computes the chunk's rows afresh). Keys are
forgotten with :meth:`FrameReuse.forget`, or the least recently used once there are more than
``max_streams``.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ..errors import BackendError

__all__ = ["FrameReuse"]


class FrameReuse:
    """Runs the two halves of a model (``stage``: log-mel stretch -> per-frame rows; ``head``:
    chunk + its rows -> logits[, attention]), two onnxruntime sessions, with a row cache per
    stream. ``context``: ``(l, r)`` frames a row needs before/after its frame; ``length``: the
    chunk length in frames."""

    def __init__(self, stage: Any, head: Any, *, context: tuple[int, int], length: int,
                 max_streams: int = 512) -> None:
        self.left, self.right = int(context[0]), int(context[1])
        self.length = int(length)
        self.inner = self.length - self.left - self.right
        if self.inner < 1:
            raise BackendError(f"frame reuse needs chunks longer than {self.left + self.right} "
                               f"frames, got {self.length}")
        self._stage, self._head = stage, head
        self._heads = [o.name for o in head.get_outputs()]
        self.max_streams = int(max_streams)
        # key -> (first frame of the rows, rows (n, dim)); LRU order
        self._rows: collections.OrderedDict[Hashable, tuple[int, np.ndarray]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()
        self.stage_frames = 0  # frames the stage has run on (a measure of the work saved)

    def run(self, x: np.ndarray, positions: Sequence[tuple[Hashable, int]],
            attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``x (batch, length, n_mels)`` validated chunks, ``positions[i] = (key, start frame)``."""
        if len(positions) != x.shape[0]:
            raise BackendError(f"frame reuse got {len(positions)} positions for {x.shape[0]} chunks")
        inner = np.stack([self._inner(key, int(start), x[i]) for i, (key, start) in enumerate(positions)])
        names = ["logits", "attention"] if attention and "attention" in self._heads else ["logits"]
        try:
            out = self._head.run(names, {"features": x, "inner": inner})
        except Exception as exc:  # onnxruntime's own error types
            raise BackendError(f"onnxruntime failed: {str(exc).strip().splitlines()[0]}") from None
        return out[0], (out[1] if len(names) == 2 else None)

    def forget(self, key: Hashable) -> None:
        """Drop a finished stream's rows."""
        with self._lock:
            self._rows.pop(key, None)

    def _inner(self, key: Hashable, start: int, chunk: np.ndarray) -> np.ndarray:
        """The stage rows of frames ``start + l .. start + length - r - 1``: kept ones where the
        stream's previous chunks made them, the stage on ``chunk`` for the rest."""
        lo, hi = start + self.left, start + self.length - self.right
        with self._lock:
            kept = self._rows.pop(key, None)
        if kept is not None and kept[0] <= lo <= kept[0] + len(kept[1]):
            first, rows = kept
            rows = rows[lo - first:]
            have = lo + len(rows)  # rows exist for frames [lo, have)
            if have < hi:  # the new frames need l frames before and r after them, all in chunk
                new = self._run_stage(chunk[have - self.left - start: hi + self.right - start])
                rows = np.concatenate([rows, new])
        else:
            rows = self._run_stage(chunk)
        rows = rows[: self.inner]
        with self._lock:
            self._rows[key] = (lo, rows)
            while len(self._rows) > self.max_streams:
                self._rows.popitem(last=False)
        return rows

    def _run_stage(self, frames: np.ndarray) -> np.ndarray:
        try:
            rows = self._stage.run(["rows"], {"features": np.ascontiguousarray(frames[None])})[0][0]
        except Exception as exc:
            raise BackendError(f"onnxruntime failed: {str(exc).strip().splitlines()[0]}") from None
        self.stage_frames += len(frames)
        return rows
