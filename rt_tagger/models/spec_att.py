"""Spec_Att (Won, Chun & Serra 2019): musically motivated CNN front-end + Transformer back-end.

*Spec* front-end (paper section 3.1, Figure 1, Table 1), on a log-mel ``(B, frames, n_mels)``:

* input BatchNorm over the whole spectrogram (one channel);
* vertical (timbral) filters of height ``int(0.4 * n_mels)`` and ``int(0.9 * n_mels)`` (38 and
  86 for 96 mels) and widths 1, 3, 7 — six conv branches — each Conv -> ReLU -> BatchNorm,
  then max over the remaining frequency axis;
* horizontal (temporal) filters of lengths 33, 65, 129, 165 frames on the frequency-averaged
  spectrogram, each Conv -> ReLU -> BatchNorm;
* "same" padding in time everywhere, so every frame keeps its own time step (T = frames);
* concatenation along channels, then a 1x1 conv to the attention width + BatchNorm + ReLU.

Channels follow Table 1 by default (width 1/3/7: 32/16/8 per height; length 33/65/129/165:
64/32/16/8), 232 channels in all; ``frontend_scale`` multiplies them (2 gives 64/32/16 and
128/64/32/16, the larger reading of the project brief). The paper gives no layer between the concatenation and the
encoder; the 1x1 projection to ``width`` is our reading of "the feature map is the word
embedding" when widths differ. Back-end: :class:`~.attention.AttentionBackend` (learned
position embeddings, 2 layers, 8 heads, width 512, FFN 4x width, GELU, dropout 0.1).

Time map: front-end step ``t`` is input frame ``t`` (hop 1), so attention index ``t + 1``
(after [CLS]) is frame ``t``; see :meth:`SpecAtt.time_steps_to_frames`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..features.config import SPEC_ATT_DB
from .attention import AttentionBackend, TimeMap
from .registry import register_model

__all__ = ["SpecAtt", "SpecFrontEnd", "spec_att"]

#: Table 1: (channels, width) of the vertical filters, used at both heights.
VERTICAL = ((32, 1), (16, 3), (8, 7))
#: Table 1: (channels, length) of the horizontal filters.
HORIZONTAL = ((64, 33), (32, 65), (16, 129), (8, 165))
HEIGHTS = (0.4, 0.9)


class SpecFrontEnd(nn.Module):
    """``(B, frames, n_mels)`` -> ``(B, frames, width)`` (time preserved)."""

    def __init__(self, n_mels: int, width: int, scale: int = 1,
                 vertical: Sequence[Sequence[int]] = VERTICAL,
                 horizontal: Sequence[Sequence[int]] = HORIZONTAL) -> None:
        super().__init__()
        vertical = [(c * scale, w) for c, w in vertical]
        horizontal = [(c * scale, n) for c, n in horizontal]
        self.input_bn = nn.BatchNorm2d(1)
        self.vertical = nn.ModuleList()
        for frac in HEIGHTS:
            height = int(frac * n_mels)
            if height < 1:
                raise ConfigError(f"n_mels={n_mels} is too small for the Spec front-end")
            for ch, w in vertical:
                self.vertical.append(nn.Sequential(
                    nn.Conv2d(1, ch, (height, w), padding=(0, w // 2)), nn.ReLU(),
                    nn.BatchNorm2d(ch)))
        self.horizontal = nn.ModuleList(
            nn.Sequential(nn.Conv1d(1, ch, n, padding=n // 2), nn.ReLU(), nn.BatchNorm1d(ch))
            for ch, n in horizontal)
        n_ch = len(HEIGHTS) * sum(c for c, _ in vertical) + sum(c for c, _ in horizontal)
        self.project = nn.Sequential(nn.Conv1d(n_ch, width, 1), nn.BatchNorm1d(width), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        s = self.input_bn(x.transpose(1, 2).unsqueeze(1))  # (B, 1, n_mels, frames)
        v = [branch(s).amax(dim=2) for branch in self.vertical]  # each (B, C, frames)
        avg = s.mean(dim=2)  # (B, 1, frames)
        h = [branch(avg) for branch in self.horizontal]
        return self.project(torch.cat(v + h, dim=1)).transpose(1, 2)


class SpecAtt(nn.Module):
    """Spec_Att tagger. ``forward(x (B, frames, n_mels), return_attention=False,
    cls_attention=None)`` -> logits ``(B, n_tags)`` (or ``(logits, attn)``).

    ``frames`` may be shorter than ``input_length`` (position embeddings are sliced); models
    are trained and run on exactly ``input_length`` frames. See
    :class:`~.attention.AttentionBackend` for ``cls_attention`` and the attention layout.
    """

    input_kind = "logmel"

    def __init__(self, *, n_mels: int = 96, input_length: int = 256, width: int = 512,
                 layers: int = 2, heads: int = 8, n_tags: int = 50, dropout: float = 0.1,
                 ffn_dim: int | None = None, frontend_scale: int = 1) -> None:
        super().__init__()
        for name, v in (("n_mels", n_mels), ("input_length", input_length), ("width", width),
                        ("heads", heads), ("n_tags", n_tags), ("frontend_scale", frontend_scale)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"spec_att: {name} must be a positive integer, got {v!r}")
        self.n_mels, self.input_length, self.n_tags = n_mels, input_length, n_tags
        self.frontend = SpecFrontEnd(n_mels, width, frontend_scale)
        self.backend = AttentionBackend(width=width, layers=layers, heads=heads,
                                        max_steps=input_length, n_tags=n_tags, dropout=dropout,
                                        ffn_dim=ffn_dim)

    def time_steps_to_frames(self) -> TimeMap:
        """Attention index ``t + 1`` (after [CLS]) <-> input frames ``[t, t + 1)``."""
        return TimeMap(n_steps=self.input_length, hop=1, unit="frames")

    def forward(self, x: Tensor, return_attention: bool = False,
                cls_attention: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        return self.backend(self.frontend(x), return_attention, cls_attention)


@register_model("spec_att", logmel=SPEC_ATT_DB)
def spec_att(*, n_mels: int = 96, input_length: int = 256, width: int = 512, layers: int = 2,
             heads: int = 8, n_tags: int = 50, dropout: float = 0.1,
             ffn_dim: int | None = None, frontend_scale: int = 1) -> SpecAtt:
    """Spec_Att of Won et al. (2019) with the paper's defaults (256 frames x 96 mels, dB)."""
    return SpecAtt(n_mels=n_mels, input_length=input_length, width=width, layers=layers,
                   heads=heads, n_tags=n_tags, dropout=dropout, ffn_dim=ffn_dim,
                   frontend_scale=frontend_scale)
