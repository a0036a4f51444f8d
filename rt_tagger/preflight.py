"""Checks a run's output paths before any model loads or any audio is read.

A long run should not die at its end because the CSV cannot be written: every output path is
checked first, and each mistake is one :class:`~rt_tagger.errors.ConfigError` line
(``rt-tagger: ...``, exit status 2). The values (``--hop nan``, ``--threads 0``) are checked
where they are defined, by :class:`~rt_tagger.config.StreamConfig`.
"""
from __future__ import annotations

import os

from .errors import ConfigError

def check_output(flag: str, path: str) -> None:
    """``path`` can be written (created, or appended to) - without leaving anything behind:
    a file created to find out is removed again."""
    if os.path.isdir(path):
        raise ConfigError(f"{flag} {path}: is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {path}: directory {parent} does not exist")
    existed = os.path.lexists(path)
    if existed and not os.path.isfile(path):  # a device or FIFO: opening could block or fail
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{flag} {path}: not writable")
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        os.close(fd)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None
    if not existed:
        try:
            os.remove(path)
        except OSError:
            pass


def check_outputs(o) -> None:
    """Every output path of ``o``: ``--jsonl`` (unless ``-``), ``--csv``, ``--record``,
    ``--event-log``."""
    for flag, key in (("--jsonl", "jsonl"), ("--csv", "csv"), ("--record", "record"),
                      ("--event-log", "event_log")):
        path = getattr(o, key, None)
        if path and not (key == "jsonl" and path == "-"):
            check_output(flag, str(path))
