"""Sliding windows over a stream of feature frames (or samples, for waveform models).

One chunking convention for everything that cuts a model's input out of audio: the live
tagger (:class:`Chunker`, block by block), ``explain`` (:func:`rt_tagger.interpret.explain_array`)
and training's song-level chunks (``training.data.dataset.chunk_starts``):

* chunk ``k`` starts at unit ``k * hop`` and holds ``length`` units; a stream of ``n`` units
  gets every chunk that fits entirely, :func:`complete_chunks` of them, and the units after
  the last one are dropped (as musicnn and the paper's evaluation do);
* a stream shorter than one chunk gets one chunk at 0, padded at the end with
  :func:`pad_value` (the log-mel of digital silence, or 0 for samples).

:func:`chunk_starts` is that rule for a whole file; :class:`Chunker` applies it as units arrive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .features.config import LogMelConfig

__all__ = ["Chunk", "Chunker", "chunk_starts", "complete_chunks", "pad_value"]


def _check(length: int, hop: int) -> None:
    if length < 1:
        raise ConfigError(f"chunk length must be >= 1, got {length}")
    if not 1 <= hop:
        raise ConfigError(f"chunk hop must be >= 1 unit, got {hop}")


def complete_chunks(n: int, length: int, hop: int) -> int:
    """How many chunks of ``length`` units every ``hop`` fit entirely in ``n`` units."""
    _check(length, hop)
    return 0 if n < length else (n - length) // hop + 1


def chunk_starts(n: int, length: int, hop: int) -> np.ndarray:
    """Start unit of every chunk a file of ``n`` units gets (int64, ascending):
    ``0, hop, 2 hop, ...`` while a whole chunk fits, or ``[0]`` (one padded chunk) when
    ``n < length``. The tail after the last whole chunk is not covered."""
    k = max(complete_chunks(n, length, hop), 1)
    return np.arange(k, dtype=np.int64) * int(hop)


def pad_value(logmel: "LogMelConfig | None") -> float:
    """The unit value a too-short stream is padded with: the log-mel of digital silence
    (``0`` for ``log10p`` and ``none``, ``10 log10(amin)`` for ``db``), ``0`` for samples."""
    if logmel is None or logmel.log != "db":
        return 0.0
    return float(10 * np.log10(logmel.amin))


@dataclass
class Chunk:
    index: int
    start: int  # first unit (frame or sample) of the chunk, counted from the stream start
    data: np.ndarray  # (length, dim) float32, or (length,) for waveforms
    padded: int = 0  # units of padding appended (only for a stream shorter than one chunk)
    level_db: float | None = None  # RMS level of the chunk's audio in dBFS (set by the pipeline)


class Chunker:
    """Emits a chunk of ``length`` units every ``hop`` units, as soon as it is complete.

    ``push(units)`` appends ``(n, dim)`` frames (or ``(n,)`` samples) and returns the chunks that
    became complete. ``finish(pad_value)`` ends the stream: if no chunk was ever emitted (a
    stream shorter than one chunk), the units seen so far are padded with ``pad_value`` into a
    single chunk (``Chunk.padded`` says how much); otherwise trailing units after the last full
    chunk are dropped, as musicnn and the paper's evaluation do. ``finish(pad_value,
    force=True)`` pads even a stream that produced no unit at all (audio too short for one
    frame) into one chunk of ``unit_shape`` units (``(n_mels,)`` for frames, ``()`` for samples).
    """

    def __init__(self, length: int, hop: int, *, unit_shape: tuple[int, ...] = ()) -> None:
        _check(length, hop)
        self.length = length
        self.hop = hop
        self.unit_shape = tuple(unit_shape)
        self._buf: np.ndarray | None = None
        self._buf_start = 0  # unit index of _buf[0]
        self._total = 0
        self.emitted = 0

    @property
    def units_seen(self) -> int:
        return self._total

    @property
    def window(self) -> tuple[np.ndarray | None, int]:
        """``(units kept, index of the first)``: from the next chunk's start to the newest unit."""
        return self._buf, self._buf_start

    def push(self, units: np.ndarray) -> list[Chunk]:
        if units.shape[0] == 0:
            return []
        self._buf = units.copy() if self._buf is None else np.concatenate([self._buf, units])
        self._total += units.shape[0]
        out = []
        for k in range(self.emitted, complete_chunks(self._total, self.length, self.hop)):
            start = k * self.hop  # the chunk_starts convention
            lo = start - self._buf_start
            out.append(Chunk(self.emitted, start, np.ascontiguousarray(self._buf[lo : lo + self.length])))
            self.emitted += 1
        drop = self.emitted * self.hop - self._buf_start
        if drop > 0:
            drop = min(drop, self._buf.shape[0])
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return out

    def finish(self, pad_value: float, *, force: bool = False) -> list[Chunk]:
        if self.emitted:
            return []
        if self._buf is None or self._total == 0:
            if not force:
                return []
            self._buf = np.zeros((0, *self.unit_shape), np.float32)
        have = self._buf.shape[0]
        pad_shape = (self.length - have,) + self._buf.shape[1:]
        data = np.concatenate([self._buf, np.full(pad_shape, pad_value, self._buf.dtype)])
        self.emitted = 1
        return [Chunk(0, 0, np.ascontiguousarray(data), padded=self.length - have)]
