"""JSON Lines output (the machine-readable contract documented in the README).

Every line is one JSON object with ``type`` (``status``, ``update``, ``event``, ``summary``),
``source`` (the source's name, ``"main"`` by default), ``t`` (seconds of audio since that
source started) and ``time`` (ISO-8601 UTC wall clock when written).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
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
    if kind == "event":
        for key in EVENT_FIELDS.get(msg["event"], ()):
            if key not in msg:
                raise ValueError(f"event {msg['event']}: missing {key!r}")


class JsonlWriter:
    """Writes messages to a file or ``-`` (stdout), one line each, flushed per line."""

    def __init__(self, target: str, *, updates: bool = True) -> None:
        self.target = target
        self.updates = updates
        self._own = target != "-"
        self._f: IO[str] = open(target, "a", buffering=1) if self._own else sys.stdout

    def write(self, msg: dict) -> None:
        if msg.get("type") == "update" and not self.updates:
            return
        line = dict(msg)
        line.setdefault("time", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"))
        self._f.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._own:
            self._f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
