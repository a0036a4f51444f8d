"""Outputs that fail alone: a sink whose writes fail (a full disk, ``/dev/full``, a lost
terminal) is switched off and reported once, and the run goes on.

:class:`Outputs` hands every message to each of its sinks. The first write error of a sink
(``OSError``, or ``ValueError`` for a file closed under it) disables that sink, prints one
``rt-tagger:`` line on stderr and emits one ``sink_error`` event
(``{"type": "event", "event": "sink_error", "sink": "jsonl", "target": ..., "detail": ...}``)
to the sinks that still work. The sources, the alarms, the HTTP status and the other sinks carry
on; :attr:`Outputs.lost` names what was lost so the command can end with a non-zero status.

A file output given a ``reopen`` factory (JSON Lines and event-log files) is tried again every
``RETRY_S`` seconds while it is off: when the disk has room again it is reopened (appending),
writes resume and one ``sink_recovered`` event says how many messages it missed.

One exception: a ``BrokenPipeError`` on stdout (``rt-tagger ... | head`` after ``head`` quit)
is re-raised, because the reader asked for no more and the run should end (see ``cli.main``).
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from typing import Callable

from ..messages import Event

WRITE_ERRORS = (OSError, ValueError)
RETRY_S = 30.0  # how often an output that failed is tried again (when it can be reopened)


def _t(msg) -> float:
    """The time of the message that met the failure (0 if it has none)."""
    t = msg.get("t", 0.0)
    return t if isinstance(t, (int, float)) and math.isfinite(t) and t >= 0 else 0.0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


#: Free space a file output's disk needs before it is reopened (a few pages: a disk kept full
#: would otherwise flap between sink_error and sink_recovered on every retry).
MIN_FREE_BYTES = 16384


def _has_room(target: str) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(target)) or ".").free >= MIN_FREE_BYTES
    except OSError:
        return True  # cannot tell: let the reopen itself decide


def _mute_stdout() -> None:
    """Points fd 1 at /dev/null so what is still buffered for stdout cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class GuardedSink:
    """One sink (anything with ``handle(msg)`` or ``write(msg)``, optionally ``close()``)."""

    def __init__(self, name: str, sink, target: str = "", *, stdout: bool = False,
                 on_fail: Callable[["GuardedSink", dict], None] | None = None,
                 reopen: Callable[[], object] | None = None, retry_s: float = RETRY_S) -> None:
        self.name, self.sink, self.target = name, sink, target
        self.stdout = stdout  # the sink writes to sys.stdout
        self.on_fail = on_fail  # told with the sink_error / sink_recovered event
        self.reopen, self.retry_s = reopen, retry_s
        self.error: str | None = None
        self.last_error: str | None = None  # kept after a recovery, for the closing line
        self.missed = 0  # messages not written while off (since the last failure)
        self.missed_total = 0
        self.closed = False
        self._finished = False  # close() was called: never reopened again
        self._retry_at = math.inf
        self._deliver: Callable[[dict], object] = getattr(sink, "handle", None) or sink.write

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def status(self) -> dict:
        """What ``/status`` shows for this output (``Monitor.outputs``)."""
        return {"target": self.target, "state": "failed" if self.failed else "ok", "error": self.error,
                "missed": self.missed_total}

    def deliver(self, msg: dict) -> dict | None:
        """Writes ``msg``; returns the ``sink_error`` event if this write failed, or the
        ``sink_recovered`` event if a failed output was reopened and took ``msg``."""
        if self.failed:
            return self._retry(msg)
        if self.closed:
            return None
        try:
            self._deliver(msg)
        except BrokenPipeError:
            if self.stdout:
                raise
            return self._fail(sys.exc_info()[1], msg)
        except WRITE_ERRORS as exc:
            return self._fail(exc, msg)
        return None

    def write(self, msg: dict) -> None:
        """``deliver`` for callers that hold this one sink (the live window's session)."""
        ev = self.deliver(msg)
        if ev is not None and self.on_fail is not None:
            self.on_fail(self, ev)

    def _retry(self, msg: dict) -> dict | None:
        self.missed += 1
        self.missed_total += 1
        if self.reopen is None or self._finished or time.monotonic() < self._retry_at:
            return None
        self._retry_at = time.monotonic() + self.retry_s
        if not _has_room(self.target):  # a disk at its limit would take one line and fail again
            return None
        try:
            sink = self.reopen()
            deliver = getattr(sink, "handle", None) or sink.write
            deliver(msg)
        except WRITE_ERRORS:  # still no room: stay off, try again later
            try:
                getattr(locals().get("sink"), "close", lambda: None)()
            except WRITE_ERRORS:
                pass
            return None
        self.sink, self._deliver = sink, deliver
        missed, self.missed = self.missed - 1, 0  # msg itself got through
        self.missed_total -= 1
        self.error, self.closed = None, False
        return Event(msg.get("source") or "main", _t(msg), "sink_recovered",
                     {"sink": self.name, "target": self.target, "lost": missed,
                      "detail": f"writing again after {missed} lost message(s)"})

    def close(self) -> dict | None:
        """Closes the sink (flushing it); returns the ``sink_error`` event if that failed."""
        self._finished = True
        if self.closed:
            return None
        self.closed = True
        close = getattr(self.sink, "close", None)
        if close is None:
            return None
        try:
            close()
        except WRITE_ERRORS as exc:
            if self.failed:
                return None
            return self._fail(exc, {})
        return None

    def _fail(self, exc: BaseException, msg: dict) -> dict:
        self.error = self.last_error = _describe(exc)
        self._retry_at = time.monotonic() + self.retry_s
        if self.stdout:
            _mute_stdout()
        if not self.closed:
            self.closed = True
            try:
                getattr(self.sink, "close", lambda: None)()
            except WRITE_ERRORS:
                pass
        return Event(msg.get("source") or "main", _t(msg), "sink_error",
                     {"sink": self.name, "target": self.target,
                      "detail": f"{self.error}; this output is off, the run goes on"
                                + (f" (retried every {self.retry_s:g} s)" if self.reopen else "")})


