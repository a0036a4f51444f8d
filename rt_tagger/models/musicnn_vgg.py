"""The VGG-like baseline of musicnn (Pons & Serra 2019) in PyTorch: the MTT_vgg tagger of the
PyPI wheel ``musicnn==0.1.0`` (``musicnn/models.py: vgg``), layer for layer.

Graph (T = 187 frames, F = 96 mel bands; channels-first inside, TF is channels-last):

* input batch norm (one channel);
* five blocks of Conv2d 3x3 (128 filters, 'same' padding) -> ReLU -> batch norm -> max pool,
  with pools (time x frequency, 'valid') 4x1 stride 2x2, then 2x2/2 three times, then 4x4/4:
  187x96 -> 92x48 -> 46x24 -> 23x12 -> 11x6 -> 2x1;
* flatten in TF's channels-last order ``[t0c0, t0c1, ..., t1c0, ...]`` (256 values),
  Dense ``n_tags``.

Every batch norm uses TensorFlow's epsilon 1e-3. Dropout (0.25 after each pool, 0.5 before the
dense layer) is kept for training and inactive in eval mode. Unlike musicnn, the dense layer
fixes the input length: exactly ``input_length`` frames.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..features.config import MUSICNN
from .musicnn import TF_BN_EPS
from .registry import register_model

#: (kernel, stride) of the five max pools, (time, frequency), as in ``musicnn/models.py: vgg``.
POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
FEATURE_NAMES = ("pool1", "pool2", "pool3", "pool4", "pool5")


def _pooled(size: int, kernel: int, stride: int) -> int:
    """Output length of a 'valid' max pool (TF ``max_pooling2d`` default padding)."""
    return (size - kernel) // stride + 1


class VGGBlock(nn.Module):
    """Conv2d 3x3 'same' -> ReLU -> BN -> max pool -> dropout (training only)."""

    def __init__(self, in_channels: int, filters: int, pool: tuple[tuple[int, int], tuple[int, int]],
                 dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, 3, padding=1)  # TF 'same' for 3x3 stride 1
        self.bn = nn.BatchNorm2d(filters, eps=TF_BN_EPS)
        self.pool_kernel, self.pool_stride = pool
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T, F) -> (B, C, T', F')
        # BN's scale can be negative, so the pool cannot move before it: literal order
        return F.max_pool2d(self.bn(F.relu(self.conv(x))), self.pool_kernel, self.pool_stride)


class MusicnnVGG(nn.Module):
    """musicnn's VGG tagger. Input ``(batch, input_length, n_mels)`` log-mel
    (``log10(1 + 10000 * mel)``), output ``(batch, n_tags)`` logits."""

    input_kind = "logmel"

    def __init__(self, *, n_tags: int = 50, n_mels: int = 96, input_length: int = 187, filters: int = 128):
        super().__init__()
        t, f = input_length, n_mels
        for (kt, kf), (st, sf) in POOLS:
            t, f = _pooled(t, kt, st), _pooled(f, kf, sf)
        if n_tags < 1 or filters < 1 or t < 1 or f < 1:
            raise ConfigError(
                f"invalid musicnn_vgg arguments: n_tags={n_tags}, n_mels={n_mels}, input_length={input_length}, "
                f"filters={filters} (the five pools need at least 31 frames and 30 mel bands)"
            )
        self.n_tags, self.n_mels, self.input_length, self.filters = n_tags, n_mels, input_length, filters
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPS)
        self.blocks = nn.ModuleList(
            VGGBlock(1 if i == 0 else filters, filters, pool, 0.25) for i, pool in enumerate(POOLS)
        )
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(t * f * filters, n_tags)

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 3 or x.shape[1] != self.input_length or x.shape[2] != self.n_mels:
            raise ConfigError(f"musicnn_vgg expects log-mel of shape (batch, {self.input_length}, {self.n_mels}), "
                              f"got {tuple(x.shape)}")
        x = self.input_bn(x.unsqueeze(1))  # (B, 1, T, F)
        out = {}
        for name, block in zip(FEATURE_NAMES, self.blocks):
            x = block(x)
            out[name] = x
            x = block.dropout(x)
        flat = x.permute(0, 2, 3, 1).flatten(1)  # TF flattens (T, F, C)
        out["logits"] = self.classifier(self.dropout(flat))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (batch, input_length, n_mels)`` -> logits ``(batch, n_tags)``."""
        return self._run(x)["logits"]

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pooled maps laid out like musicnn's ``extractor`` returns them, channels-last:
        ``pool1 (B, 92, 48, 128)`` ... ``pool5 (B, 2, 1, 128)``, plus ``logits (B, n_tags)``."""
        return {k: v.permute(0, 2, 3, 1) if v.dim() == 4 else v for k, v in self._run(x).items()}


@register_model("musicnn_vgg", logmel=MUSICNN)
def musicnn_vgg(*, n_tags: int = 50, n_mels: int = 96, input_length: int = 187,
                filters: int = 128) -> MusicnnVGG:
    """musicnn's VGG baseline (Pons & Serra 2019); see :class:`MusicnnVGG` for the arguments."""
    return MusicnnVGG(n_tags=n_tags, n_mels=n_mels, input_length=input_length, filters=filters)
