"""The source interface: something that writes mono float32 audio into a RingBuffer.

A source owns its producer (a PortAudio callback, or a decoding thread) and reports state
changes (``starting``, ``running``, ``reconnecting``, ``ended``, ``failed``) through a
callback. Blocks are pushed at the source's native rate; downmixing (or picking ``channel``)
happens inside the native ``RingBuffer.push``; resampling happens downstream, on the consumer
side, so the producer stays trivial.
"""
from __future__ import annotations

import abc
import threading
from typing import Callable

from ..ring import RingBuffer

StateCallback = Callable[[str, str], None]  # (state, detail)

STATES = ("starting", "running", "reconnecting", "ended", "failed", "stopped")


class Source(abc.ABC):
    """Base class of audio sources. Subclasses set ``sample_rate``, ``channels``, ``finite``."""

    kind = "source"

    def __init__(self, *, name: str = "main", channel: int | None = None,
                 ring_seconds: float = 8.0) -> None:
        self.name = name
        self.channel = channel
        self.ring_seconds = ring_seconds
        self.sample_rate = 0
        self.channels = 0
        self.finite = False
        self.ring: RingBuffer | None = None
        self.state = "starting"
        self.error: Exception | None = None
        self._on_state: StateCallback | None = None
        self._done = threading.Event()  # producer will push nothing more
        self._stop = threading.Event()

    @property
    def description(self) -> str:
        return self.kind

    def make_ring(self) -> RingBuffer:
        return RingBuffer(max(1024, int(self.ring_seconds * self.sample_rate)))

    def start(self, on_state: StateCallback | None = None) -> RingBuffer:
        """Opens the source and starts producing; returns the ring it writes to."""
        self._on_state = on_state
        self.ring = self.make_ring()
        self._start()
        return self.ring

    @abc.abstractmethod
    def _start(self) -> None: ...

    def stop(self) -> None:
        self._stop.set()
        self._stop_producer()
        self._done.set()
        self.set_state("stopped", "")

    def _stop_producer(self) -> None:  # noqa: B027 - optional hook
        pass

    @property
    def done(self) -> bool:
        """True once the producer has pushed its last sample (end of file, failure, stop)."""
        return self._done.is_set()

    def set_state(self, state: str, detail: str = "") -> None:
        if state == self.state and state != "reconnecting":
            return
        self.state = state
        if self._on_state is not None:
            self._on_state(state, detail)

    def channel_index(self) -> int:
        """The channel argument for ``RingBuffer.push``: -1 downmixes all channels."""
        return -1 if self.channel is None else int(self.channel)

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