class Outputs:
    """The sinks of one run. ``handle(msg)`` (alias ``write``) fans a message out."""

    def __init__(self, report: Callable[[str], None] | None = None,
                 on_event: Callable[[dict], None] | None = None) -> None:
        self.sinks: list[GuardedSink] = []
        self.events: list[dict] = []  # the sink_error events, in order
        self._report = report or _to_stderr
        self._on_event = on_event  # e.g. the monitor's recent events (shown by /status)

    def add(self, name: str, sink, target: str = "", *, stdout: bool = False,
            reopen: Callable[[], object] | None = None) -> GuardedSink:
        g = GuardedSink(name, sink, target, stdout=stdout, on_fail=self._failed, reopen=reopen)
        self.sinks.append(g)
        return g

    def handle(self, msg: dict) -> None:
        pending = [msg]
        while pending:  # a sink_error reaches every sink that still works
            m = pending.pop(0)
            for g in self.sinks:
                ev = g.deliver(m)
                if ev is not None:
                    self._failed(g, ev)
                    pending.append(ev)

    write = handle

    def close(self) -> None:
        """Closes every sink; a sink whose final flush fails is reported like a write error."""
        for g in self.sinks:
            ev = g.close()
            if ev is not None:
                self._failed(g, ev)
                for other in self.sinks:  # those not closed yet still hear about it
                    if other is not g and not other.closed:
                        other.deliver(ev)

    def _failed(self, g: GuardedSink, ev: dict) -> None:
        self.events.append(ev)
        if self._on_event is not None:
            self._on_event(ev)
        if ev["event"] == "sink_recovered":
            self._report(f"rt-tagger: output {g.name} {g.target}: writing again "
                         f"({ev['lost']} message(s) lost while it was off)")
        else:
            self._report(f"rt-tagger: output {g.name} {g.target}: {g.error}; "
                         "that output is off, the run goes on")

    @property
    def lost(self) -> list[GuardedSink]:
        """Outputs that failed at some point in the run (recovered or not)."""
        return [g for g in self.sinks if g.last_error is not None]

    def lost_line(self) -> str | None:
        """The closing one-line message naming every lost output, or ``None``."""
        if not self.lost:
            return None
        return "rt-tagger: output lost: " + "; ".join(
            f"{g.name} {g.target} ({g.last_error}" + ("" if g.failed else
                                                      f"; recovered, {g.missed_total} message(s) missed")
            + ")" for g in self.lost)


def _to_stderr(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr gone too (terminal closed): nothing more to do
        pass
