"""The streaming engine: per-source :class:`FeatureStream` (ring -> taps -> resample ->
log-mel -> chunker), one :class:`InferenceScheduler` (N streams, one engine, W workers, one
batching policy) and the :class:`Session` that owns both. See ``docs/architecture.md``."""
from __future__ import annotations

from .features import FeatureStream
from .scheduler import InferenceScheduler
from .session import Session, drain

__all__ = ["FeatureStream", "InferenceScheduler", "Session", "drain"]
