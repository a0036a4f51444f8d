"""A rotating JSON Lines event log for long runs.

Writes the ``status`` and ``event`` messages (tag on/off, silence and loudness alarms, source
state changes and restarts, overruns, backend changes) - not the per-chunk updates - one JSON
object per line with an ISO-8601 UTC ``time``. When the file would grow past ``max_bytes`` it
is rotated: ``events.jsonl`` -> ``events.jsonl.1`` -> ... -> ``events.jsonl.<backups>``
(the oldest is deleted).

A line that cannot be written completely (disk full) is removed again and the error raised;
:class:`~rt_tagger.sinks.guard.Outputs` then switches the log off and reports it once.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import threading

from ..errors import ConfigError
from ..sources.decode import redact_all
from .jsonl import append_whole

LOGGED = ("status", "event", "summary")


class EventLog:
    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 10_000_000,
                 backups: int = 5) -> None:
        if max_bytes < 256:
            raise ConfigError(f"event log max_bytes must be >= 256, got {max_bytes}")
        if backups < 0:
            raise ConfigError(f"event log backups must be >= 0, got {backups}")
        self.path = os.fspath(path)
        self.max_bytes, self.backups = int(max_bytes), int(backups)
        self._lock = threading.Lock()
        try:
            self._f = open(self.path, "ab", buffering=0)
        except OSError as exc:
            raise ConfigError(f"cannot open event log {self.path}: {exc.strerror or exc}") from None
        self.rotations = 0

    def write(self, msg: dict) -> None:
        if msg.get("type") not in LOGGED:
            return
        line = redact_all(dict(msg))  # no stream password in a log file
        line.setdefault("time", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"))
        data = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            if self._f.tell() and self._f.tell() + len(data.encode()) > self.max_bytes:
                self._rotate()
            append_whole(self._f.fileno(), data.encode(), rollback=True)  # whole lines only

    handle = write

    def _rotate(self) -> None:
        self._f.close()
        if self.backups == 0:
            os.remove(self.path)
        else:
            for i in range(self.backups - 1, 0, -1):
                src = f"{self.path}.{i}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        self._f = open(self.path, "ab", buffering=0)
        self.rotations += 1

    def close(self) -> None:
        with self._lock:
            self._f.close()

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
