"""PyTorch eager engine: the reference every other backend is compared with."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError, ConfigError
from .base import Engine

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from ..checkpoint import Checkpoint


def torch_device(device: str | None) -> Any:
    """``torch.device`` for ``device`` (None: "cpu"), or :class:`BackendError` if it is absent."""
    import torch

    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, TypeError):
        raise BackendError(f"invalid device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise BackendError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available "
                               f"(torch {torch.__version__}, no GPU or no CUDA build)")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise BackendError(f"device {device!r} does not exist: "
                               f"{torch.cuda.device_count()} CUDA device(s)")
        dev = torch.device("cuda", index)
    return dev


def set_threads(threads: int | None) -> None:
    """Set PyTorch's intra-op thread count (process-wide); None leaves it alone."""
    import torch

    if threads is None:
        return
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)


class TorchEngine(Engine):
    """Runs the ``nn.Module`` itself under ``torch.inference_mode``.

    ``threads`` sets ``torch.set_num_threads`` — a process-wide setting in PyTorch.
    ``precision="fp16"`` is only offered on CUDA (CPU half precision is slow and inexact).
    """

    name = "torch"

    def __init__(self, model: "nn.Module", checkpoint: "Checkpoint", *, device: str | None = None,
                 threads: int | None = None, precision: str = "fp32", max_batch: int = 16,
                 attention: bool = True) -> None:
        from ..factory import supports_attention

        dev = torch_device(device)
        if precision == "fp16" and dev.type != "cuda":
            raise BackendError("precision fp16 with the torch backend needs a CUDA device")
        super().__init__(checkpoint, device=str(dev), max_batch=max_batch, precision=precision,
                         supports_attention=attention and supports_attention(model))
        set_threads(threads)
        self._dev = dev
        self._model: Any = model.eval().to(dev)
        if precision == "fp16":
            self._model = self._model.half()
        self._dtype = next(self._model.parameters()).dtype

    def _run(self, x: np.ndarray, attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x).to(self._dev, self._dtype, non_blocking=True)
            if attention:
                logits, attn = self._model(t, return_attention=True)
                return _numpy(logits), _numpy(attn)
            return _numpy(self._model(t)), None

    def close(self) -> None:
        self._model = None
        super().close()


def _numpy(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()
