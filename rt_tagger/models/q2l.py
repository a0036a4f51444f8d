"""Q2L tagger: short-chunk ResCNN backbone + Query2Label decoder (Yang, after Liu et al. 2021).

* Backbone: input BatchNorm + five stride-2 residual blocks of the short-chunk ResNet
  (channels 128, 128, 256, 256, 256); on 231 frames x 128 mels this leaves 4 bands x 8 steps.
* The remaining frequency bands are flattened into the channels and projected to ``width``
  per time step (Q2L's 1x1 input projection), giving one token per backbone time step —
  so the cross-attention maps are per-tag *time* maps.
* Optional Transformer encoder (``encoder_layers``, default 1 as in Query2Label; 0 disables).
* ``decoder_layers`` (2) post-LN decoder layers; the queries are ``n_tags`` learnable label
  embeddings, the keys the features plus fixed sinusoidal time positions, the values the
  features. A final LayerNorm and a per-label linear layer (GroupFC: label ``k`` has its own
  weight vector and bias) give one logit per label.

``forward(x, return_attention=True)`` returns ``(logits, cross)`` with ``cross`` of shape
``(B, decoder_layers, heads, n_tags, T)``: for each tag, its attention over the T time steps
(rows sum to 1). Step ``t`` covers input frames ``[32 t, 32 t + 32)`` (five stride-2 blocks),
see :meth:`Q2L.time_steps_to_frames`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .attention import DecoderLayer, EncoderLayer, TimeMap, sinusoidal_positions
from .registry import register_model
from .short_res import SHORT_RES_LOGMEL, res_stack

__all__ = ["Q2L", "q2l"]

BACKBONE = (128, 128, 256, 256, 256)


def _down(n: int, k: int) -> int:
    for _ in range(k):  # conv 3x3, stride 2, padding 1: ceil(n / 2)
        n = (n + 1) // 2
    return n


class Q2L(nn.Module):
    """``forward(x (B, frames, n_mels), return_attention=False)`` -> logits ``(B, n_tags)``."""

    input_kind = "logmel"

    def __init__(self, *, n_mels: int = 128, input_length: int = 231,
                 channels: Sequence[int] = BACKBONE, width: int = 256, heads: int = 8,
                 encoder_layers: int = 1, decoder_layers: int = 2, ffn_dim: int = 1024,
                 n_tags: int = 50, dropout: float = 0.1) -> None:
        super().__init__()
        for name, v in (("n_mels", n_mels), ("input_length", input_length), ("width", width),
                        ("heads", heads), ("decoder_layers", decoder_layers),
                        ("ffn_dim", ffn_dim), ("n_tags", n_tags)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"q2l: {name} must be a positive integer, got {v!r}")
        if not isinstance(encoder_layers, int) or encoder_layers < 0:
            raise ConfigError(f"q2l: encoder_layers must be >= 0, got {encoder_layers!r}")
        self.n_mels, self.input_length, self.n_tags = n_mels, input_length, n_tags
        self.stride = 2 ** len(channels)
        self.n_steps = _down(input_length, len(channels))
        self.backbone = res_stack(channels)
        self.project = nn.Linear(channels[-1] * _down(n_mels, len(channels)), width)
        self.register_buffer("pos", sinusoidal_positions(self.n_steps, width)[None],
                             persistent=False)
        self.encoder = nn.ModuleList(
            EncoderLayer(width, heads, ffn_dim, dropout) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(
            DecoderLayer(width, heads, ffn_dim, dropout) for _ in range(decoder_layers))
        self.label_embed = nn.Parameter(torch.randn(n_tags, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        # GroupFC: one weight vector and bias per label.
        self.fc_weight = nn.Parameter(torch.randn(n_tags, width) * width ** -0.5)
        self.fc_bias = nn.Parameter(torch.zeros(n_tags))

    def time_steps_to_frames(self) -> TimeMap:
        """Cross-attention index ``t`` <-> input frames ``[32 t, 32 t + 32)``."""
        return TimeMap(n_steps=self.n_steps, hop=self.stride, unit="frames")

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        f = self.backbone(x.transpose(1, 2).unsqueeze(1))  # (B, C, F', T')
        mem = self.project(f.permute(0, 3, 1, 2).flatten(2))  # (B, T', width)
        pos = self.pos[:, : mem.shape[1]]
        for layer in self.encoder:
            mem, _ = layer(mem, pos=pos)
        tgt = self.label_embed.unsqueeze(0).expand(x.shape[0], -1, -1)
        cross = []
        for layer in self.decoder:
            tgt, probs = layer(tgt, mem, pos)
            cross.append(probs)
        logits = (self.norm(tgt) * self.fc_weight).sum(-1) + self.fc_bias
        if return_attention:
            return logits, torch.stack(cross, dim=1)
        return logits


@register_model("q2l", logmel=SHORT_RES_LOGMEL)
def q2l(*, n_mels: int = 128, input_length: int = 231, channels: Sequence[int] = BACKBONE,
        width: int = 256, heads: int = 8, encoder_layers: int = 1, decoder_layers: int = 2,
        ffn_dim: int = 1024, n_tags: int = 50, dropout: float = 0.1) -> Q2L:
    """Q2L music tagger (Yang): 231 frames (3.69 s) x 128 mels, dB, 50 tags."""
    return Q2L(n_mels=n_mels, input_length=input_length, channels=tuple(channels), width=width,
               heads=heads, encoder_layers=encoder_layers, decoder_layers=decoder_layers,
               ffn_dim=ffn_dim, n_tags=n_tags, dropout=dropout)
