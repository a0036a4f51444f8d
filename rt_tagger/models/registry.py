"""Model registry: architectures by name, pretrained checkpoints by name, checkpoints by path.

Architectures register a factory ``fn(**kwargs) -> nn.Module``::

    @register_model("spec_att", logmel=SPEC_ATT_DB)
    def spec_att(**kwargs): ...

Pretrained entries point at a self-describing checkpoint shipped as package data in
``rt_tagger/weights/<filename>`` (see :mod:`rt_tagger.checkpoint`)::

    register_pretrained("musicnn.mtat", arch="musicnn", filename="musicnn_mtat.safetensors")

``create_model(name)`` accepts an architecture name, a pretrained name or a checkpoint path.
"""
from __future__ import annotations

import importlib.resources
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError, ModelError
from ..features.config import LogMelConfig

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "ArchEntry",
    "PretrainedEntry",
    "create_model",
    "default_logmel",
    "get_arch",
    "list_models",
    "pretrained_path",
    "register_model",
    "register_pretrained",
]


@dataclass(frozen=True)
class ArchEntry:
    """A registered architecture: its factory and the log-mel features it expects.

    ``logmel`` is the recommended :class:`LogMelConfig` for spectrogram models (training and
    the runtime compute exactly these features) and ``None`` for waveform models.
    """

    name: str
    factory: Callable[..., "nn.Module"]
    logmel: LogMelConfig | None


@dataclass(frozen=True)
class PretrainedEntry:
    """A pretrained model: architecture name and checkpoint file in ``rt_tagger/weights``."""

    name: str
    arch: str
    filename: str
    description: str = ""


_ARCHS: dict[str, ArchEntry] = {}
_PRETRAINED: dict[str, PretrainedEntry] = {}


