"""JSON Lines output (the machine-readable contract documented in the README).

Every line is one JSON object with ``type`` (``status``, ``update``, ``event``, ``summary``),
``source`` (the source's name, ``"main"`` by default), ``t`` (seconds of audio since that
source started) and ``time`` (ISO-8601 UTC wall clock when written).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import stat
import sys
from typing import IO, Any

TYPES = ("status", "update", "event", "summary")
REQUIRED = {
    "status": ("model", "backend", "sample_rate", "hop", "chunk"),
    "update": ("probs", "top"),
    "event": ("event",),
    "summary": ("probs", "chunks", "duration"),
}
EVENT_FIELDS = {
    "tag_on": ("tag", "p"),
    "tag_off": ("tag", "p"),
    "overrun": ("samples",),
    "source_state": ("state",),
    # monitoring (rt_tagger.monitor): dead air, loudness, restarts
    "silence_start": ("since", "level_db", "threshold_db"),
    "silence_end": ("silent_for",),
    "loudness_high": ("state", "lufs", "limit"),
    "loudness_low": ("state", "lufs", "limit"),
    "source_restart": ("restarts",),
    # input health (rt_tagger.pipeline): NaN/inf samples read as silence, audio under one chunk
    "nonfinite_input": ("samples", "since"),
    "short_input": ("detail",),
    # an output that failed (full disk, lost terminal): switched off, reported once
    "sink_error": ("sink", "detail"),
    # a file output that failed and could be reopened (the disk has room again)
    "sink_recovered": ("sink", "lost"),
}


def validate_message(msg: Any) -> None:
    """Raises ``ValueError`` if ``msg`` breaks the contract (used by the tests and by ``--jsonl``)."""
    if not isinstance(msg, dict):
        raise ValueError(f"message is not an object: {msg!r}")
    kind = msg.get("type")
    if kind not in TYPES:
        raise ValueError(f"unknown type {kind!r}")
    if not isinstance(msg.get("source"), str) or not msg["source"]:
        raise ValueError(f"{kind}: missing source")
    t = msg.get("t")
    if not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise ValueError(f"{kind}: bad t {t!r}")
    for key in REQUIRED[kind]:
        if key not in msg:
            raise ValueError(f"{kind}: missing {key!r}")
    if kind in ("update", "summary"):
        probs = msg["probs"]
        if not isinstance(probs, dict) or not probs:
            raise ValueError(f"{kind}: probs must be a non-empty object")
        for tag, p in probs.items():
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{kind}: probability of {tag!r} out of [0, 1]: {p!r}")
    if kind == "update":
        for tag, p in msg["top"]:
            if tag not in msg["probs"] or abs(msg["probs"][tag] - p) > 1e-9:
                raise ValueError("update: top disagrees with probs")
        att = msg.get("attention")
        if att is not None and (not isinstance(att, list) or not att or not all(
                isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in att)):
            raise ValueError("update: attention must be a non-empty list of weights >= 0")
    if kind == "summary":
        for key in ("nonfinite_samples", "samples_in", "overrun_samples", "dropped_chunks"):
            v = msg.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"summary: {key} must be a count >= 0, got {v!r}")
    if kind == "event" and msg["event"] == "nonfinite_input":
        n = msg.get("samples")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"event nonfinite_input: samples must be a count >= 1, got {n!r}")
    if kind == "event":
        for key in EVENT_FIELDS.get(msg["event"], ()):
            if key not in msg:
                raise ValueError(f"event {msg['event']}: missing {key!r}")
        if msg["event"] == "sink_error" and not (isinstance(msg["sink"], str) and msg["sink"]):
            raise ValueError("event sink_error: sink must name the output")


def append_whole(fd: int, data: bytes, *, rollback: bool) -> None:
    """Appends ``data`` to ``fd`` completely or not at all.

    A write that fails half-way (a disk that fills) is undone with ``ftruncate`` when
    ``rollback`` (a regular file opened for appending), so the file never ends in a cut line;
    the error is re-raised.
    """
    start = 0
    if rollback:
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
        except OSError:  # not seekable (a pipe): nothing to undo
            rollback = False
    view = memoryview(data)
    done = 0
    try:
        while done < len(data):
            n = os.write(fd, view[done:])
            if n <= 0:
                raise OSError(28, os.strerror(28))  # ENOSPC: no progress
            done += n
    except BaseException:
        if rollback and done:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
        raise


class JsonlWriter:
    """Writes messages to a file or ``-`` (stdout), one whole line each, flushed per line.

    A file is appended to with unbuffered writes; a line that cannot be written completely
    (disk full) is removed again, so the file never ends in a cut line; a file it created and
    never wrote to is removed on :meth:`close`. Write errors are
    raised: :class:`~rt_tagger.sinks.guard.Outputs` turns them into one ``sink_error``.
    """

    def __init__(self, target: str, *, updates: bool = True) -> None:
        self.target = target
        self.updates = updates
        self._own = target != "-"
        self.created = self._own and not os.path.lexists(target)
        self.lines = 0
        self._f: IO = open(target, "ab", buffering=0) if self._own else sys.stdout
        self._regular = self._own and stat.S_ISREG(os.fstat(self._f.fileno()).st_mode)

    def write(self, msg: dict) -> None:
        if msg.get("type") == "update" and not self.updates:
            return
        line = dict(msg)
        line.setdefault("time", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"))
        data = json.dumps(line, separators=(",", ":")) + "\n"
        if self._own:
            append_whole(self._f.fileno(), data.encode(), rollback=self._regular)
        else:
            self._f.write(data)
            self._f.flush()
        self.lines += 1

    def close(self) -> None:
        """Closes the file; one this writer created and never wrote to (a run that failed
        before its first message) is removed, so no empty file is left behind."""
        if not self._own or self._f.closed:
            return
        self._f.close()
        if self.created and self.lines == 0:
            try:
                if os.path.getsize(self.target) == 0:
                    os.remove(self.target)
            except OSError:
                pass

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
