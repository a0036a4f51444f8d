"""The monitoring config file (TOML): the same content as the command-line options.

.. code-block:: toml

    model = "musicnn.mtat"      # top level: any stream setting (rt_tagger.config.StreamConfig)
    osc = "127.0.0.1:9000"      # and the outputs: jsonl, osc, http, event_log
    event_log = "events.jsonl"
    restart_delay = 30          # seconds before a failed live source is restarted (0-86400)
    event_log_max_bytes = 10_000_000  # rotate the event log at this size (>= 256)
    event_log_backups = 5       # rotated files kept: events.jsonl.1 ... .5 (0-1000)
    cluster = "local"           # Ray (rt-tagger[cluster]): "local" or "ray://HEAD:10001"
    cluster_inference = "actor" # or "serve": one Ray Serve deployment batches every actor's chunks
    cluster_actors = 2          # source actors; cluster_max_restarts = 10, cluster_actor_cpus = 1

    [alarms]                    # defaults for every source
    silence_db = -50
    silence_seconds = 10
    loudness_high = -8          # short-term LUFS; false switches an alarm off
    loudness_low = -36
    loudness_seconds = 10

    [sources]
    studio = "device:USB"       # short form
    [sources.fm]                # long form, with per-source alarm overrides
    input = "url:http://radio.example/stream.mp3"
    silence_seconds = 5
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from ..config import StreamConfig, read_toml
from ..errors import ConfigError
from .alarms import AlarmConfig
from .spec import SourceSpec

#: Top-level keys besides the stream settings (:class:`~rt_tagger.config.StreamConfig`, which
#: checks its own) and the type each must have.
OPTIONS = {
    "jsonl": str, "osc": str, "http": (str, int), "event_log": str, "event_log_max_bytes": int,
    "event_log_backups": int, "restart_delay": (float, int), "quiet": bool,
    # rt_tagger.cluster (Ray): "local" or "ray://HOST:PORT"; "actor" or "serve"
    "cluster": str, "cluster_inference": str, "cluster_actors": int, "cluster_max_restarts": int,
    "cluster_actor_cpus": (float, int),
}
SOURCE_KEYS = {"input": str, "realtime": bool, "channel": int}
#: Numeric options checked for range here: (smallest, largest) allowed value.
RANGES = {"restart_delay": (0, 86400), "event_log_max_bytes": (256, 2**40),
          "event_log_backups": (0, 1000)}


@dataclass
class MonitorConfig:
    """A config file: its sources, the stream settings, the other options, the alarms."""

    sources: list[SourceSpec] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)


def _check(where: str, key: str, value, kind) -> None:
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}: {key} must not be true/false")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")


def check_range(where: str, key: str, value) -> None:
    """A one-line ConfigError unless ``value`` is a finite number within ``RANGES[key]``."""
    lo, hi = RANGES[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"{where}: {key} must be between {lo} and {hi}, got {value!r}")


def _alarm_fields(where: str, table: dict) -> dict:
    out = {}
    for key, value in table.items():
        if key not in AlarmConfig.keys():
            continue
        if key in ("loudness_high", "loudness_low") and value is False:
            out[key] = None
            continue
        _check(where, key, value, (int, float))
        out[key] = float(value)
    return out


def alarms_with(base: AlarmConfig, where: str, **overrides) -> AlarmConfig:
    try:
        return replace(base, **overrides)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: str | os.PathLike[str]) -> MonitorConfig:
    """Reads and checks a monitoring config; every mistake is a one-line ConfigError."""
    path = os.fspath(path)
    data = read_toml(path)
    known = set(OPTIONS) | set(StreamConfig.names()) | {"alarms", "sources"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    cfg = MonitorConfig(stream=StreamConfig.from_toml(data, where=path))
    for key, kind in OPTIONS.items():
        if key in data:
            _check(path, key, data[key], kind)
            if key in RANGES:
                check_range(path, key, data[key])
            cfg.options[key] = data[key]
    if any(key.startswith("cluster") for key in cfg.options):
        import argparse

        from ..config import ClusterSettings

        try:
            ClusterSettings.from_options(argparse.Namespace(**{"cluster": "local", **cfg.options}))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    alarms = data.get("alarms", {})
    if not isinstance(alarms, dict):
        raise ConfigError(f"{path}: [alarms] must be a table")
    bad = sorted(set(alarms) - set(AlarmConfig.keys()))
    if bad:
        raise ConfigError(f"{path}: unknown alarm key(s) {', '.join(bad)} (known: {', '.join(AlarmConfig.keys())})")
    cfg.alarms = alarms_with(AlarmConfig(), f"{path} [alarms]", **_alarm_fields(f"{path} [alarms]", alarms))
    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise ConfigError(f"{path}: [sources] must be a table of NAME = \"KIND:TARGET\"")
    for name, entry in sources.items():
        where = f"{path} [sources.{name}]"
        if isinstance(entry, str):
            entry = {"input": entry}
        if not isinstance(entry, dict) or "input" not in entry:
            raise ConfigError(f"{where}: needs input = \"device:...\", \"file:...\" or \"url:...\"")
        bad = sorted(set(entry) - set(SOURCE_KEYS) - set(AlarmConfig.keys()))
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(bad)}")
        for key, kind in SOURCE_KEYS.items():
            if key in entry:
                _check(where, key, entry[key], kind)
        src_alarms = alarms_with(cfg.alarms, where, **_alarm_fields(where, entry))
        cfg.sources.append(SourceSpec(name, entry["input"], realtime=entry.get("realtime", True),
                                      channel=entry.get("channel"), alarms=src_alarms))
    return cfg
