"""What to monitor: a named source (``NAME=KIND:TARGET``) and what the GUI reads back."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError
from .alarms import AlarmConfig

KINDS = ("device", "file", "url", "loopback")
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # whole name (fullmatch): "a\n" is refused


@dataclass
class SourceSpec:
    """One monitored source: ``name`` and ``target`` (``device:NAME``, ``file:PATH``,
    ``url:URL``, ``loopback:`` for the default output or ``loopback:OUTPUT``). Files are paced
    in real time unless ``realtime`` is False."""

    name: str
    target: str
    realtime: bool = True
    channel: int | None = None
    alarms: AlarmConfig = field(default_factory=AlarmConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            raise ConfigError(f"source name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        kind = self.target.partition(":")[0]
        if kind not in KINDS:
            raise ConfigError(f"source {self.name!r}: {self.target!r} must start with "
                              f"device:, file: or url: (or loopback: for system audio)")

    @property
    def kind(self) -> str:
        return self.target.partition(":")[0]

    @classmethod
    def parse(cls, text: str, **kw) -> "SourceSpec":
        """``NAME=KIND:TARGET`` (the ``--source`` option)."""
        name, eq, target = text.partition("=")
        if not eq or not name.strip() or not target.strip():
            raise ConfigError(f"--source must look like NAME=device:DEV, NAME=file:PATH or "
                              f"NAME=url:URL, got {text!r}")
        return cls(name.strip(), target.strip(), **kw)


@dataclass
class SourceSnapshot:
    """What the GUI and the HTTP status show for one source (a copy, safe from any thread)."""

    name: str
    target: str
    state: str
    restarts: int
    error: str | None
    loudness: dict
    alarms: list[str]
    tags: object | None  # rt_tagger.aggregator.Snapshot of the current pipeline


def check_source_names(sources: list[SourceSpec]) -> None:
    """:class:`ConfigError` if there are no sources or a name is repeated."""
    if not sources:
        raise ConfigError("no sources to monitor")
    names = [s.name for s in sources]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"source names must be unique, repeated: {', '.join(sorted(dup))}")
