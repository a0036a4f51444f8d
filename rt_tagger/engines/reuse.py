"""Frame reuse: overlapping chunks of a stream share their frame-stage work.

At the default hop (0.5 s) with 3 s chunks, every log-mel frame is in six chunks. For a model
with a *frame stage* (musicnn's timbral front-end, ~80 % of its work: see
:meth:`rt_tagger.models.musicnn.MusicnnBody.frame_stage`), each frame's stage rows are computed
once per stream and kept; a chunk then needs the stage only for the frames no earlier chunk
covered, plus the rest of the model (``*.reuse.onnx``), whose result equals the whole model on
the chunk (bit for bit on onnxruntime's CPU provider: tests/test_frame_reuse.py).

A stream is any hashable key the caller gives with each chunk's start frame
(:meth:`~rt_tagger.engines.base.Engine.run`'s ``positions``); chunks of one stream come in
order of start, or nearly (two inference workers may run a stream's consecutive chunks at once:
a chunk's length of rows stays kept behind the newest chunk); a gap, or a step back beyond the
kept rows, computes the chunk's rows afresh. Keys are forgotten with :meth:`FrameReuse.forget`,
or the least recently used once there are more than ``max_streams``.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ..errors import BackendError
from .base import run_session

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
        self._streams: collections.OrderedDict[Hashable, _Rows] = collections.OrderedDict()  # LRU
        self._lock = threading.Lock()  # guards the dict; each stream's rows have their own lock
        self.stage_frames = 0  # frames the stage has run on (a measure of the work done)

    def run(self, x: np.ndarray, positions: Sequence[tuple[Hashable, int]],
            attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``x (batch, length, n_mels)`` validated chunks, ``positions[i] = (key, start frame)``
        (one per chunk: :meth:`Engine.run <rt_tagger.engines.base.Engine.run>` checks)."""
        inner = np.stack([self._inner(key, int(start), x[i]) for i, (key, start) in enumerate(positions)])
        names = ["logits", "attention"] if attention and "attention" in self._heads else ["logits"]
        out = run_session(self._head, names, {"features": x, "inner": inner})
        return out[0], (out[1] if len(names) == 2 else None)

    def extend(self, key: Hashable, frames: np.ndarray, first: int, *, min_new: int = 32) -> None:
        """Ahead of the chunks: the rows of ``key``'s frames in ``frames (n, n_mels)`` (stream
        frames ``first .. first + n - 1``) that have their context there and are not kept yet,
        once there are ``min_new`` of them (each call costs ``l + r`` frames of context). A
        stream's feature thread calls this as frames come, so its chunks find their rows made
        (the first chunk too) and the stage runs beside the inference thread."""
        entry = self._entry(key)
        with entry.lock:
            have = entry.end
            if entry.rows is None or have < first + self.left:
                if entry.rows is not None:  # rows a queued chunk may still need: leave them
                    return
                have = first + self.left
            end = first + len(frames) - self.right  # rows possible for frames [have, end)
            if end - have < max(min_new, 1):
                return
            new = self._run_stage(frames[have - self.left - first: end + self.right - first])
            entry.append(have, new, keep=16 * self.length)

    def forget(self, key: Hashable) -> None:
        """Drop a finished stream's rows."""
        with self._lock:
            self._streams.pop(key, None)

    def _entry(self, key: Hashable) -> "_Rows":
        with self._lock:
            entry = self._streams.get(key)
            if entry is None:
                entry = self._streams[key] = _Rows()
                while len(self._streams) > self.max_streams:
                    self._streams.popitem(last=False)
            else:
                self._streams.move_to_end(key)
            return entry

    def _inner(self, key: Hashable, start: int, chunk: np.ndarray) -> np.ndarray:
        """The stage rows of frames ``start + l .. start + length - r - 1``: kept ones where the
        stream's earlier chunks or :meth:`extend` made them, the stage on ``chunk`` for the rest."""
        lo, hi = start + self.left, start + self.length - self.right
        entry = self._entry(key)
        with entry.lock:
            if entry.rows is not None and lo < entry.first:
                # older than the rows kept (a step back): its own rows, the kept ones stay
                return self._run_stage(chunk)
            if entry.rows is None or lo > entry.end:  # nothing to join
                entry.rows, entry.first = None, lo
            # A chunk's length of rows stays before this chunk: the stream's previous chunks
            # may still be in another worker, which reaches here after this one.
            entry.drop_before(lo - self.length)
            if entry.end < hi:  # the new frames need l frames before and r after, all in chunk
                have = entry.end
                entry.append(have, self._run_stage(chunk[have - self.left - start:
                                                         hi + self.right - start]))
            return entry.rows[lo - entry.first: hi - entry.first]

    def _run_stage(self, frames: np.ndarray) -> np.ndarray:
        rows = run_session(self._stage, ["rows"], {"features": np.ascontiguousarray(frames[None])})[0][0]
        self.stage_frames += len(frames)
        return rows


class _Rows:
    """One stream's kept rows: frames ``first .. end - 1``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first = 0
        self.rows: np.ndarray | None = None

    @property
    def end(self) -> int:
        return self.first + (0 if self.rows is None else len(self.rows))

    def append(self, at: int, new: np.ndarray, keep: int | None = None) -> None:
        """Rows of frames ``at ..`` (``at`` is :attr:`end`, or anything when there are none);
        at most ``keep`` rows stay (the newest)."""
        if self.rows is None:
            self.first, self.rows = at, new
        else:
            self.rows = np.concatenate([self.rows, new])
        if keep is not None and len(self.rows) > keep:
            self.drop_before(self.end - keep)

    def drop_before(self, frame: int) -> None:
        if self.rows is not None and frame > self.first:
            self.rows = self.rows[frame - self.first:]
            self.first = frame
