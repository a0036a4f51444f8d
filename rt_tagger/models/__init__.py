"""Tagging models: the registry plus every architecture module (importing registers them).

``create_model("spec_att")``, ``create_model("musicnn.mtat")`` or ``create_model("x.safetensors")``;
``list_models()`` for the known names. See :mod:`rt_tagger.models.registry`.
"""
from __future__ import annotations

import importlib

from . import registry
from .registry import *  # noqa: F403 - the registry API is this package's API

__all__ = list(registry.__all__)

# Architecture modules register themselves on import. A module that does not exist yet is
# skipped; any other import error inside an existing module propagates.
for _mod in ("spec_att", "raw", "q2l", "short_res", "musicnn", "musicnn_vgg", "musicnn_att"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod}":
            raise
del _mod
