"""The Python API: ``Tagger(model, config).stream(source)``, ``Tagger.tag_file(path)`` and
``Tagger.session()`` for several sources on one engine."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .aggregator import Aggregator
from .config import StreamConfig, parse_silence_gate
from .errors import AudioInputError, ConfigError
from .factory import DEFAULT_MODEL  # the one default model (set in rt_tagger.factory)
from .features import LogMel, LogMelConfig
from .messages import Message, Status

if TYPE_CHECKING:  # pragma: no cover
    from .stream import Session

__all__ = ["DEFAULT_MODEL", "StreamConfig", "TagResult", "Tagger", "parse_hop", "parse_silence_gate"]



@dataclass
class TagResult:
    """Offline tagging of one clip. ``taggram[i]`` are the tag probabilities of chunk ``i``,
    which covers ``times[i, 0]`` .. ``times[i, 1]`` seconds; ``probs`` is the song-level mean.
    ``nonfinite_samples``: NaN/inf input samples that were read as silence."""

    tags: list[str]
    times: np.ndarray
    taggram: np.ndarray
    probs: np.ndarray
    duration: float
    padded: int = 0
    nonfinite_samples: int = 0

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.tags[i], float(self.probs[i])) for i in order]

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """The taggram as CSV: ``start,end,<tag>...`` one row per chunk."""
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["start", "end", *self.tags])
            for (t0, t1), row in zip(self.times, self.taggram):
                w.writerow([f"{t0:.3f}", f"{t1:.3f}", *(f"{p:.5f}" for p in row)])


def parse_hop(hop: str | float, unit_seconds: float, chunk_units: int) -> int:
    """``"chunk"`` (non-overlapping) or seconds -> hop in chunker units (frames or samples)."""
    if isinstance(hop, str) and hop.strip().lower() == "chunk":
        return chunk_units
    try:
        seconds = float(hop)
    except (TypeError, ValueError):
        raise ConfigError(f"--hop must be seconds (e.g. 0.5) or 'chunk', got {hop!r}") from None
    if not seconds > 0:
        raise ConfigError(f"--hop must be > 0 seconds, got {hop!r}")
    return max(1, int(round(seconds / unit_seconds)))


#: Older keyword names of :class:`Tagger` -> :class:`~rt_tagger.config.StreamConfig` fields.
_RENAMED = {"silence_db": "silence_gate"}


class Tagger:
    """A model on an engine, plus the stream settings (:class:`~rt_tagger.config.StreamConfig`).

    ``Tagger(model, config)``; keywords (``hop=``, ``threshold=``, ...) replace single fields
    of ``config`` (``silence_db=`` is the older name of ``silence_gate``). ``model``: registry
    name (``"musicnn.mtat"``), checkpoint path or ``.onnx`` file; it overrides
    ``config.model`` (``None`` in both: :data:`DEFAULT_MODEL`). ``threshold=None`` uses the
    per-tag thresholds stored in the checkpoint when there are any, else 0.5. ``engine``: run
    on this engine instead of creating one for the model (a Ray Serve deployment's, in
    :mod:`rt_tagger.cluster`).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None,
                 config: StreamConfig | None = None, *, engine=None, **settings) -> None:
        from .engines import create_engine

        cfg = (config or StreamConfig()).replace(**{_RENAMED.get(k, k): v for k, v in settings.items()})
        if model is not None:
            cfg = cfg.replace(model=os.fspath(model))
        self.config = cfg
        self.model = cfg.model if cfg.model is not None else DEFAULT_MODEL
        self.engine = engine if engine is not None else create_engine(
            self.model, cfg.backend, threads=cfg.threads, precision=cfg.precision,
            max_batch=cfg.max_batch)
        ck = self.engine.checkpoint
        self.checkpoint = ck
        self.tags = list(ck.tags)
        self.sample_rate = int(ck.sample_rate)
        self.logmel_config = LogMelConfig.from_dict(ck.logmel) if ck.logmel else None
        self.unit_seconds = (self.logmel_config.hop_length / self.sample_rate
                             if self.logmel_config else 1.0 / self.sample_rate)
        self.chunk_units = int(ck.input_length)
        self.hop_units = parse_hop(cfg.hop, self.unit_seconds, self.chunk_units)
        self.threshold = cfg.threshold
        self.make_aggregator()  # validate the settings against the model now, not mid-stream
        self.pipeline = None  # the latest stream(): its taggram (tests, --csv)

    @property
    def hop_seconds(self) -> float:
        return self.hop_units * self.unit_seconds

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_units * self.unit_seconds

    def make_aggregator(self, name: str = "main") -> Aggregator:
        cfg = self.config
        thr = cfg.threshold
        if thr is None:
            thr = np.asarray(self.checkpoint.thresholds, np.float32) if self.checkpoint.thresholds else 0.5
        return Aggregator(self.tags, thresholds=thr, mode=cfg.aggregation, horizon=cfg.horizon,
                          off_ratio=cfg.off_ratio, min_duration=cfg.min_duration, topk=cfg.topk,
                          silence_db=cfg.silence_gate, source=name)

    def status(self, source, t: float = 0.0) -> Status:
        """The ``status`` message of ``source`` (at ``t`` on its timeline)."""
        return Status(source.name, round(t, 3), model=self.model, backend=self.engine.name,
                      backend_reason=self.engine.selection_reason, sample_rate=self.sample_rate,
                      input=source.description, input_rate=source.sample_rate,
                      hop=round(self.hop_seconds, 4), chunk=round(self.chunk_seconds, 4),
                      tags=self.tags)

    def session(self, **kw) -> "Session":
        """An empty :class:`~rt_tagger.stream.Session` on this tagger's engine; add sources
        with ``session.add(source)`` (keywords: ``on_source_error``, ``workers``, ``batch``)."""
        from .stream import Session

        return Session(self, **kw)

    def open_stream(self, source, *, realtime: bool = False, name: str = "main",
                    channel: int | None = None, record: str | None = None, **kw):
        """``(status message, Pipeline)`` for ``source``: a one-source session, not started
        (see :meth:`stream`)."""
        from .pipeline import Pipeline
        from .sources import Source, open_source

        src = source if isinstance(source, Source) else open_source(
            source, name=name, realtime=realtime, channel=channel)
        pipe = Pipeline(self, src, record=record, **kw)
        self.pipeline = pipe
        return self.status(src), pipe

    def stream(self, source, **kw) -> Iterator[Message]:
        """Tag a live or file source; yields its messages (:mod:`rt_tagger.messages`: each
        is its JSON object, a read-only dict), ``status`` first, ``summary`` last.

        ``source``: a :class:`~rt_tagger.sources.Source`, a path/URL, or ``"device:NAME"``;
        keywords: ``realtime``, ``name``, ``channel``, ``record`` (write the audio exactly as
        tagged, at the model's rate, to a WAV file).
        """
        _, pipe = self.open_stream(source, **kw)
        pipe.start()
        try:
            yield from pipe.messages()
        finally:
            pipe.stop()

    def tag_file(self, path: str | os.PathLike[str], *, block_frames: int = 65536) -> TagResult:
        """Offline tagging of a whole file, streamed: decoded ``block_frames`` at a time,
        downmixed, resampled (soxr, streaming) and turned into log-mel frames and chunks block
        by block, so memory stays bounded (the taggram aside) however long the file is. NaN/inf
        samples are read as silence and counted in ``nonfinite_samples``."""
        from .sources import Decoder

        with Decoder(path, block_frames=block_frames) as dec:
            run = _OfflineRun(self, dec.info.sample_rate)
            for block in dec.blocks():
                run.push(block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0])
        if run.samples_in == 0:
            raise AudioInputError(f"{os.fspath(path)} contains no audio (0 samples)")
        return run.finish()

    def tag_array(self, y: np.ndarray, sample_rate: int | None = None) -> TagResult:
        """Tag a mono float32 signal at the model's sample rate (or resample from ``sample_rate``)."""
        if y.ndim != 1:
            raise AudioInputError(f"audio must be 1-D mono, got shape {y.shape}")
        if y.size == 0:
            raise AudioInputError("audio is empty (0 samples)")
        from .sources.decode import check_sample_rate

        if sample_rate is not None:
            check_sample_rate(int(sample_rate), "tag_array", AudioInputError)
        y = np.asarray(y, dtype=np.float32)
        bad = ~np.isfinite(y)
        nonfinite = int(np.count_nonzero(bad))
        if nonfinite:
            y = np.where(bad, np.float32(0), y)
        if sample_rate is not None and sample_rate != self.sample_rate:
            import soxr

            y = soxr.resample(y, sample_rate, self.sample_rate, quality="HQ")
        y = np.ascontiguousarray(y, dtype=np.float32)
        units = LogMel(self.logmel_config)(y) if self.logmel_config else y
        ch = self._chunker()
        chunks = ch.push(units) or ch.finish(self._pad_value(), force=True)
        return self._result(chunks, self._run_chunks(chunks), y.size, nonfinite)

    # ---- offline helpers (tag_array, tag_file) --------------------------------------------------
    def _chunker(self):
        from .chunker import Chunker

        return Chunker(self.chunk_units, self.hop_units,
                       unit_shape=(self.logmel_config.n_mels,) if self.logmel_config else ())

    def _pad_value(self) -> float:
        c = self.logmel_config
        return 0.0 if not c or c.log != "db" else float(10 * np.log10(c.amin))

    def _run_chunks(self, chunks: list) -> np.ndarray:
        x = np.stack([c.data for c in chunks])
        return np.concatenate([self.engine.run(x[i:i + 64], attention=False).probs
                               for i in range(0, x.shape[0], 64)])

    def _result(self, chunks: list, probs: np.ndarray, samples: int, nonfinite: int) -> TagResult:
        us = self.unit_seconds
        times = np.array([(c.start * us, (c.start + self.chunk_units - c.padded) * us) for c in chunks])
        return TagResult(self.tags, times, probs, probs.mean(axis=0), samples / self.sample_rate,
                         padded=chunks[0].padded, nonfinite_samples=nonfinite)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "Tagger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _OfflineRun:
    """:meth:`Tagger.tag_file`'s stages, fed one mono block at a time: non-finite samples to 0,
    soxr streaming resampler, streaming log-mel, chunker; chunks are tagged 64 at a time and
    only their probabilities are kept."""

    BATCH = 64

    def __init__(self, tagger: Tagger, rate: int) -> None:
        self.tagger = tagger
        self.resampler = None
        if rate != tagger.sample_rate:
            import soxr

            self.resampler = soxr.ResampleStream(rate, tagger.sample_rate, 1, dtype="float32",
                                                 quality="HQ")
        cfg = tagger.logmel_config
        self.logmel = LogMel(cfg).stream(nonfinite="raise") if cfg else None
        self.chunker = tagger._chunker()
        self.samples_in = self.samples = self.nonfinite = 0
        self.chunks: list = []  # Chunk objects, data dropped once tagged
        self.waiting: list = []
        self.probs: list[np.ndarray] = []

    def push(self, x: np.ndarray, last: bool = False) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.samples_in += x.size
        bad = ~np.isfinite(x)
        if bad.any():
            self.nonfinite += int(np.count_nonzero(bad))
            x = np.where(bad, np.float32(0), x)
        if self.resampler is not None:
            x = self.resampler.resample_chunk(x, last=last)
        self.samples += x.size
        units = self.logmel.push(x) if self.logmel is not None else x
        if last and self.logmel is not None:
            flushed = self.logmel.flush()
            units = np.concatenate([units, flushed]) if units.size else flushed
        self._add(self.chunker.push(units))

    def _add(self, chunks: list) -> None:
        self.waiting.extend(chunks)
        while len(self.waiting) >= self.BATCH:
            self._tag(self.waiting[: self.BATCH])
            del self.waiting[: self.BATCH]

    def _tag(self, batch: list) -> None:
        self.probs.append(self.tagger._run_chunks(batch))
        for c in batch:
            self.chunks.append(c)
            c.data = None  # keep only index, start and padding

    def finish(self) -> TagResult:
        self.push(np.zeros(0, np.float32), last=True)
        if not self.chunks and not self.waiting:
            self.waiting = self.chunker.finish(self.tagger._pad_value(), force=True)
        if self.waiting:
            self._tag(self.waiting)
            self.waiting = []
        return self.tagger._result(self.chunks, np.concatenate(self.probs), self.samples,
                                   self.nonfinite)
