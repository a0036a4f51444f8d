"""Self-describing checkpoints: one ``.safetensors`` file holding weights and model description.

Layout: the safetensors tensors are the model's ``state_dict``; the safetensors string metadata
holds one key, ``"rt_tagger"``, whose value is a JSON object::

    format_version  1
    arch            registered architecture name ("spec_att")
    arch_args       dict of keyword arguments for the architecture factory
    tags            list of tag names, one per output logit
    sample_rate     audio sample rate in Hz the model expects
    input_kind      "logmel" (input (batch, frames, n_mels)) or "waveform" (input (batch, samples))
    input_length    frames (logmel) or samples (waveform) per chunk
    logmel          LogMelConfig.to_dict() for logmel models, null for waveform models
    thresholds      per-tag decision thresholds on sigmoid outputs, or null
    provenance      dict: source, licence, command, dataset, metrics, ...
    model_card      optional free text
    sha256          hex SHA-256 over the tensor payload (see :func:`payload_sha256`)

A checkpoint is a :class:`~rt_tagger.models.cfg.ModelCfg` (``Checkpoint.cfg``: everything above
but provenance, model card and checksum) plus weights plus provenance. The runtime reads
everything it needs (tags, features, chunk length) from here; nothing about a model is
hard-coded elsewhere. :func:`load_checkpoint` verifies structure, checksum and that the
architecture is registered; :meth:`Checkpoint.build_model` first checks that the description
fits the architecture's arguments (from the registry, without building anything). Both raise
:class:`~rt_tagger.errors.ModelError` with a one-line message for every kind of bad file.

This module imports only the model registry, and only where a model is built, checked or
described (so reading an exported file's description needs neither torch nor the
architectures: an onnxruntime-only server); building models by name is
:mod:`rt_tagger.factory`'s.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ModelError
from .features.config import LogMelConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from .models.cfg import ModelCfg

__all__ = ["FORMAT_VERSION", "INPUT_KINDS", "Checkpoint", "check_fits_arch",
           "checkpoint_from_metadata", "load_checkpoint", "payload_sha256", "save_checkpoint",
           "validate_metadata"]

FORMAT_VERSION = 1
INPUT_KINDS = ("logmel", "waveform")  # as rt_tagger.models.cfg.INPUT_KINDS
METADATA_KEY = "rt_tagger"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model description plus its ``state_dict``."""

    arch: str
    arch_args: dict[str, Any]
    tags: list[str]
    sample_rate: int
    input_kind: str
    input_length: int
    logmel: dict[str, Any] | None = None
    thresholds: list[float] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    model_card: str | None = None
    format_version: int = FORMAT_VERSION
    state_dict: dict[str, "torch.Tensor"] = field(default_factory=dict, repr=False)
    path: Path | None = None
    sha256: str = ""

    @property
    def n_tags(self) -> int:
        return len(self.tags)

    @property
    def logmel_config(self) -> LogMelConfig | None:
        """The features the model expects (``None`` for waveform models)."""
        return None if self.logmel is None else LogMelConfig.from_dict(self.logmel)

    @property
    def cfg(self) -> "ModelCfg":
        """The model description (what ``model.cfg`` of the built model is)."""
        from .models.cfg import ModelCfg

        return ModelCfg(arch=self.arch, args=dict(self.arch_args), input_kind=self.input_kind,
                        input_length=self.input_length, sample_rate=self.sample_rate,
                        logmel=self.logmel_config, n_tags=self.n_tags, tags=tuple(self.tags),
                        thresholds=None if self.thresholds is None else tuple(self.thresholds))

    def metadata(self) -> dict[str, Any]:
        """The JSON description stored under the ``"rt_tagger"`` metadata key."""
        return {
            "format_version": self.format_version, "arch": self.arch, "arch_args": self.arch_args,
            "tags": self.tags, "sample_rate": self.sample_rate, "input_kind": self.input_kind,
            "input_length": self.input_length, "logmel": self.logmel,
            "thresholds": self.thresholds, "provenance": self.provenance,
            "model_card": self.model_card, "sha256": self.sha256,
        }

    def without_weights(self) -> "Checkpoint":
        return dataclasses.replace(self, state_dict={})

    def build_model(self) -> "nn.Module":
        """Instantiate the architecture, load the weights strictly, return it in eval mode.

        The model gets ``model.cfg`` (:attr:`cfg`) and ``model.checkpoint`` = this description
        without tensors.
        """
        from .models.registry import get_arch

        where = f"checkpoint {self.path}" if self.path else "checkpoint"
        check_fits_arch(self.arch, self.arch_args, where, input_kind=self.input_kind,
                        input_length=self.input_length, n_tags=self.n_tags)
        try:
            model = get_arch(self.arch).factory(**self.arch_args)
        except (TypeError, ConfigError) as exc:
            raise ModelError(f"{where}: arch_args {self.arch_args} do not fit "
                             f"architecture {self.arch!r}: {exc}") from None
        _check_state_dict(model, self.state_dict, f"{where} (arch {self.arch!r}, "
                                                  f"arch_args {self.arch_args})")
        model.load_state_dict(self.state_dict, strict=True)
        model.eval()
        model.cfg = self.cfg
        model.checkpoint = self.without_weights()
        return model


