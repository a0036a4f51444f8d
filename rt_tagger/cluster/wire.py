"""Messages across process boundaries: plain JSON dicts on the wire, the typed messages of
:mod:`rt_tagger.messages` again on the driver (the same objects a one-process run yields)."""
from __future__ import annotations

import dataclasses

from ..messages import Event, Message, Status, Summary, Update

_TYPED = {"status": Status, "update": Update, "summary": Summary}
_FIELDS = {kind: [f.name for f in dataclasses.fields(cls)] for kind, cls in _TYPED.items()}
_BASE = ("type", "source", "t", "event")


def to_wire(msg) -> dict:
    """A message as a plain dict (its JSON object)."""
    return msg.to_json() if isinstance(msg, Message) else dict(msg)


def from_wire(d: dict):
    """The typed message of a wire dict (a plain dict if it is not one of the four types)."""
    kind = d.get("type")
    if kind == "event":
        return Event(d["source"], d["t"], d["event"], {k: v for k, v in d.items() if k not in _BASE})
    cls = _TYPED.get(kind)
    if cls is None:
        return dict(d)
    return cls(**{k: d[k] for k in _FIELDS[kind] if k in d})
