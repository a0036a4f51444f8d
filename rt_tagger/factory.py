"""The model factory: a model (with its :class:`~rt_tagger.models.cfg.ModelCfg`) from a name.

``create_model("spec_att")`` builds a fresh architecture, ``create_model("musicnn.mtat")`` or
``create_model("x.safetensors")`` loads weights; ``resolve_model(anything)`` gives
``(model, checkpoint)`` for the engines and the exporters; :data:`DEFAULT_MODEL` is the model
used when none is named. Every model built here carries ``model.cfg`` (and, when built from
weights, ``model.checkpoint``: the description without tensors).

Names come from :mod:`rt_tagger.models.registry`, weights from :mod:`rt_tagger.checkpoint`;
both (and torch) are imported when a function needs them, so importing this module for
:data:`DEFAULT_MODEL` stays instant.
"""
from __future__ import annotations

import importlib.resources
import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .checkpoint import Checkpoint
    from .models.cfg import ModelCfg

__all__ = ["DEFAULT_MODEL", "create_model", "default_logmel", "describe_model", "model_cfg",
           "pretrained_path", "resolve_model", "supports_attention"]

#: The model used when none is named (CLI, Tagger, explain, GUI).
DEFAULT_MODEL = "musicnn_att.mtat"


def pretrained_path(name: str) -> Path:
    """Filesystem path of a pretrained entry's checkpoint (package data ``rt_tagger/weights``)."""
    from .models import registry

    entry = registry.get_pretrained(name)
    res = importlib.resources.files("rt_tagger").joinpath("weights", entry.filename)
    # rt_tagger is installed as a plain directory (wheel or editable), so this is a real path.
    return Path(str(res))


def _looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.endswith(".safetensors") or os.path.isfile(name)


def _name(name: Any) -> str:
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise ModelError(f"model name must be a non-empty string, got {name!r}")
    return name


def _pretrained_checkpoint(name: str, weights: bool = True) -> "Checkpoint":
    from .checkpoint import load_checkpoint
    from .models import registry

    entry = registry.get_pretrained(name)
    path = pretrained_path(entry.name)
    if not path.is_file():
        raise ModelError(f"weights of pretrained model {entry.name!r} are missing: {path} "
                         "(reinstall rt-tagger or pass a checkpoint path)")
    ckpt = load_checkpoint(path, weights=weights)
    if ckpt.arch != entry.arch:
        raise ModelError(f"pretrained model {entry.name!r} should be arch {entry.arch!r} "
                         f"but its checkpoint {path} holds {ckpt.arch!r}")
    return ckpt


def create_model(name: str | os.PathLike[str], pretrained: bool = False, **kwargs: Any) -> "nn.Module":
    """Build a model by architecture name, pretrained name or checkpoint path.

    * architecture (``"spec_att"``): a freshly initialised model in train mode, built with
      ``kwargs``; ``pretrained=True`` loads that architecture's default pretrained entry.
    * pretrained entry (``"musicnn.mtat"``): pretrained is implied.
    * path to a ``.safetensors`` checkpoint.

    Every model gets ``model.cfg`` (:class:`ModelCfg`). Models built from weights are returned
    in eval mode with weights loaded strictly; they also carry ``model.checkpoint``, the
    :class:`~rt_tagger.checkpoint.Checkpoint` description (tags, sample rate, log-mel
    parameters, thresholds, provenance) without its tensors.
    """
    from .checkpoint import load_checkpoint
    from .models import registry

    name = _name(name)
    archs = registry.list_models(pretrained=False)
    if name in registry.list_models(pretrained=True) or (name in archs and pretrained):
        if kwargs:
            raise ModelError(f"pretrained model {name!r} takes no architecture arguments "
                             f"(got {', '.join(sorted(kwargs))}); its checkpoint defines them")
        return _pretrained_checkpoint(name).build_model()
    if name in archs:
        entry = registry.get_arch(name)
        cfg = entry.cfg(**kwargs)  # bad arguments fail here, before anything is built
        model = entry.factory(**kwargs)
        model.cfg = cfg
        return model
    if _looks_like_path(name):
        if kwargs:
            raise ModelError(f"a checkpoint path takes no architecture arguments "
                             f"(got {', '.join(sorted(kwargs))})")
        return load_checkpoint(name).build_model()
    raise ModelError(f"unknown model {name!r}; known models: "
                     f"{', '.join(registry.list_models()) or '(none registered)'} "
                     "(or pass the path of a .safetensors checkpoint)")


