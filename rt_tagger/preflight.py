"""Checks a run's options and paths before any model loads or any audio is read.

A long run should not die at its end because the CSV cannot be written, nor run for hours on
``--hop nan``: every value and output path is checked first, and each mistake is one
:class:`~rt_tagger.errors.ConfigError` line (``rt-tagger: ...``, exit status 2).
"""
from __future__ import annotations

import math
import os

from .errors import ConfigError

#: The most inference threads accepted: more only costs memory (a thread pool of 100000
#: grows memory without end) and never speed.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
#: The longest hop accepted, in seconds (one hour).
MAX_HOP = 3600.0


def _number(flag: str, value) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{flag} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, got {value!r}") from None


def _finite(flag: str, value, *, low: float, low_ok: bool, what: str) -> float:
    x = _number(flag, value)
    if not math.isfinite(x) or x < low or (x == low and not low_ok):
        raise ConfigError(f"{flag} must be {what}, got {value!r}")
    return x


def _integer(flag: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{flag} must be an integer {span}, got {value!r}")
    return value


def check_values(o) -> None:
    """The stream options of ``o`` (an ``argparse.Namespace``, CLI flags merged with a config):
    ``threads``, ``hop``, ``topk``, ``threshold``, ``horizon``, ``min_duration``, ``duration``,
    and the monitor's ``workers`` / ``batch`` when present."""
    if getattr(o, "threads", None) is not None:
        _integer("--threads", o.threads, 1, MAX_THREADS)
    hop = getattr(o, "hop", "0.5")
    if not (isinstance(hop, str) and hop.strip().lower() == "chunk"):
        try:
            x = float(hop)
        except (TypeError, ValueError):
            raise ConfigError(f"--hop must be seconds (e.g. 0.5) or 'chunk', got {hop!r}") from None
        if isinstance(hop, bool) or not (math.isfinite(x) and 0 < x <= MAX_HOP):
            raise ConfigError(f"--hop must be seconds in (0, {MAX_HOP:g}] or 'chunk', got {hop!r}")
    _integer("--topk", getattr(o, "topk", 5), 1)
    thr = getattr(o, "threshold", None)
    if thr is not None:
        x = _number("--threshold", thr)
        if not 0.0 < x < 1.0:  # also false for NaN
            raise ConfigError(f"thresholds must be in (0, 1), got --threshold {thr!r}")
    _finite("--horizon", getattr(o, "horizon", 3.0), low=0.0, low_ok=False, what="a finite number of seconds > 0")
    _finite("--min-duration", getattr(o, "min_duration", 1.0), low=0.0, low_ok=True,
            what="a finite number of seconds >= 0")
    if getattr(o, "duration", None) is not None:
        _finite("--duration", o.duration, low=0.0, low_ok=False, what="a finite number of seconds > 0")
    if getattr(o, "workers", None) is not None:
        _integer("--inference-workers", o.workers, 1, MAX_THREADS)
    if getattr(o, "batch", None) is not None:
        _integer("--inference-batch", o.batch, 1)


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
