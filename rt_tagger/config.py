"""One frozen :class:`StreamConfig`: what a run tags with and how (model, hop, smoothing,
thresholds, silence gate, duration, inference scheduling).

The same object reaches the CLI (:meth:`StreamConfig.add_arguments` / :meth:`from_args`), a
TOML file (:meth:`from_toml`), the Python API (``Tagger(model, config)``), the GUI and the
monitor. Values are checked once, in ``__post_init__``; a mistake is one
:class:`~rt_tagger.errors.ConfigError` line naming the flag. Layering is explicit: the file
gives a base, and every flag *given* on the command line replaces its value, also when it
equals the default (flags are parsed with no default, so "given" is known).

The unknown-key check (:func:`reject_unknown`) and the JSON round trip (:class:`DictFields`)
are shared with the log-mel parameters and the training configuration.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any, Self

from .errors import ConfigError

__all__ = ["CLUSTER_INFERENCE", "MAX_HOP", "MAX_THREADS", "PRECISIONS", "SILENCE_DB", "ClusterSettings",
           "DictFields", "StreamConfig", "parse_silence_gate", "read_toml", "reject_unknown"]

#: Engine precisions. fp16: GPU only (tensorrt, torch on CUDA, onnxruntime's TensorRT provider);
#: int8: onnxruntime on a CPU, with the model's statically quantized graph
#: (:mod:`rt_tagger.engines.quantize`).
PRECISIONS = ("fp32", "fp16", "int8")

#: The most inference threads accepted: more only costs memory, never speed.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
#: The longest hop accepted, in seconds (one hour).
MAX_HOP = 3600.0
#: Default silence gate (dBFS RMS over a chunk): below it no tag is switched on. Digital
#: silence and room tone (about -60 dBFS) stay under it; quiet music (-45 dBFS and up) does not.
SILENCE_DB = -55.0
AGGREGATIONS = ("mean", "ema", "max")


def parse_silence_gate(value: Any) -> float | None:
    """``--silence-gate``: a level in dBFS (``-55``), or ``off``/``None`` for no gate."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none")):
        return None
    if isinstance(value, bool):
        raise ConfigError(f"--silence-gate must be a level in dBFS (e.g. -55) or 'off', got {value!r}")
    try:
        db = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--silence-gate must be a level in dBFS (e.g. -55) or 'off', got {value!r}") from None
    if not (math.isfinite(db) and -150 <= db <= 0):
        raise ConfigError(f"--silence-gate must be between -150 and 0 dBFS (or 'off'), got {value!r}")
    return db


