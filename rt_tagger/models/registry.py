"""Model registry: architectures and pretrained entries by name. Names only, no I/O, no torch.

The built-in architectures (:data:`BUILTIN_ARCH_MODULES`, which import torch) are imported the
first time an architecture is looked up or listed; pretrained entries
(:mod:`rt_tagger.models.pretrained`) are names only and need none of them.

Architectures register a factory ``fn(*, n_tags, input_length, [n_mels], ...) -> nn.Module``::

    @register_model("spec_att", logmel=SPEC_ATT_DB)
    def spec_att(*, n_mels=96, input_length=256, n_tags=50, ...): ...

The factory's keyword arguments follow one convention, so that a model's description
(:class:`~.cfg.ModelCfg`) follows from its arguments without building it:
``get_arch(name).cfg(**kwargs)``. ``input_length`` is the chunk length (frames or samples),
``n_tags`` the number of outputs and, for log-mel models, ``n_mels`` (if the factory has it)
the number of mel bands of the registered log-mel preset.

Pretrained entries name a self-describing checkpoint shipped in ``rt_tagger/weights``::

    register_pretrained("musicnn.mtat", arch="musicnn", filename="musicnn_mtat.safetensors")

Building models and reading weights is the factory's job (:mod:`rt_tagger.factory`).
"""
from __future__ import annotations

import importlib
import inspect
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError, ModelError
from ..features.config import LogMelConfig
from .cfg import ModelCfg

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "ArchEntry",
    "PretrainedEntry",
    "get_arch",
    "get_pretrained",
    "list_models",
    "register_model",
    "register_pretrained",
]

#: Sample rate of waveform architectures (log-mel ones take their preset's).
WAVEFORM_RATE = 16000
#: Keyword arguments every architecture factory takes (with defaults).
REQUIRED_ARGS = ("n_tags", "input_length")