def model_cfg(name: str | os.PathLike[str], **kwargs: Any) -> "ModelCfg":
    """The :class:`ModelCfg` :func:`create_model` would attach, without building a network:
    from the architecture's arguments, or read from a pretrained entry's or a path's checkpoint."""
    from .checkpoint import load_checkpoint
    from .models import registry

    name = _name(name)
    if name in registry.list_models(pretrained=False):
        return registry.get_arch(name).cfg(**kwargs)
    if kwargs:
        raise ModelError(f"{name!r} takes no architecture arguments (got "
                         f"{', '.join(sorted(kwargs))}); its checkpoint defines them")
    if name in registry.list_models(pretrained=True):
        return _pretrained_checkpoint(name).cfg
    if _looks_like_path(name):
        return load_checkpoint(name).cfg
    raise ModelError(f"unknown model {name!r}; known models: "
                     f"{', '.join(registry.list_models()) or '(none registered)'}")


def default_logmel(name: str):
    """Recommended log-mel features of an architecture or pretrained entry (None: waveform)."""
    from .models import registry

    if name in registry.list_models(pretrained=True):
        return _pretrained_checkpoint(name).cfg.logmel
    return registry.get_arch(name).cfg().logmel


def describe_model(source: Any) -> "Checkpoint":
    """The checkpoint description (no weights) of what :func:`resolve_model` would load, read
    without torch for a pretrained name or a ``.safetensors`` path (the file is verified,
    checksum included); for anything else it is :func:`resolve_model`'s."""
    from .checkpoint import Checkpoint, load_checkpoint
    from .models import registry

    if isinstance(source, Checkpoint):
        return source.without_weights()
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if name in registry.list_models(pretrained=True):
            return _pretrained_checkpoint(name, weights=False)
        if name.endswith(".safetensors") and os.path.isfile(name):
            return load_checkpoint(name, weights=False)
    elif isinstance(getattr(source, "checkpoint", None), Checkpoint):  # a model built from one
        return source.checkpoint
    return resolve_model(source)[1].without_weights()


def resolve_model(source: Any) -> tuple["nn.Module", "Checkpoint"]:
    """``(model in eval mode, checkpoint description)`` from any way of naming a trained model.

    ``source``: a :class:`Checkpoint`, a model built from one (it carries ``model.checkpoint``),
    a pretrained name (``"musicnn.mtat"``), an architecture name with pretrained weights, or the
    path of a ``.safetensors`` checkpoint.
    """
    import torch

    from .checkpoint import Checkpoint
    from .models import registry

    if isinstance(source, Checkpoint):
        if not source.state_dict:
            raise ModelError("checkpoint has no weights (it is a description only); load it with "
                             "load_checkpoint(path)")
        model = source.build_model()
        return model, model.checkpoint
    if isinstance(source, torch.nn.Module):
        ckpt = getattr(source, "checkpoint", None)
        if not isinstance(ckpt, Checkpoint):
            raise ModelError("model has no checkpoint description (model.checkpoint); build it from "
                             "a checkpoint (load_checkpoint(path).build_model()) or save one first")
        return source.eval(), ckpt
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if name.endswith(".onnx"):
            raise ModelError(f"{name} is an ONNX file; this needs a PyTorch checkpoint "
                             "(.safetensors) or a model name")
        pretrained = name in registry.list_models(pretrained=False)
        model = create_model(name, pretrained=pretrained)
        return model.eval(), model.checkpoint
    raise ModelError(f"cannot use {type(source).__name__} as a model: pass a model name, a "
                     "checkpoint path, a Checkpoint or a model built from one")


def supports_attention(model: "nn.Module") -> bool:
    """True if ``model.forward`` takes ``return_attention`` (and then returns ``(logits, attn)``)."""
    try:
        return "return_attention" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
