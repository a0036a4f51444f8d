"""The messages a run emits, and their schema (the JSON Lines contract of the README).

Four typed messages: :class:`Status` (once per source, before its audio), :class:`Update`
(one per tagged chunk), :class:`Event` (tag on/off, source state, alarms, input health,
outputs) and :class:`Summary` (once per source, after its last chunk). Each is built once,
complete, by the stage that knows its fields, and never changed afterwards (frozen).

Every message has ``type``, ``source`` (the source's name, ``"main"`` by default) and ``t``
(seconds of audio since that source started; never decreasing within one source).
:meth:`Message.to_json` is the one serialisation, and a message *is* that JSON object as a
read-only ``dict`` (``msg["probs"]``, ``json.dumps(msg)``), so sinks only serialise. :func:`validate_message` checks a JSON object against the schema
(``--jsonl`` output, tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["EVENT_FIELDS", "REQUIRED", "TYPES", "Event", "Message", "Status", "Summary", "Update",
           "validate_message"]

TYPES = ("status", "update", "event", "summary")
#: Keys each message type must carry besides ``type``, ``source`` and ``t``.
REQUIRED = {
    "status": ("model", "backend", "sample_rate", "hop", "chunk"),
    "update": ("probs", "top"),
    "event": ("event",),
    "summary": ("probs", "chunks", "duration"),
}
#: Keys each known event must carry (other events need only ``event``).
EVENT_FIELDS = {
    "tag_on": ("tag", "p"),
    "tag_off": ("tag", "p"),
    "overrun": ("samples",),
    "overload": ("dropped_chunks",),
    "source_state": ("state",),
    # monitoring (rt_tagger.monitor): dead air, loudness, restarts
    "silence_start": ("since", "level_db", "threshold_db"),
    "silence_end": ("silent_for",),
    "loudness_high": ("state", "lufs", "limit"),
    "loudness_low": ("state", "lufs", "limit"),
    "source_restart": ("restarts",),
    # input health (rt_tagger.stream): NaN/inf samples read as silence, audio under one chunk
    "nonfinite_input": ("samples", "since"),
    "short_input": ("detail",),
    # an output that failed (full disk, lost terminal): switched off, reported once
    "sink_error": ("sink", "detail"),
    # a file output that failed and could be reopened (the disk has room again)
    "sink_recovered": ("sink", "lost"),
}
COUNTS = ("nonfinite_samples", "samples_in", "overrun_samples", "dropped_chunks")


def _time(t: float) -> float:
    return round(float(t), 3) if isinstance(t, (int, float)) and math.isfinite(t) and t >= 0 else 0.0


class Message(dict):
    """Base of the four messages: a frozen dataclass that is also its JSON object, as a
    read-only ``dict`` (filled once, on construction; every change raises ``TypeError``)."""

    type: ClassVar[str] = ""
    #: Fields left out of the JSON while they are ``None`` (the others are always there).
    optional: ClassVar[tuple[str, ...]] = ()

    def _fields(self) -> dict[str, Any]:  # the type-specific part, in JSON order
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The JSON object (a new plain ``dict``): ``type``, ``source``, ``t``, then the
        fields; the :attr:`optional` ones only when they are not ``None``."""
        out = {"type": self.type, "source": self.source, "t": _time(self.t)}
        out.update((k, v) for k, v in self._fields().items()
                   if v is not None or k not in self.optional)
        return out

    def __post_init__(self) -> None:
        dict.update(self, self.to_json())

    def _read_only(self, *args: Any, **kw: Any) -> None:
        raise TypeError(f"a {self.type} message is read-only (build a new one)")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


@dataclass(frozen=True, eq=False, repr=False)
class Status(Message):
    """What is being tagged, with what: sent once per source before its first update."""

    type: ClassVar[str] = "status"
    source: str
    t: float
    model: str
    backend: str
    backend_reason: str
    sample_rate: int
    input: str
    input_rate: int
    hop: float
    chunk: float
    tags: list[str]

    def _fields(self) -> dict[str, Any]:
        return {"model": self.model, "backend": self.backend, "backend_reason": self.backend_reason,
                "sample_rate": self.sample_rate, "input": self.input, "input_rate": self.input_rate,
                "hop": self.hop, "chunk": self.chunk, "tags": list(self.tags)}


@dataclass(frozen=True, eq=False, repr=False)
class Update(Message):
    """One tagged chunk: ``t`` its end, ``t_start`` its start (seconds), ``probs`` the
    smoothed probabilities, ``top`` the best ``[tag, p]`` pairs. ``attention``: the [CLS]
    attention pooled into at most 64 cells over the chunk; ``loudness``: the source's meter
    readings (monitoring)."""

    type: ClassVar[str] = "update"
    optional: ClassVar[tuple[str, ...]] = ("level_db", "latency_ms", "attention", "loudness")
    source: str
    t: float
    chunk: int
    t_start: float
    probs: dict[str, float]
    top: list[list]
    silence: bool
    level_db: float | None = None
    latency_ms: float | None = None
    attention: list[float] | None = None
    loudness: dict | None = None

    def _fields(self) -> dict[str, Any]:
        return {"chunk": self.chunk, "t_start": self.t_start, "probs": dict(self.probs),
                "top": [list(x) for x in self.top], "silence": self.silence,
                "level_db": self.level_db, "latency_ms": self.latency_ms,
                "attention": None if self.attention is None else list(self.attention),
                "loudness": self.loudness}


@dataclass(frozen=True, eq=False, repr=False)
class Event(Message):
    """Something that happened at ``t``: ``event`` names it (see :data:`EVENT_FIELDS` for
    the keys each known event carries in ``fields``)."""

    type: ClassVar[str] = "event"
    source: str
    t: float
    event: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [k for k in EVENT_FIELDS.get(self.event, ()) if k not in self.fields]
        if missing:
            raise ValueError(f"event {self.event}: missing {', '.join(missing)}")
        super().__post_init__()

    def _fields(self) -> dict[str, Any]:
        return {"event": self.event, **self.fields}


@dataclass(frozen=True, eq=False, repr=False)
class Summary(Message):
    """The song-level result once a source has ended: mean of every chunk's probabilities,
    the best tags, and the health counters of the run."""

    type: ClassVar[str] = "summary"
    source: str
    t: float
    probs: dict[str, float]
    top: list[list]
    chunks: int
    duration: float
    overrun_samples: int = 0
    input_overflows: int = 0
    samples_in: int = 0
    nonfinite_samples: int = 0
    dropped_chunks: int = 0

    def _fields(self) -> dict[str, Any]:
        return {"probs": dict(self.probs), "top": [list(x) for x in self.top],
                "chunks": self.chunks, "duration": self.duration,
                "overrun_samples": self.overrun_samples, "input_overflows": self.input_overflows,
                "samples_in": self.samples_in, "nonfinite_samples": self.nonfinite_samples,
                "dropped_chunks": self.dropped_chunks}


def validate_message(msg: Any) -> None:
    """Raises ``ValueError`` if ``msg`` (a message or its JSON object) breaks the contract."""
    if isinstance(msg, Message):
        msg = msg.to_json()
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
        for key in COUNTS:
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
