"""The engine interface: one ``run(batch) -> EngineOutput`` whatever runs the model.

An engine is built once (model loaded, graph exported or compiled, threads set) and then called
many times from the streaming pipeline's inference thread. :meth:`Engine.run` validates the
input, splits a batch larger than ``max_batch`` into pieces, and returns numpy arrays.
"""
from __future__ import annotations

import abc
import glob
import os
import re
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import PRECISIONS
from ..errors import AudioInputError, BackendError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..checkpoint import Checkpoint

__all__ = ["PRECISIONS", "Engine", "EngineOutput", "cache_dir", "cuda_visible", "run_session",
           "sigmoid"]



def int8_only_on_cpu(backend: str, device: str | None) -> str:
    """The one line refusing int8 anywhere but onnxruntime on a CPU."""
    where = backend if device in (None, "cpu") else f"{backend} on {device}"
    return (f"precision int8 runs only on onnxruntime on a CPU, not on {where} "
            "(use --backend onnxruntime --device cpu, or precision fp32/fp16)")


def _nvidia_driver_present() -> bool:
    """Whether this machine could have a CUDA GPU at all: the NVIDIA driver's device nodes
    (Linux) or its library (Windows). macOS has no CUDA."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia") or bool(glob.glob("/dev/nvidia[0-9]*"))
    if sys.platform == "win32":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return False


def cuda_visible() -> bool:
    """``torch.cuda.is_available()``, without importing torch where no NVIDIA driver exists
    (the onnxruntime runtime on a CPU machine never imports torch)."""
    if "torch" not in sys.modules and not _nvidia_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclass
class EngineOutput:
    """One batch of results; all arrays are float32 and C-contiguous.

    ``logits``/``probs``: ``(batch, n_tags)``; ``probs`` is the sigmoid of ``logits``.
    ``attention``: the model's attention maps (``(batch, layers, heads, T+1, T+1)`` for
    spec_att, ``(batch, layers, heads, n_tags, T)`` for q2l) or ``None``.
    """

    logits: np.ndarray
    probs: np.ndarray
    attention: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.logits.shape[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for large ``|x|`` (float32 in, float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32, copy=False)


def run_session(session: Any, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run``, its failure as one :class:`BackendError` line (onnxruntime raises its
    own exception types, with multi-line messages)."""
    try:
        return session.run(names, feeds)
    except Exception as exc:
        raise BackendError(f"onnxruntime failed: {str(exc).strip().splitlines()[0]}") from None