def check_fits_arch(arch: str, arch_args: dict[str, Any], where: str,
                    **declared: Any) -> "ModelCfg":
    """The registry's description of ``arch(**arch_args)``; :class:`ModelError` if the
    arguments do not fit the architecture or it disagrees with ``declared`` (``input_kind``,
    ``input_length``, ``n_tags``). No network is built."""
    from .models.registry import get_arch

    try:
        cfg = get_arch(arch).cfg(**arch_args)
    except ConfigError as exc:
        raise ModelError(f"{where}: arch_args {arch_args} do not fit architecture {arch!r}: "
                         f"{exc}") from None
    for attr, want in declared.items():
        have = getattr(cfg, attr)
        if have != want:
            raise ModelError(f"{where}: metadata says {attr}={want!r} but architecture "
                             f"{arch!r} with these arch_args has {attr}={have!r}")
    return cfg


def _check_state_dict(model: "nn.Module", sd: dict[str, Any], where: str) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    shapes = [f"{k} is {have[k]}, needs {want[k]}" for k in sorted(set(want) & set(have))
              if want[k] != have[k]]
    if missing or unexpected or shapes:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:3]) + (f" (+{len(xs) - 3} more)" if len(xs) > 3 else "")
        parts = [f"{label}: {few(xs)}" for label, xs in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if xs]
        raise ModelError(f"{where}: weights do not match the architecture; {'; '.join(parts)}")


def payload_sha256(header: dict[str, Any], data: bytes | memoryview) -> str:
    """SHA-256 over the tensors of a parsed safetensors file, in sorted name order.

    For each tensor: the JSON line ``[name, dtype, shape, nbytes]`` then its raw bytes. This is
    independent of the metadata and of the byte layout safetensors chooses.
    """
    h = hashlib.sha256()
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        begin, end = info["data_offsets"]
        h.update(json.dumps([name, info["dtype"], list(info["shape"]), end - begin]).encode())
        h.update(b"\n")
        h.update(data[begin:end])
    return h.hexdigest()