def _same_origin(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module re-imported (importlib reload, test collection) registers the "same" factory again.
    key = lambda f: (getattr(f, "__module__", None), getattr(f, "__qualname__", None))  # noqa: E731
    return key(a) == key(b)


def register_model(
    name: str, *, logmel: LogMelConfig | None = None
) -> Callable[[Callable[..., "nn.Module"]], Callable[..., "nn.Module"]]:
    """Decorator registering ``fn(**kwargs) -> nn.Module`` as architecture ``name``.

    ``logmel``: recommended features for a spectrogram model (``None`` for waveform input).
    """
    if not isinstance(name, str) or not name or "/" in name or os.sep in name:
        raise ConfigError(f"invalid model name {name!r}: need a non-empty name without slashes")

    def decorator(fn: Callable[..., "nn.Module"]) -> Callable[..., "nn.Module"]:
        old = _ARCHS.get(name)
        if old is not None and not _same_origin(old.factory, fn):
            raise ModelError(f"model name {name!r} is already registered by {old.factory.__module__}")
        if name in _PRETRAINED:
            raise ModelError(f"model name {name!r} is already a pretrained entry")
        _ARCHS[name] = ArchEntry(name, fn, logmel)
        return fn

    return decorator


def register_pretrained(name: str, *, arch: str, filename: str, description: str = "") -> None:
    """Register pretrained weights ``rt_tagger/weights/<filename>`` for architecture ``arch``.

    The first entry registered for an architecture is its default for
    ``create_model(arch, pretrained=True)``. The file is only opened by :func:`create_model`.
    """
    if not isinstance(name, str) or not name or "/" in name or os.sep in name:
        raise ConfigError(f"invalid pretrained name {name!r}: need a non-empty name without slashes")
    if name in _ARCHS:
        raise ModelError(f"pretrained name {name!r} is already an architecture name")
    entry = PretrainedEntry(name, arch, filename, description)
    old = _PRETRAINED.get(name)
    if old is not None and old != entry:
        raise ModelError(f"pretrained name {name!r} is already registered ({old.filename})")
    _PRETRAINED[name] = entry


def list_models(pretrained: bool | None = None) -> list[str]:
    """Sorted names: architectures (``False``), pretrained entries (``True``) or both (``None``)."""
    if pretrained is None:
        return sorted([*_ARCHS, *_PRETRAINED])
    return sorted(_PRETRAINED if pretrained else _ARCHS)


def _known() -> str:
    return ", ".join(list_models()) or "(none registered)"


def get_arch(name: str) -> ArchEntry:
    """The registered architecture ``name``; :class:`ModelError` listing the known ones if not."""
    entry = _ARCHS.get(name)
    if entry is None:
        raise ModelError(f"unknown architecture {name!r}; known architectures: "
                         f"{', '.join(list_models(pretrained=False)) or '(none registered)'}")
    return entry


def default_logmel(name: str) -> LogMelConfig | None:
    """Recommended log-mel features of an architecture or pretrained entry (None: waveform)."""
    if name in _PRETRAINED:
        from ..checkpoint import load_checkpoint

        return load_checkpoint(pretrained_path(name)).logmel_config
    return get_arch(name).logmel


def pretrained_path(name: str) -> Path:
    """Filesystem path of a pretrained entry's checkpoint (package data ``rt_tagger/weights``)."""
    entry = _PRETRAINED.get(name)
    if entry is None:
        raise ModelError(f"unknown pretrained model {name!r}; known pretrained models: "
                         f"{', '.join(list_models(pretrained=True)) or '(none registered)'}")
    res = importlib.resources.files("rt_tagger").joinpath("weights", entry.filename)
    # rt_tagger is installed as a plain directory (wheel or editable), so this is a real path.
    return Path(str(res))


def _looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.endswith(".safetensors") or os.path.isfile(name)


def create_model(name: str | os.PathLike[str], pretrained: bool = False, **kwargs: Any) -> "nn.Module":
    """Build a model by architecture name, pretrained name or checkpoint path.

    * architecture (``"spec_att"``): a freshly initialised model in train mode, built with
      ``kwargs``; ``pretrained=True`` loads that architecture's default pretrained entry.
    * pretrained entry (``"musicnn.mtat"``): pretrained is implied.
    * path to a ``.safetensors`` checkpoint.

    Models built from weights are returned in eval mode with weights loaded strictly; they carry
    ``model.checkpoint``, the :class:`~rt_tagger.checkpoint.Checkpoint` description (tags, sample
    rate, log-mel parameters, thresholds, provenance) without its tensors.
    """
    from ..checkpoint import load_checkpoint

    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise ModelError(f"model name must be a non-empty string, got {name!r}")

    if name in _PRETRAINED or (name in _ARCHS and pretrained):
        if kwargs:
            raise ModelError(f"pretrained model {name!r} takes no architecture arguments "
                             f"(got {', '.join(sorted(kwargs))}); its checkpoint defines them")
        if name in _ARCHS:
            entries = [p for p in _PRETRAINED.values() if p.arch == name]
            if not entries:
                raise ModelError(f"architecture {name!r} has no pretrained weights; pretrained "
                                 f"models: {', '.join(list_models(pretrained=True)) or '(none)'}")
            name = entries[0].name
        path = pretrained_path(name)
        if not path.is_file():
            raise ModelError(f"weights of pretrained model {name!r} are missing: {path} "
                             "(reinstall rt-tagger or pass a checkpoint path)")
        ckpt = load_checkpoint(path)
        if ckpt.arch != _PRETRAINED[name].arch:
            raise ModelError(f"pretrained model {name!r} should be arch {_PRETRAINED[name].arch!r} "
                             f"but its checkpoint {path} holds {ckpt.arch!r}")
        return ckpt.build_model()

    if name in _ARCHS:
        entry = _ARCHS[name]
        try:
            inspect.signature(entry.factory).bind(**kwargs)
        except TypeError as exc:  # unknown or positional-only argument
            raise ConfigError(f"bad arguments for model {name!r}: {exc}; accepted: "
                              f"{', '.join(inspect.signature(entry.factory).parameters)}") from None
        return entry.factory(**kwargs)

    if _looks_like_path(name):
        if kwargs:
            raise ModelError(f"a checkpoint path takes no architecture arguments "
                             f"(got {', '.join(sorted(kwargs))})")
        return load_checkpoint(name).build_model()

    raise ModelError(f"unknown model {name!r}; known models: {_known()} "
                     "(or pass the path of a .safetensors checkpoint)")