def cache_dir(kind: str, override: str | os.PathLike[str] | None = None) -> Path:
    """Where compiled/exported models are kept: ``override``, ``$RT_TAGGER_CACHE_DIR``,
    ``$XDG_CACHE_HOME/rt-tagger`` or ``~/.cache/rt-tagger``, plus ``kind`` ("onnx", "tensorrt")."""
    if override is not None:
        root = Path(override)
    elif os.environ.get("RT_TAGGER_CACHE_DIR"):
        root = Path(os.environ["RT_TAGGER_CACHE_DIR"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = Path(base) / "rt-tagger"
    path = root / kind
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(f"cannot create cache directory {path}: {exc.strerror or exc}") from None
    return path


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (GPU names, version strings)."""
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", str(text)).strip("_") or "unknown"


class Engine(abc.ABC):
    """Runs one tagging model on batches of chunks.

    Attributes every backend sets: ``name`` (backend: "torch", "onnxruntime", "tensorrt"),
    ``device`` ("cpu", "cuda:0", ...), ``checkpoint`` (the model description, no weights),
    ``max_batch``, ``supports_attention``, and ``selection_reason`` (why this backend was
    chosen; filled in by :func:`~rt_tagger.engines.create_engine`).

    Use it as a context manager or call :meth:`close`; a closed engine refuses to run.
    """

    name: str = "engine"

    def __init__(self, checkpoint: "Checkpoint", *, device: str, max_batch: int,
                 supports_attention: bool, precision: str = "fp32") -> None:
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise ConfigError(f"max_batch must be a positive integer, got {max_batch!r}")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "int8" and (self.name != "onnxruntime" or device != "cpu"):
            raise BackendError(int8_only_on_cpu(self.name, device))
        self.checkpoint = checkpoint
        self.device = device
        self.max_batch = max_batch
        self.precision = precision
        self.supports_attention = supports_attention
        self.selection_reason = f"{self.name}: chosen explicitly"
        self._closed = False

    # ---- model description -------------------------------------------------------------------
    @property
    def cfg(self):
        """The model's :class:`~rt_tagger.models.cfg.ModelCfg` (``checkpoint.cfg``)."""
        return self.checkpoint.cfg

    @property
    def tags(self) -> list[str]:
        return list(self.checkpoint.tags)

    @property
    def n_tags(self) -> int:
        return len(self.checkpoint.tags)

    @property
    def input_kind(self) -> str:
        return self.checkpoint.input_kind

    @property
    def input_length(self) -> int:
        return self.checkpoint.input_length

    @property
    def n_mels(self) -> int | None:
        """Mel bands per frame, ``None`` for waveform models."""
        logmel = self.checkpoint.logmel
        return None if logmel is None else int(logmel["n_mels"])

    @property
    def sample_rate(self) -> int:
        return self.checkpoint.sample_rate

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one chunk (without the batch axis)."""
        if self.input_kind == "logmel":
            return (self.input_length, int(self.n_mels or 0))
        return (self.input_length,)

    # ---- running -----------------------------------------------------------------------------
    def validate(self, batch: Any) -> np.ndarray:
        """The input as a C-contiguous float32 array, or :class:`AudioInputError` saying why not."""
        if not isinstance(batch, np.ndarray):
            raise AudioInputError(f"engine input must be a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise AudioInputError(f"engine input must be float32, got {batch.dtype} "
                                  "(convert with .astype(np.float32))")
        want = self.input_shape
        layout = "(batch, frames, n_mels)" if self.input_kind == "logmel" else "(batch, samples)"
        if batch.ndim != len(want) + 1 or tuple(batch.shape[1:]) != want:
            hint = " (add the batch axis: x[None])" if tuple(batch.shape) == want else ""
            raise AudioInputError(f"engine input for {self.checkpoint.arch} must have shape "
                                  f"{layout} = (batch, {', '.join(map(str, want))}), "
                                  f"got {tuple(batch.shape)}{hint}")
        if batch.shape[0] == 0:
            raise AudioInputError("engine input is an empty batch (batch size 0)")
        if not np.isfinite(batch).all():
            raise AudioInputError("engine input contains NaN or infinite values")
        return np.ascontiguousarray(batch)

    #: A :class:`~rt_tagger.engines.reuse.FrameReuse` where this engine has one (onnxruntime on
    #: a CPU, for models with a frame stage): :meth:`run` with ``positions`` then uses it.
    frame_reuse = None

    def run(self, batch: np.ndarray, *, attention: bool | None = None,
            positions: Sequence[tuple[Hashable, int]] | None = None) -> EngineOutput:
        """Tag a batch of chunks.

        ``attention``: return the attention maps (default: when the model has them).
        ``positions``: for each chunk, ``(stream key, start frame)``; an engine with
        :attr:`frame_reuse` then shares the frame stage between overlapping chunks of a stream
        (same outputs), others ignore it. Batches larger than ``max_batch`` are run in pieces
        of at most ``max_batch``.
        """
        if self._closed:
            raise BackendError(f"{self.name} engine is closed")
        x = self.validate(batch)
        if attention is None:
            attention = self.supports_attention
        elif attention and not self.supports_attention:
            raise BackendError(f"model {self.checkpoint.arch!r} on {self.name} has no attention "
                               "output (export it with attention, or run with attention=False)")
        reuse = self.frame_reuse if positions is not None else None
        if reuse is not None and len(positions) != x.shape[0]:
            raise ConfigError(f"{len(positions)} positions for a batch of {x.shape[0]} chunks")
        pieces = [reuse.run(x[i:i + self.max_batch], positions[i:i + self.max_batch], attention)
                  if reuse is not None else self._run(x[i:i + self.max_batch], attention)
                  for i in range(0, x.shape[0], self.max_batch)]
        logits = pieces[0][0] if len(pieces) == 1 else np.concatenate([p[0] for p in pieces])
        attn = None
        if attention:
            attn = pieces[0][1] if len(pieces) == 1 else np.concatenate([p[1] for p in pieces])
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        return EngineOutput(logits=logits, probs=sigmoid(logits),
                            attention=None if attn is None else np.ascontiguousarray(attn,
                                                                                   np.float32))

    def warm_up(self) -> None:
        """One silent chunk through what :meth:`run` uses, so that a live source's first chunk
        does not pay for the first run's allocations (onnxruntime: 67 ms instead of ~15)."""
        x = np.zeros((1, *self.input_shape), np.float32)
        if self.frame_reuse is None:
            self.run(x)
            return
        key = object()  # a stream of its own, forgotten at once
        self.run(x, positions=[(key, 0)])
        self.frame_reuse.forget(key)

    @abc.abstractmethod
    def _run(self, x: np.ndarray, attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Run at most ``max_batch`` validated chunks: ``(logits, attention or None)``."""

    # ---- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the model/session; further :meth:`run` calls raise :class:`BackendError`."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.checkpoint.arch} on {self.device} "
                f"({self.precision}, max_batch={self.max_batch})>")
