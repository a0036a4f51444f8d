"""Tagging models: the registry, the model description and every architecture module
(importing registers them).

``list_models()`` and ``get_arch(name).cfg(**kwargs)`` need nothing but names; building and
loading models is :mod:`rt_tagger.factory`'s (``create_model``, ``resolve_model``). See
:mod:`rt_tagger.models.registry`.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import registry
from .cfg import ModelCfg
from .registry import *  # noqa: F403 - the registry API is this package's API

#: Factory names this package forwards to :mod:`rt_tagger.factory` (imported on first use, so
#: the registry never depends on the factory): ``from rt_tagger.models import create_model``.
FACTORY_NAMES = ("DEFAULT_MODEL", "create_model", "default_logmel", "model_cfg",
                 "pretrained_path", "resolve_model")

__all__ = [*registry.__all__, "ModelCfg", *FACTORY_NAMES]

# Architecture modules register themselves on import. A module that does not exist yet is
# skipped; any other import error inside an existing module propagates.
for _mod in ("spec_att", "raw", "q2l", "short_res", "musicnn", "musicnn_vgg", "musicnn_att"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod}":
            raise
del _mod


def __getattr__(name: str) -> Any:
    if name in FACTORY_NAMES:
        from .. import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