@dataclass(frozen=True)
class ArchEntry:
    """A registered architecture: its factory and the log-mel features it expects.

    ``logmel`` is the recommended :class:`LogMelConfig` for spectrogram models (training and
    the runtime compute exactly these features) and ``None`` for waveform models.
    """

    name: str
    factory: Callable[..., "nn.Module"]
    logmel: LogMelConfig | None
    sample_rate: int = WAVEFORM_RATE

    @property
    def input_kind(self) -> str:
        return "waveform" if self.logmel is None else "logmel"

    def bind(self, **kwargs: Any) -> dict[str, Any]:
        """All arguments of ``factory(**kwargs)``, defaults filled in; :class:`ConfigError`
        naming the accepted ones for an unknown argument."""
        sig = inspect.signature(self.factory)
        try:
            bound = sig.bind(**kwargs)
        except TypeError as exc:  # unknown or positional-only argument
            raise ConfigError(f"bad arguments for model {self.name!r}: {exc}; accepted: "
                              f"{', '.join(sig.parameters)}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def cfg(self, **kwargs: Any) -> ModelCfg:
        """The description of ``factory(**kwargs)``, without building it (no tag names yet)."""
        args = self.bind(**kwargs)
        logmel = self.logmel
        n_mels = args.get("n_mels")
        if logmel is not None and n_mels is not None and n_mels != logmel.n_mels:
            if not (isinstance(n_mels, int) and not isinstance(n_mels, bool) and n_mels >= 1):
                raise ConfigError(f"{self.name}: n_mels must be a positive integer, got {n_mels!r}")
            logmel = logmel.replace(n_mels=n_mels)
        return ModelCfg(arch=self.name, args=dict(kwargs), input_kind=self.input_kind,
                        input_length=args["input_length"],
                        sample_rate=self.sample_rate if logmel is None else logmel.sample_rate,
                        logmel=logmel, n_tags=args["n_tags"])


@dataclass(frozen=True)
class PretrainedEntry:
    """A pretrained model: architecture name and checkpoint file in ``rt_tagger/weights``."""

    name: str
    arch: str
    filename: str
    description: str = ""


_ARCHS: dict[str, ArchEntry] = {}
_PRETRAINED: dict[str, PretrainedEntry] = {}

#: Modules under ``rt_tagger.models`` whose import registers the built-in architectures.
BUILTIN_ARCH_MODULES = ("spec_att", "raw", "q2l", "short_res", "musicnn", "musicnn_vgg",
                        "musicnn_att")
_builtins = {"loaded": False, "loading": False}
_builtins_lock = threading.RLock()


def _load_builtin_archs() -> None:
    """Import the built-in architecture modules once (they register themselves). A module that
    does not exist is skipped; a missing torch is one :class:`ModelError`. Thread-safe: another
    thread asking meanwhile waits for the whole set (two inference workers resolve a model's
    architecture at once); the imports' own calls back into the registry return at once."""
    if _builtins["loaded"]:
        return
    with _builtins_lock:
        if _builtins["loaded"] or _builtins["loading"]:
            return
        _builtins["loading"] = True
        try:
            for mod in BUILTIN_ARCH_MODULES:
                full = f"{__package__}.{mod}"
                try:
                    importlib.import_module(full)
                except ModuleNotFoundError as exc:
                    if exc.name == full:
                        continue
                    if exc.name == "torch" or (exc.name or "").startswith("torch."):
                        raise ModelError(f"model architectures need PyTorch, which cannot be imported "
                                         f"({exc}); the onnxruntime runtime needs it only to export "
                                         "a model it has not cached yet") from None
                    raise
            _builtins["loaded"] = True
        finally:
            _builtins["loading"] = False


def _same_origin(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module re-imported (importlib reload, test collection) registers the "same" factory again.
    key = lambda f: (getattr(f, "__module__", None), getattr(f, "__qualname__", None))  # noqa: E731
    return key(a) == key(b)


def _check_signature(name: str, fn: Callable[..., Any]) -> None:
    params = inspect.signature(fn).parameters
    lacking = [a for a in REQUIRED_ARGS
               if a not in params or params[a].default is inspect.Parameter.empty]
    if lacking:
        raise ModelError(f"model {name!r}: the factory {fn.__qualname__} needs keyword "
                         f"argument(s) {', '.join(lacking)} with defaults")


def register_model(
    name: str, *, logmel: LogMelConfig | None = None, sample_rate: int = WAVEFORM_RATE
) -> Callable[[Callable[..., "nn.Module"]], Callable[..., "nn.Module"]]:
    """Decorator registering ``fn(**kwargs) -> nn.Module`` as architecture ``name``.

    ``logmel``: recommended features for a spectrogram model (``None`` for waveform input, at
    ``sample_rate`` Hz).
    """
    if not isinstance(name, str) or not name or "/" in name or os.sep in name:
        raise ConfigError(f"invalid model name {name!r}: need a non-empty name without slashes")

    def decorator(fn: Callable[..., "nn.Module"]) -> Callable[..., "nn.Module"]:
        old = _ARCHS.get(name)
        if old is not None and not _same_origin(old.factory, fn):
            raise ModelError(f"model name {name!r} is already registered by {old.factory.__module__}")
        if name in _PRETRAINED:
            raise ModelError(f"model name {name!r} is already a pretrained entry")
        _check_signature(name, fn)
        _ARCHS[name] = ArchEntry(name, fn, logmel, sample_rate)
        return fn

    return decorator


def register_pretrained(name: str, *, arch: str, filename: str, description: str = "") -> None:
    """Register pretrained weights ``rt_tagger/weights/<filename>`` for architecture ``arch``.

    The first entry registered for an architecture is its default for
    ``create_model(arch, pretrained=True)``. The file is only opened by the factory.
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
    if pretrained is not True:
        _load_builtin_archs()
    if pretrained is None:
        return sorted([*_ARCHS, *_PRETRAINED])
    return sorted(_PRETRAINED if pretrained else _ARCHS)


def get_arch(name: str) -> ArchEntry:
    """The registered architecture ``name``; :class:`ModelError` listing the known ones if not."""
    if name not in _ARCHS:
        _load_builtin_archs()
    entry = _ARCHS.get(name)
    if entry is None:
        raise ModelError(f"unknown architecture {name!r}; known architectures: "
                         f"{', '.join(list_models(pretrained=False)) or '(none registered)'}")
    return entry


def get_pretrained(name: str) -> PretrainedEntry:
    """The pretrained entry ``name`` (or, for an architecture name, its default entry);
    :class:`ModelError` listing the pretrained models if there is none."""
    entry = _PRETRAINED.get(name)
    if entry is None:
        _load_builtin_archs()
    if entry is None and name in _ARCHS:
        entry = next((p for p in _PRETRAINED.values() if p.arch == name), None)
        if entry is None:
            raise ModelError(f"architecture {name!r} has no pretrained weights; pretrained "
                             f"models: {', '.join(list_models(pretrained=True)) or '(none)'}")
    if entry is None:
        raise ModelError(f"unknown pretrained model {name!r}; known pretrained models: "
                         f"{', '.join(list_models(pretrained=True)) or '(none registered)'}")
    return entry
