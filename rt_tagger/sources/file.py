"""File and network-stream sources: a decoding thread feeding the ring.

As fast as the consumer takes it (offline tagging, no sample lost: the producer waits for
room), or paced like a live source with ``realtime=True`` (then a slow consumer causes counted
overruns, as with a device). Network streams reconnect with backoff when they stall or end;
a connection that delivered at least ``RESET_AFTER`` seconds of audio earns a fresh set of
``max_retries``, so a radio that drops now and then is followed for weeks, and its timeline
(the pipeline's sample count) simply goes on. Standard input and FIFOs are finite pipes:
read once at the consumer's pace (unless ``realtime``), never reconnected.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..errors import AudioFileError, AudioInputError
from .base import Source
from .decode import Decoder, is_url, redact

RESET_AFTER = 1.0  # s of audio a reconnection must deliver before the retry count starts over


class FileSource(Source):
    kind = "file"

    def __init__(self, target: str | os.PathLike[str], *, realtime: bool = False,
                 name: str = "main", channel: int | None = None, reconnect: bool | None = None,
                 max_retries: int = 5, ring_seconds: float = 8.0) -> None:
        super().__init__(name=name, channel=channel, ring_seconds=ring_seconds)
        self.target = os.fspath(target)
        self.url = is_url(self.target)
        self._decoder = Decoder(self.target)  # fails now, with a clear message, if unreadable
        self.pipe = self._decoder.pipe  # stdin or a FIFO: finite, cannot be opened twice
        self.kind = "url" if self.url else ("pipe" if self.pipe else "file")
        self.realtime = realtime or self.url  # a network stream arrives in real time anyway
        self.reconnect = (self.url if reconnect is None else reconnect) and not self.pipe
        self.max_retries = max_retries
        self.retries = 0  # reconnection attempts since the last connection that delivered audio
        info = self._decoder.info
        self.sample_rate = info.sample_rate
        self.channels = info.channels
        self.duration = info.duration
        self.finite = not self.url
        if info.frames == 0:
            self._decoder.close()
            raise AudioFileError(f"{self.target} contains no audio (0 samples)")
        if channel is not None and not 0 <= channel < self.channels:
            self._decoder.close()
            raise AudioInputError(f"--channel {channel} requested but {self.target} has "
                                  f"{self.channels} channel(s) (0..{self.channels - 1})")
        self._thread: threading.Thread | None = None
        self.samples_pushed = 0

    @property
    def description(self) -> str:
        return f"{self.kind} {redact(self.target)} ({self.sample_rate} Hz, {self.channels} ch)"

    def make_ring(self):
        # Offline: small ring, producer waits. Realtime: room for jitter of a slow consumer.
        return super().make_ring()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"rt-tagger-decode-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _stop_producer(self) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        decoder = self._decoder
        try:
            while not self._stop.is_set():
                before = self.samples_pushed
                try:
                    self._pump(decoder)  # reports "running" once audio flows
                    if not self.reconnect or self._stop.is_set():
                        self.set_state("ended", "end of stream")
                        return
                    reason = "stream ended"
                except AudioFileError as exc:
                    if not self.reconnect:
                        raise
                    reason = str(exc)
                finally:
                    decoder.close()
                if self.samples_pushed - before >= RESET_AFTER * self.sample_rate:
                    self.retries = 0  # that connection worked: a new drop starts a new count
                self.retries += 1
                if self.retries > self.max_retries:
                    raise AudioFileError(f"{redact(self.target)}: giving up after {self.max_retries} "
                                         f"reconnection attempts ({reason})")
                delay = min(10.0, 0.5 * 2 ** (self.retries - 1))
                self.set_state("reconnecting", f"{reason}; retry {self.retries} in {delay:g} s")
                if self._stop.wait(delay):
                    return
                try:
                    decoder = Decoder(self.target)
                except AudioFileError as exc:
                    reason = str(exc)
                    decoder = _NullDecoder(reason)
        except Exception as exc:  # reported to the pipeline, never lost
            self.error = exc if isinstance(exc, AudioFileError) else AudioFileError(
                redact(f"{self.target}: {type(exc).__name__}: {exc}"))
            self.set_state("failed", str(self.error))
        finally:
            self._done.set()

    def _pump(self, decoder) -> None:
        ring = self.ring
        assert ring is not None
        ch = self.channel_index()
        t0 = time.perf_counter()
        sent = 0
        for block in decoder.blocks():
            if self._stop.is_set():
                return
            if sent == 0:  # only a (re)opened input that delivers audio is "running"
                self.set_state("running", self.description)
            if block.shape[1] != self.channels:  # a stream changed its layout: mix down here
                block = block.mean(axis=1, keepdims=True, dtype=np.float32)
                ch_now = -1
            else:
                ch_now = ch
            block = np.ascontiguousarray(block, dtype=np.float32)
            if self.realtime:
                ahead = sent / self.sample_rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                ring.push(block, ch_now)
            else:
                n = block.shape[0]
                while ring.capacity - ring.available < n:  # wait for room: lose nothing
                    if self._stop.wait(0.002):
                        return
                ring.push(block, ch_now)
            sent += block.shape[0]
            self.samples_pushed += block.shape[0]


class _NullDecoder:
    """Stands in for a stream that could not be reopened, so the retry loop goes on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def blocks(self):
        raise AudioFileError(self.reason)
        yield  # pragma: no cover

    def close(self) -> None:
        pass
