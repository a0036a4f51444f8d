"""Lock-free single-producer / single-consumer ring buffer for mono float32 audio.

``RingBuffer(capacity)`` rounds the capacity up to a power of two. The producer (the audio
callback) calls ``push(block, channel=-1)`` with a float32 block shaped ``(frames,)`` or
``(frames, channels)``: 2-D blocks are averaged to mono inside the native push (or one
``channel`` is taken), so the ring always holds mono audio at the capture rate. ``push`` never
allocates, locks or blocks; samples that do not fit are dropped and counted.

The consumer calls ``read(n)`` / ``read_into(out)`` / ``peek(n)`` / ``skip(n)``,
``wait(n, timeout)`` (blocks without the GIL, Ctrl-C interrupts it), and ``take_overrun()``,
which returns and resets the number of samples dropped since the last call, so losses are
always visible on the reader side (``overrun_total``, ``pushed_total``, ``read_total`` give
the totals since construction).
"""
from __future__ import annotations

from ._core import RingBuffer

__all__ = ["RingBuffer"]
