"""Stopping a run on a signal: Ctrl-C (SIGINT), ``kill`` / ``systemctl stop`` / ``docker stop``
(SIGTERM) and a closed terminal (SIGHUP) all mean the same thing.

While a run loop is *draining*-aware (inside :func:`draining`), the first signal only sets
:func:`requested`: the loop then ends capture, tags what was captured, writes the summary and
flushes every output (JSON Lines, CSV, event log). A second signal raises
:class:`StopRequested` (a ``KeyboardInterrupt``) and aborts the drain. Outside such a loop
(loading the model, opening a stream) the first signal raises at once: nothing to drain yet.

The exit status is 128 + the first signal's number: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP),
what shells and service managers expect. A process started with SIGINT ignored (``cmd &``
from a script) keeps ignoring it; SIGTERM still stops it cleanly.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

NAMES = ("SIGINT", "SIGTERM", "SIGHUP")


class StopRequested(KeyboardInterrupt):
    """Raised by the handler when a run must stop now; ``signum`` is the first signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_received: list[int] = []
_draining = 0
_old: dict[int, object] = {}


def stop_signals() -> list[int]:
    """The signal numbers this platform has among SIGINT, SIGTERM, SIGHUP."""
    return [getattr(signal, n) for n in NAMES if hasattr(signal, n)]


def _on_signal(signum: int, _frame) -> None:
    _received.append(signum)
    if not _draining or len(_received) > 1:
        raise StopRequested(_received[0])


def install() -> None:
    """Routes the stop signals here (main thread only; a no-op elsewhere). SIGINT stays
    ignored if the process was started with it ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    _received.clear()
    for sig in stop_signals():
        if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        _old[sig] = signal.signal(sig, _on_signal)


def restore() -> None:
    """Puts back the handlers :func:`install` replaced."""
    if threading.current_thread() is not threading.main_thread():
        return
    while _old:
        sig, handler = _old.popitem()
        signal.signal(sig, handler)


@contextlib.contextmanager
def draining() -> Iterator[None]:
    """Inside: the first signal asks the loop to drain (see :func:`requested`) instead of
    raising."""
    global _draining
    _draining += 1
    try:
        if _received:  # a signal came just before the loop started: stop now
            raise StopRequested(_received[0])
        yield
    finally:
        _draining -= 1


def requested() -> int | None:
    """The first stop signal received, or ``None``."""
    return _received[0] if _received else None


def exit_status(default: int = 130) -> int:
    """128 + the first signal's number, or ``default`` if none came (a plain KeyboardInterrupt)."""
    return 128 + _received[0] if _received else default


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr gone (terminal closed)
        pass


def drive(poll, end_input, deliver, *, should_end=None) -> None:
    """The run loop of every terminal run (rt_tagger.run), one source or many.

    Hands each message of ``poll()`` (a message, ``None`` on timeout, ``StopIteration`` at the
    end) to ``deliver``. The first stop signal, or ``should_end(msg)`` turning true (``--duration``),
    calls ``end_input()`` once: capture ends, what was captured drains, the summaries come.
    A second signal aborts the drain; the caller still closes its outputs.
    """
    ending = False
    try:
        with draining():
            while True:
                sig = requested()
                if sig is not None and not ending:
                    ending = True
                    again = "Ctrl-C" if sig == signal.SIGINT else "a second signal"
                    _say(f"rt-tagger: {name(sig)}: stopping, flushing outputs ({again} to abort)")
                    end_input()
                try:
                    msg = poll()
                except StopIteration:
                    return
                if msg is None:
                    continue
                deliver(msg)
                if not ending and should_end is not None and should_end(msg):
                    ending = True
                    end_input()  # drain, tag the rest, then the summary
    except StopRequested:
        _say("rt-tagger: aborted (second signal): closing outputs without draining")


def final_status(outputs, status: int) -> int:
    """A run's exit status: ``status``; 1 if one of ``outputs`` (a ``sinks.Outputs``) was lost;
    128 + the signal after a stop signal. Prints the closing line for each case."""
    line = outputs.lost_line()
    if line:
        _say(line)
    sig = requested()
    if sig is not None:
        _say(f"rt-tagger: interrupted ({name(sig)})")
        return exit_status()
    return 1 if line and status == 0 else status
