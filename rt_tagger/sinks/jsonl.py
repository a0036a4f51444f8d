"""JSON Lines output (the machine-readable contract documented in the README).

Every line is one message's JSON object (:mod:`rt_tagger.messages`, where the schema lives:
``type``, ``source``, ``t`` and the type's fields) plus ``time``, the ISO-8601 UTC wall clock
when it was written.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import stat
import sys
from typing import IO

from ..messages import validate_message

__all__ = ["JsonlWriter", "append_whole", "validate_message"]


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

    def write(self, msg) -> None:
        if msg.get("type") == "update" and not self.updates:
            return
        line = msg.to_json() if hasattr(msg, "to_json") else dict(msg)
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