def _parse(raw: bytes, where: str) -> tuple[dict[str, Any], memoryview]:
    """Split a safetensors file into (header dict, data buffer), checking it is complete."""
    if len(raw) < 8:
        raise ModelError(f"{where} is not a safetensors file (only {len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n == 0 or n > _MAX_HEADER or raw[8:9] != b"{":
        raise ModelError(f"{where} is not a safetensors file (bad header)")
    if 8 + n > len(raw):
        raise ModelError(f"{where} is truncated: header needs {8 + n} bytes, file has {len(raw)}")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{where} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{where} is not a safetensors file (header is not a JSON object)")
    data = memoryview(raw)[8 + n:]
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            info["dtype"], list(info["shape"])
        except (TypeError, KeyError, ValueError):
            raise ModelError(f"{where}: malformed safetensors entry for tensor {name!r}") from None
        if not 0 <= begin <= end:
            raise ModelError(f"{where}: malformed data offsets for tensor {name!r}")
        if end > len(data):
            raise ModelError(f"{where} is truncated: tensor {name!r} ends at byte {end} of the "
                             f"data section, which has only {len(data)} bytes")
    return header, data


def validate_metadata(meta: Any, where: str) -> dict[str, Any]:
    """Check a checkpoint description (the ``"rt_tagger"`` JSON, parsed) field by field;
    returns it, or raises :class:`ModelError` naming ``where`` and the first bad field."""
    def bad(msg: str) -> ModelError:
        return ModelError(f"{where}: invalid rt_tagger metadata: {msg}")

    if not isinstance(meta, dict):
        raise bad("not a JSON object")
    required = ("format_version", "arch", "arch_args", "tags", "sample_rate", "input_kind",
                "input_length", "sha256")
    missing = [k for k in required if k not in meta]
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")
    if meta["format_version"] != FORMAT_VERSION:
        raise bad(f"format_version {meta['format_version']!r} is not supported "
                  f"(this rt-tagger reads version {FORMAT_VERSION})")
    if not isinstance(meta["arch"], str) or not isinstance(meta["arch_args"], dict):
        raise bad("arch must be a string and arch_args an object")
    tags = meta["tags"]
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        raise bad("tags must be a non-empty list of strings")
    dupes = sorted(t for t, n in collections.Counter(tags).items() if n > 1)
    if dupes:  # the outputs are keyed by tag name: a duplicate would hide a logit
        raise bad(f"tag names must be unique; repeated: {', '.join(map(repr, dupes[:5]))}")
    if not isinstance(meta["sample_rate"], int) or meta["sample_rate"] <= 0:
        raise bad(f"sample_rate must be a positive integer, got {meta['sample_rate']!r}")
    if meta["input_kind"] not in INPUT_KINDS:
        raise bad(f"input_kind must be one of {INPUT_KINDS}, got {meta['input_kind']!r}")
    if not isinstance(meta["input_length"], int) or meta["input_length"] <= 0:
        raise bad(f"input_length must be a positive integer, got {meta['input_length']!r}")
    logmel = meta.get("logmel")
    if meta["input_kind"] == "logmel":
        if not isinstance(logmel, dict):
            raise bad("a logmel model needs its logmel parameters")
        try:
            cfg = LogMelConfig.from_dict(logmel)
        except (ConfigError, TypeError) as exc:
            raise bad(f"logmel: {exc}") from None
        if cfg.sample_rate != meta["sample_rate"]:
            raise bad(f"logmel sample_rate {cfg.sample_rate} != sample_rate {meta['sample_rate']}")
    elif logmel is not None:
        raise bad("a waveform model must have logmel null")
    thr = meta.get("thresholds")
    if thr is not None and (not isinstance(thr, list) or len(thr) != len(tags)
                            or not all(isinstance(t, (int, float)) for t in thr)):
        raise bad(f"thresholds must be null or {len(tags)} numbers, one per tag")
    if not isinstance(meta.get("provenance") or {}, dict):
        raise bad("provenance must be an object")
    card = meta.get("model_card")
    if card is not None and not isinstance(card, str):
        raise bad("model_card must be a string or null")
    return meta


def load_checkpoint(path: str | os.PathLike[str], *, weights: bool = True) -> Checkpoint:
    """Read and verify a checkpoint file; the weights are loaded onto the CPU.

    ``weights=False``: the description only (structure and checksum verified, no tensors
    decoded, the architecture not looked up), which needs neither torch nor the architectures:
    the onnxruntime runtime keys its cached graph with it."""
    p = Path(path)
    where = f"checkpoint {p}"
    if not p.is_file():
        raise ModelError(f"checkpoint file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from None
    header, data = _parse(raw, where)
    meta_str = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if meta_str is None:
        raise ModelError(f"{where} has no {METADATA_KEY!r} metadata (not an rt-tagger checkpoint)")
    try:
        meta = json.loads(meta_str)
    except (TypeError, json.JSONDecodeError):
        raise ModelError(f"{where}: {METADATA_KEY!r} metadata is not valid JSON") from None
    meta = validate_metadata(meta, where)
    digest = payload_sha256(header, data)
    if digest != meta["sha256"]:
        raise ModelError(f"{where} is corrupt: tensor checksum {digest[:12]}... does not match "
                         f"the recorded {str(meta['sha256'])[:12]}...")
    if not weights:
        return _from_meta(meta, state_dict={}, path=p, sha256=digest)
    from safetensors.torch import load as st_load

    try:
        state_dict = st_load(raw)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ModelError(f"{where}: cannot decode tensors: {str(exc).splitlines()[0]}") from None
    from .models.registry import get_arch

    get_arch(meta["arch"])  # unknown architecture -> ModelError listing the known ones
    return _from_meta(meta, state_dict=state_dict, path=p, sha256=digest)


def _from_meta(meta: dict[str, Any], *, state_dict: dict[str, Any], path: Path,
               sha256: str) -> Checkpoint:
    return Checkpoint(
        arch=meta["arch"], arch_args=meta["arch_args"], tags=list(meta["tags"]),
        sample_rate=meta["sample_rate"], input_kind=meta["input_kind"],
        input_length=meta["input_length"], logmel=meta.get("logmel"),
        thresholds=meta.get("thresholds"), provenance=meta.get("provenance") or {},
        model_card=meta.get("model_card"), format_version=meta["format_version"],
        state_dict=state_dict, path=path, sha256=sha256,
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    model: "nn.Module",
    *,
    arch: str,
    arch_args: dict[str, Any],
    tags: list[str],
    sample_rate: int,
    input_kind: str,
    input_length: int,
    logmel: LogMelConfig | dict[str, Any] | None = None,
    thresholds: list[float] | None = None,
    provenance: dict[str, Any] | None = None,
    model_card: str | None = None,
) -> Path:
    """Write ``model``'s weights and description to one ``.safetensors`` file (atomically).

    Raises :class:`ConfigError` for a description that contradicts itself or the model
    (``len(tags) != model.n_tags``, or ``arch(**arch_args)`` has other tensors than ``model``)
    and :class:`ModelError` for an unknown ``arch``.
    """
    from safetensors.torch import save as st_save

    from .models.registry import get_arch

    entry = get_arch(arch)
    if isinstance(logmel, LogMelConfig):
        logmel = logmel.to_dict()
    if thresholds is not None:
        thresholds = [float(t) for t in thresholds]
        if not all(math.isfinite(t) for t in thresholds):
            raise ConfigError("thresholds must be finite numbers")
    try:
        arch_args = json.loads(json.dumps(arch_args))
    except (TypeError, ValueError):
        raise ConfigError(f"arch_args must be JSON-serialisable, got {arch_args!r}") from None
    for attr, value in (("n_tags", len(tags)), ("input_kind", input_kind),
                        ("input_length", input_length)):
        have = getattr(model, attr, value)
        if have != value:
            raise ConfigError(f"cannot save checkpoint: {attr}={value!r} but the model has "
                              f"{attr}={have!r}")
    meta = {
        "format_version": FORMAT_VERSION, "arch": arch, "arch_args": arch_args,
        "tags": list(tags), "sample_rate": sample_rate, "input_kind": input_kind,
        "input_length": input_length, "logmel": logmel, "thresholds": thresholds,
        "provenance": dict(provenance or {}), "model_card": model_card, "sha256": "",
    }
    try:
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError):
        raise ConfigError("provenance must be JSON-serialisable") from None
    try:
        validate_metadata(meta, "cannot save checkpoint")
    except ModelError as exc:
        raise ConfigError(str(exc)) from None

    # Catch a wrong arch/arch_args now rather than when someone loads the file.
    try:
        reference = entry.factory(**arch_args)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"cannot save checkpoint: arch_args {arch_args} do not fit "
                          f"architecture {arch!r}: {exc}") from None
    try:
        _check_state_dict(reference, model.state_dict(), f"cannot save checkpoint as {arch!r} "
                                                          f"with arch_args {arch_args}")
    except ModelError as exc:
        raise ConfigError(str(exc)) from None
    del reference
    # Own, contiguous CPU copies: safetensors refuses shared or strided storage.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    header, data = _parse(st_save(tensors), "serialised tensors")
    meta["sha256"] = payload_sha256(header, data)
    blob = st_save(tensors, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, out)
    return out


def checkpoint_from_metadata(meta: str | bytes | dict[str, Any] | None, where: str,
                             path: str | os.PathLike[str] | None = None) -> Checkpoint:
    """A description-only :class:`Checkpoint` (no weights) from the ``"rt_tagger"`` JSON an
    exported file carries (ONNX metadata, TorchScript extra file, Triton config); validated
    like a checkpoint's. ``where`` names the file in errors."""
    if meta is None:
        raise ModelError(f"{where} has no rt-tagger metadata (export it with rt-tagger export)")
    if isinstance(meta, (str, bytes)):
        try:
            meta = json.loads(meta)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelError(f"{where}: rt-tagger metadata is not valid JSON") from None
    meta = validate_metadata(meta, where)
    fields = {k: meta.get(k) for k in ("arch", "arch_args", "tags", "sample_rate", "input_kind",
                                         "input_length", "logmel", "thresholds", "model_card",
                                         "format_version", "sha256")}
    return Checkpoint(**fields, provenance=meta.get("provenance") or {},
                      path=None if path is None else Path(path))
