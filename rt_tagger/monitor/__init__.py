"""Monitoring: several sources in one process on one shared engine, loudness (BS.1770-4),
dead-air and loudness alarms. Outputs live in :mod:`rt_tagger.sinks` (JSONL, OSC, event log,
HTTP status). Imports are lazy so ``rt-tagger --help`` stays instant."""
from __future__ import annotations

_EXPORTS = {
    "AlarmConfig": "alarms", "Alarms": "alarms", "MeterTap": "alarms",
    "MonitorConfig": "config", "load_config": "config",
    "LoudnessMeter": "loudness", "k_weighting": "loudness",
    "Monitor": "runner", "SourceSnapshot": "spec", "SourceSpec": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
