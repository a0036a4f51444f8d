"""``TimeMap``: where a model's attention time steps lie in its input. Torch-free, so an export
can carry it (:func:`rt_tagger.export.export_onnx` writes it into the export info) and the
onnxruntime runtime places attention without building the model."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TimeMap"]


@dataclass(frozen=True)
class TimeMap:
    """How the ``n_steps`` front-end time steps map back to the model input.

    Step ``t`` covers input indices ``[offset + hop * t, offset + hop * (t + 1))`` in ``unit``
    (``"frames"`` of the log-mel input or ``"samples"`` of the waveform). To get seconds, use
    the checkpoint's ``logmel.hop_length / sample_rate`` per frame or ``1 / sample_rate``.
    """

    n_steps: int
    hop: int
    unit: str
    offset: int = 0
    limit: int | None = None  # input length: a last step that would run past it stops there

    def spans(self) -> np.ndarray:
        """``(n_steps, 2)`` int array of ``[start, stop)`` input indices of each step."""
        start = self.offset + self.hop * np.arange(self.n_steps, dtype=np.int64)
        stop = start + self.hop
        if self.limit is not None:
            stop = np.minimum(stop, self.limit)
        return np.stack([start, stop], axis=1)

    def centers(self) -> np.ndarray:
        """``(n_steps,)`` float array: centre of each step in input units."""
        return self.spans().mean(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TimeMap":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
