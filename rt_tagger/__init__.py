"""rt-tagger: streaming, real-time music tagging with a native log-mel core.

The public API is re-exported here lazily, so ``import rt_tagger`` (and ``rt-tagger --help``)
stays fast and heavy dependencies (torch, onnxruntime, Qt) load only when used.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    AudioFileError,
    AudioInputError,
    BackendError,
    ConfigError,
    DeviceError,
    ModelError,
    OverrunError,
    RtTaggerError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "LogMelConfig": "rt_tagger.features",
    "LogMel": "rt_tagger.features",
    "StreamingLogMel": "rt_tagger.features",
    "logmel": "rt_tagger.features",
    "mel_filterbank": "rt_tagger.features",
    "RingBuffer": "rt_tagger.ring",
    "Tagger": "rt_tagger.tagger",
    "TagResult": "rt_tagger.tagger",
    "create_model": "rt_tagger.factory",
    "list_models": "rt_tagger.models",
    "load_checkpoint": "rt_tagger.checkpoint",
    "save_checkpoint": "rt_tagger.checkpoint",
}

__all__ = [
    "AudioFileError",
    "AudioInputError",
    "BackendError",
    "ConfigError",
    "DeviceError",
    "ModelError",
    "OverrunError",
    "RtTaggerError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rt_tagger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
