"""``Pipeline``: the one-source :class:`~rt_tagger.stream.Session` that
:meth:`Tagger.open_stream <rt_tagger.tagger.Tagger.open_stream>` returns (kept for callers of
the earlier API). Everything runs in :mod:`rt_tagger.stream`; this only names the one source's
pieces: ``source``, ``aggregator``, ``taggram``, ``snapshot()``.
"""
from __future__ import annotations

from .stream import Session, drain

__all__ = ["Pipeline", "drain"]


class Pipeline(Session):
    """``Pipeline(tagger, source, record=None)``: a session with ``source`` as its only
    source (``--record``: also write the audio as tagged to that WAV file)."""

    def __init__(self, tagger, source, *, record: str | None = None, **kw) -> None:
        super().__init__(tagger, **kw)
        self.stream = self.add(source, record=record)

    @property
    def source(self):
        return self.stream.source

    @property
    def aggregator(self):
        return self.stream.aggregator

    @property
    def taggram(self):
        return self.stream.taggram

    def snapshot(self):
        return self.stream.snapshot()
