"""Tagging models: the registry, the model description and every architecture module
(importing registers them).

``list_models()`` and ``get_arch(name).cfg(**kwargs)`` need nothing but names; building and
loading models is :mod:`rt_tagger.factory`'s (``create_model``, ``resolve_model``). See
:mod:`rt_tagger.models.registry`.
"""
from __future__ import annotations

import importlib

from . import registry
from .cfg import ModelCfg
from .registry import *  # noqa: F403 - the registry API is this package's API

__all__ = [*registry.__all__, "ModelCfg"]

# Architecture modules register themselves on import. A module that does not exist yet is
# skipped; any other import error inside an existing module propagates.
for _mod in ("spec_att", "raw", "q2l", "short_res", "musicnn", "musicnn_vgg", "musicnn_att"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod}":
            raise
del _mod

