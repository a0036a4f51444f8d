"""Tagging models: the registry, the model description, the pretrained entries and (imported
when an architecture is first needed, since they import torch) every architecture module.

``list_models()`` and ``get_arch(name).cfg(**kwargs)`` need nothing but names; building and
loading models is :mod:`rt_tagger.factory`'s (``create_model``, ``resolve_model``). See
:mod:`rt_tagger.models.registry`. Importing this package does not import torch: the
onnxruntime runtime finds a pretrained model's files by name without it.
"""
from __future__ import annotations

from . import pretrained as _pretrained  # noqa: F401 - registers the shipped models (names only)
from . import registry
from .cfg import ModelCfg
from .registry import *  # noqa: F403 - the registry API is this package's API

__all__ = [*registry.__all__, "ModelCfg"]