def reject_unknown(cls: type, keys: Any, noun: str) -> None:
    """One ConfigError naming every key of ``keys`` that is no field of dataclass ``cls``, so a
    misspelt setting is never dropped silently (``noun``: what the message calls a key)."""
    unknown = sorted(set(keys) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {noun}(s): {', '.join(unknown)}")


class DictFields:
    """``to_dict``/``from_dict`` of a config dataclass kept as JSON (checkpoints, runs): the
    round trip is exact, and ``from_dict`` refuses keys that are no field."""

    #: what ``from_dict``'s error calls a key
    KEY_NOUN = "setting"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        reject_unknown(cls, d, cls.KEY_NOUN)
        return cls(**d)


def _number(flag: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{flag} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, got {value!r}") from None


def _seconds(flag: str, value: Any, *, zero_ok: bool) -> float:
    x = _number(flag, value)
    if not math.isfinite(x) or x < 0 or (x == 0 and not zero_ok):
        raise ConfigError(f"{flag} must be a finite number of seconds {'>=' if zero_ok else '>'} 0, "
                          f"got {value!r}")
    return x


def _integer(flag: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{flag} must be an integer {span}, got {value!r}")
    return value


def _hop(value: Any) -> float | str:
    if isinstance(value, str) and value.strip().lower() == "chunk":
        return "chunk"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--hop must be seconds (e.g. 0.5) or 'chunk', got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(x) and 0 < x <= MAX_HOP):
        raise ConfigError(f"--hop must be seconds in (0, {MAX_HOP:g}] or 'chunk', got {value!r}")
    return x


@dataclass(frozen=True)
class StreamConfig:
    """The stream settings, checked on construction (``dataclasses.replace`` checks again).

    ``model``: registry name, checkpoint or ``.onnx`` file (``None``: the default model).
    ``backend``: ``auto``, ``tensorrt``, ``onnxruntime``, ``torch`` or a Triton URL.
    ``threads``: inference CPU threads (``None``: the backend's choice).
    ``precision``: ``fp32``, ``fp16`` (GPU only) or ``int8`` (onnxruntime on a CPU).
    ``hop``: seconds between chunk starts, or ``"chunk"`` (non-overlapping chunks).
    ``aggregation``/``horizon``: ``mean``/``max`` of the chunks of the last ``horizon``
    seconds, or an ``ema`` with that time constant. ``threshold``: a tag switches on at this
    probability (``None``: the model's per-tag thresholds, else 0.5) once it held for
    ``min_duration`` seconds, and off below ``off_ratio`` x threshold. ``topk``: tags shown.
    ``silence_gate``: chunks quieter than this RMS level (dBFS) switch no tag on (``None``:
    no gate). ``duration``: read at most this many seconds of each source (``None``: all).
    ``workers``: inference threads sharing the engine (``None``: 2 on a CPU with two or more
    cores, else 1); ``batch``: most chunks per engine call
    (``None``: 1 on a CPU, the engine's ``max_batch`` on an accelerator); ``max_batch``: the
    engine's largest batch; ``max_queue``: chunks a live source may queue before the oldest is
    dropped.
    """

    model: str | None = None
    backend: str = "auto"
    threads: int | None = None
    precision: str = "fp32"
    hop: float | str = 0.5
    topk: int = 5
    threshold: float | None = None
    aggregation: str = "mean"
    horizon: float = 3.0
    min_duration: float = 1.0
    off_ratio: float = 0.8
    silence_gate: float | None = SILENCE_DB
    duration: float | None = None
    workers: int | None = None
    batch: int | None = None
    max_batch: int = 16
    max_queue: int = 8

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.model is not None:
            if not isinstance(self.model, (str, os.PathLike)):
                raise ConfigError(f"--model must be a name or a path, got {self.model!r}")
            put("model", os.fspath(self.model))
        if not isinstance(self.backend, str) or not self.backend:
            raise ConfigError(f"--backend must be a name or a triton:// URL, got {self.backend!r}")
        if self.threads is not None:
            _integer("--threads", self.threads, 1, MAX_THREADS)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        put("hop", _hop(self.hop))
        _integer("--topk", self.topk, 1)
        if self.threshold is not None:
            x = _number("--threshold", self.threshold)
            if not 0.0 < x < 1.0:  # also false for NaN
                raise ConfigError(f"thresholds must be in (0, 1), got --threshold {self.threshold!r}")
            put("threshold", x)
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, "
                              f"got {self.aggregation!r}")
        put("horizon", _seconds("--horizon", self.horizon, zero_ok=False))
        put("min_duration", _seconds("--min-duration", self.min_duration, zero_ok=True))
        x = _number("off_ratio", self.off_ratio)
        if not 0 < x <= 1:
            raise ConfigError(f"off_ratio must be in (0, 1], got {self.off_ratio!r}")
        put("silence_gate", parse_silence_gate(self.silence_gate))
        if self.duration is not None:
            put("duration", _seconds("--duration", self.duration, zero_ok=False))
        if self.workers is not None:
            _integer("--inference-workers", self.workers, 1, MAX_THREADS)
        if self.batch is not None:
            _integer("--inference-batch", self.batch, 1)
        _integer("max_batch", self.max_batch, 1)
        _integer("max_queue", self.max_queue, 1)

    def replace(self, **changes: Any) -> "StreamConfig":
        """A copy with ``changes`` applied (and checked)."""
        reject_unknown(type(self), changes, "stream setting")
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    # ---- the command line ---------------------------------------------------------------------
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser | Any) -> None:
        """The stream flags. None has a parser default: a flag not given is absent from the
        namespace, so :meth:`from_args` can layer exactly what was given over a file."""
        s = argparse.SUPPRESS
        p.add_argument("--model", "-m", default=s,
                       help="registry name, checkpoint (.safetensors) or .onnx file (default: the embedded model)")
        p.add_argument("--backend", default=s, type=_backend_flag, metavar="BACKEND",
                       help="auto (default), tensorrt, onnxruntime, torch, or a Triton server: "
                            "triton://HOST:PORT[/MODEL] (HTTP) or triton+grpc://HOST:PORT[/MODEL]")
        p.add_argument("--threads", type=int, default=s, help="inference CPU threads")
        p.add_argument("--precision", default=s, choices=PRECISIONS,
                       help="fp32 (default); fp16: GPU only; int8: onnxruntime on a CPU with the "
                            "model's quantized graph (python -m rt_tagger.training quantize)")
        p.add_argument("--hop", default=s, help="seconds between chunks, or 'chunk' (default 0.5)")
        p.add_argument("--topk", type=int, default=s, help="tags shown (default 5)")
        p.add_argument("--threshold", type=float, default=s,
                       help="tag event threshold (default: per-tag thresholds of the model, else 0.5)")
        p.add_argument("--aggregation", default=s, choices=AGGREGATIONS, help="default mean")
        p.add_argument("--horizon", type=float, default=s, help="aggregation horizon in seconds (default 3)")
        p.add_argument("--min-duration", type=float, default=s,
                       help="seconds a tag must stay above threshold before tag_on (default 1)")
        p.add_argument("--silence-gate", default=s, metavar="DB|off",
                       help="chunks quieter than this RMS level (dBFS) switch no tag on and are "
                            "reported as silence (default -55; 'off' disables)")
        p.add_argument("--duration", type=float, default=s,
                       help="stop after this many seconds of audio (of each source)")
        p.add_argument("--inference-workers", dest="workers", type=int, default=s, metavar="N",
                       help="threads sharing the engine (default: 2 on a CPU with 2+ cores, else "
                            "1); two can run one file's chunks at once, and many sources' chunks")
        p.add_argument("--inference-batch", dest="batch", type=int, default=s, metavar="N",
                       help="most chunks (of all sources) per engine call (default: 1 on CPU, "
                            "the engine's max batch on GPU)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, base: "StreamConfig | None" = None) -> "StreamConfig":
        """``base`` (default: the defaults) with every stream flag given in ``args`` applied."""
        given = {name: getattr(args, name) for name in cls.names() if hasattr(args, name)}
        return (base or cls()).replace(**given)

    # ---- a TOML file ----------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, source: str | os.PathLike[str] | dict, *, where: str | None = None) -> "StreamConfig":
        """From a TOML file (or its already parsed top-level table): the top-level keys named
        like the fields (``hop = "chunk"``, ``topk = 3``, ...); other keys are ignored (a file
        may hold sources, alarms and outputs too). Mistakes name the file."""
        if isinstance(source, dict):
            data, where = source, where or "config"
        else:
            data, where = read_toml(source), where or os.fspath(source)
        values = {k: v for k, v in data.items() if k in cls.names()}
        for key, value in values.items():
            if isinstance(value, (dict, list)):
                raise ConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def read_toml(path: str | os.PathLike[str]) -> dict:
    """The top-level table of a TOML file; a missing or malformed file is one ConfigError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no such config file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _backend_flag(text: str) -> str:
    if text in ("auto", "tensorrt", "onnxruntime", "torch") or text.startswith(
            ("triton://", "triton+http://", "triton+grpc://")):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from auto, tensorrt, "
                                     "onnxruntime, torch, triton[+grpc]://HOST:PORT[/MODEL])")


# ---- the cluster settings of a run (rt_tagger.cluster; checked before Ray is imported) -------
#: Where a cluster run infers: in each source actor, or in one Ray Serve deployment.
CLUSTER_INFERENCE = ("actor", "serve")
_CLUSTER_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


@dataclass(frozen=True)
class ClusterSettings:
    """``address``: ``"local"`` (start a Ray cluster on this machine, on 127.0.0.1) or
    ``ray://HOST:PORT`` (Ray Client) / ``HOST:PORT`` (a head's GCS, from a cluster node).
    ``actors``: source actors (the sources are dealt out round-robin). ``inference``:
    ``"actor"`` (each actor runs the model, CPU nodes) or ``"serve"`` (one Ray Serve
    deployment batches every actor's chunks, GPU nodes). ``max_restarts``: how often Ray restarts
    a dead actor (-1: always). ``actor_cpus``/``serve_cpus``/``serve_gpus``: Ray resources
    reserved per source actor / per Serve replica. ``serve_replicas``: Serve replicas."""

    address: str = "local"
    actors: int = 2
    inference: str = "actor"
    max_restarts: int = 10
    actor_cpus: float = 1.0
    serve_replicas: int = 1
    serve_cpus: float = 1.0
    serve_gpus: float = 0.0
    serve_max_batch: int = 64  # requests (one per actor batch) merged by @serve.batch
    serve_wait_s: float = 0.005  # how long @serve.batch waits to fill a batch

    def __post_init__(self) -> None:
        a = self.address
        if not isinstance(a, str) or not (a == "local" or _CLUSTER_ADDRESS.fullmatch(a)):
            raise ConfigError(f"cluster must be 'local', 'ray://HOST:PORT' or 'HOST:PORT', got {a!r}")
        if self.inference not in CLUSTER_INFERENCE:
            raise ConfigError(f"cluster_inference must be one of {', '.join(CLUSTER_INFERENCE)}, got {self.inference!r}")
        for key, lo, hi in (("actors", 1, 4096), ("max_restarts", -1, 10**6), ("serve_replicas", 1, 1024),
                            ("serve_max_batch", 1, 4096)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"cluster_{key} must be an integer between {lo} and {hi}, got {v!r}")
        for key in ("actor_cpus", "serve_cpus", "serve_gpus", "serve_wait_s"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 4096:
                raise ConfigError(f"cluster_{key} must be a number between 0 and 4096, got {v!r}")

    @classmethod
    def from_options(cls, o) -> "ClusterSettings":
        """From the run's options namespace (flags over the TOML file's keys)."""
        kw = {"address": o.cluster}
        for key in ("actors", "inference", "max_restarts", "actor_cpus"):
            v = getattr(o, f"cluster_{key}", None)
            if v is not None:
                kw[key] = v
        return cls(**kw)
