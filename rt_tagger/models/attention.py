"""Transformer pieces written out by hand: multi-head attention, BERT-style encoder, decoder.

Written explicitly (no ``nn.TransformerEncoder``) so that the attention probabilities of the
very forward pass that made the logits can be returned, and so that the [CLS] attention row of
the last layer can be replaced (Won et al. 2019, section 5.3, tag-wise contribution maps).
There is no data-dependent Python control flow in any ``forward`` (only ``None`` checks and
shape arithmetic), so the models export to ONNX.

Shapes: ``B`` batch, ``S`` sequence (``T + 1`` with [CLS]), ``W`` width, ``H`` heads.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .timemap import TimeMap

__all__ = ["AttentionBackend", "DecoderLayer", "EncoderLayer", "MultiHeadAttention", "TimeMap",
           "sinusoidal_positions"]


def sinusoidal_positions(n: int, width: int) -> Tensor:
    """``(n, width)`` fixed sine/cosine position codes of Vaswani et al. (2017)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float64) * (-math.log(10000.0) / width))
    pe = torch.zeros(n, width, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return pe.float()


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention with explicit Q/K/V/output projections.

    ``forward(query (B,Sq,W), key (B,Sk,W), value (B,Sk,W))`` returns ``(out (B,Sq,W),
    probs (B,H,Sq,Sk))``; ``probs`` are the softmax weights actually applied (with any
    ``row0`` override in place, before attention dropout). ``row0`` ``(B, Sk)`` replaces the
    weights of query 0 for every head.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"attention width {width} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:  # (B,S,W) -> (B,H,S,D)
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                row0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, k, v = self._split(self.q(query)), self._split(self.k(key)), self._split(self.v(value))
        probs = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        if row0 is not None:
            first = row0.to(probs.dtype)[:, None, None, :].expand(-1, self.heads, 1, -1)
            probs = torch.cat([first, probs[:, :, 1:, :]], dim=2)
        ctx = self.dropout(probs) @ v  # (B,H,Sq,D)
        return self.out(ctx.transpose(1, 2).flatten(2)), probs


class EncoderLayer(nn.Module):
    """BERT layer (post-LN): ``x = LN(x + Drop(MHA(x)))``; ``x = LN(x + Drop(FFN(x)))``,
    FFN = Linear -> GELU -> Linear."""

    def __init__(self, width: int, heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(width, heads, dropout)
        self.norm1 = nn.LayerNorm(width, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, width))
        self.norm2 = nn.LayerNorm(width, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, row0: Tensor | None = None,
                pos: Tensor | None = None) -> tuple[Tensor, Tensor]:
        qk = x if pos is None else x + pos
        a, probs = self.attn(qk, qk, x, row0)
        x = self.norm1(x + self.drop(a))
        x = self.norm2(x + self.drop(self.ffn(x)))
        return x, probs


class DecoderLayer(nn.Module):
    """Post-LN Transformer decoder layer (DETR/Query2Label style): self-attention among the
    queries, cross-attention from queries to memory (keys get ``pos`` added), FFN."""

    def __init__(self, width: int, heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(width, heads, dropout)
        self.cross_attn = MultiHeadAttention(width, heads, dropout)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        a, _ = self.self_attn(tgt, tgt, tgt)
        tgt = self.norm1(tgt + self.drop(a))
        a, cross = self.cross_attn(tgt, memory + pos, memory)
        tgt = self.norm2(tgt + self.drop(a))
        tgt = self.norm3(tgt + self.drop(self.ffn(tgt)))
        return tgt, cross


class AttentionBackend(nn.Module):
    """The *Att* back-end of Won et al. (2019): [CLS] + BERT encoder + linear classifier.

    Input ``(B, T, W)`` front-end features (``T <= max_steps``). A learnable [CLS] vector
    (an ``nn.Parameter``) is prepended, learned position embeddings (BERT-style, one per
    position up to ``max_steps + 1``) are added, then LayerNorm and dropout as in BERT's
    embedding layer, ``layers`` encoder layers, and dropout + Linear on the [CLS] output.

    ``cls_attention``: ``(B, T + 1)`` weights over [CLS] and the T steps, or ``(B, T)`` over the
    steps only ([CLS] key gets weight 0). It replaces the last layer's [CLS] attention row in
    all heads — a one-hot row at step ``t`` gives the paper's tag-wise contribution of ``t``.
    With ``return_attention`` the result is ``(logits, attn)``, ``attn`` ``(B, layers, heads,
    T + 1, T + 1)``, index 0 = [CLS], rows sum to 1 (unless overridden otherwise).
    """

    def __init__(self, *, width: int, layers: int, heads: int, max_steps: int, n_tags: int,
                 dropout: float = 0.1, ffn_dim: int | None = None) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"the attention back-end needs at least 1 layer, got {layers}")
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, max_steps + 1, width) * 0.02)
        self.norm = nn.LayerNorm(width, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(width, heads, ffn_dim or 4 * width, dropout) for _ in range(layers))
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, n_tags)

    def embed(self, feats: Tensor) -> Tensor:
        """``(B, T, W)`` -> ``(B, T + 1, W)``: [CLS] prepended, positions added, normalised."""
        h = torch.cat([self.cls.expand(feats.shape[0], -1, -1), feats], dim=1)
        return self.drop(self.norm(h + self.pos[:, : h.shape[1]]))

    def forward(self, feats: Tensor, return_attention: bool = False,
                cls_attention: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        h = self.embed(feats)
        row0 = None
        if cls_attention is not None:
            row0 = cls_attention
            if cls_attention.shape[-1] == feats.shape[1]:  # (B, T): no weight on [CLS] itself
                row0 = torch.cat([torch.zeros_like(cls_attention[:, :1]), cls_attention], dim=1)
        attn = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h, probs = layer(h, row0 if i == last else None)
            attn.append(probs)
        logits = self.classifier(self.head_drop(h[:, 0]))
        if return_attention:
            return logits, torch.stack(attn, dim=1)
        return logits
