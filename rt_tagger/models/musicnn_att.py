"""musicnn_att: musicnn's pretrained convolutions with a self-attention back-end over time.

The Spec_Att family (Won, Chun & Serra 2019) with the *Spec* front-end replaced by the body of
musicnn (Pons & Serra 2019): its input batch norm, timbral and temporal front-end and dense
mid-end, :class:`~.musicnn.MusicnnBody`, which gives 753 channels per frame and keeps time. On
top, instead of musicnn's global max/mean pooling and dense layers: max and mean pooling over
``pool`` frames (4 by default: 47 steps of 64 ms for a 3 s chunk; the attention stays
readable and the back-end costs a quarter), a linear projection of the pooled 2 x 753 channels
to the attention width, and the *Att* back-end (:class:`~.attention.AttentionBackend`: [CLS],
learned positions, BERT encoder layers, linear classifier on [CLS]).

So the model tags from the same timbre and rhythm detectors as its teacher ``musicnn.mtat``,
and its [CLS] attention says which frames it used, as in Spec_Att. The body is loaded from
``musicnn.mtat`` and frozen by default (``train_body=False``): it stays in eval mode and has no
gradients, so a student can be trained on cached body outputs (see
``rt_tagger.training.body_cache``) and only the back-end (~1 M parameters) learns.

Time map: musicnn keeps time ('same' padding), so attention index ``t + 1`` (after [CLS]) is
input frames ``[pool * t, pool * (t + 1))``; the last step ends with the chunk (187 frames:
46 steps of 4 frames and one of 3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..features.config import MUSICNN
from .attention import AttentionBackend, TimeMap
from .musicnn import MusicnnBody
from .registry import register_model

__all__ = ["BODY_PREFIXES", "MusicnnAtt", "musicnn_att"]

#: Tensor-name prefixes of the body: the same names as in a ``musicnn`` checkpoint.
BODY_PREFIXES = ("input_bn.", "timbral.", "temporal.", "midend.")


class MusicnnAtt(MusicnnBody):
    """``forward(x (B, frames, n_mels), return_attention=False, cls_attention=None)`` ->
    logits ``(B, n_tags)`` (or ``(logits, attn)``, ``attn (B, layers, heads, T+1, T+1)``).

    :meth:`body_features` gives the body's output ``(B, T, 753)`` and :meth:`head` pools and
    runs the back-end on it, so that ``head(body_features(x)) == forward(x)``.
    """

    input_kind = "logmel"

    def __init__(self, *, n_tags: int = 50, n_mels: int = 96, input_length: int = 187,
                 width: int = 128, layers: int = 2, heads: int = 4, ffn_dim: int | None = None,
                 dropout: float = 0.1, pool: int = 4, train_body: bool = False) -> None:
        for name, v in (("n_tags", n_tags), ("n_mels", n_mels), ("input_length", input_length),
                        ("width", width), ("heads", heads), ("pool", pool)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"musicnn_att: {name} must be a positive integer, got {v!r}")
        if n_mels < 3:
            raise ConfigError(f"musicnn_att: n_mels must be >= 3, got {n_mels}")
        super().__init__(n_mels)
        self.n_tags, self.input_length, self.train_body = n_tags, input_length, bool(train_body)
        self.pool = pool
        self.n_steps = -(-input_length // pool)
        self.project = nn.Linear(2 * self.n_features, width)
        self.backend = AttentionBackend(width=width, layers=layers, heads=heads,
                                        max_steps=self.n_steps, n_tags=n_tags, dropout=dropout,
                                        ffn_dim=ffn_dim)
        if not self.train_body:
            for p in self._body_parameters():
                p.requires_grad_(False)

    def _body_parameters(self):
        for m in (self.input_bn, self.timbral, self.temporal, self.midend):
            yield from m.parameters()

    def train(self, mode: bool = True) -> "MusicnnAtt":
        """A frozen body stays in eval mode (running batch-norm statistics) in training too."""
        super().train(mode)
        if not self.train_body:
            for m in (self.input_bn, self.timbral, self.temporal, self.midend):
                m.eval()
        return self

    def time_steps_to_frames(self) -> TimeMap:
        """Attention index ``t + 1`` (after [CLS]) <-> input frames ``[pool*t, pool*(t+1))``."""
        return TimeMap(n_steps=self.n_steps, hop=self.pool, unit="frames", limit=self.input_length)

    def body_features(self, x: Tensor) -> Tensor:
        """``(B, frames, n_mels)`` log-mel -> ``(B, frames, 753)`` body output."""
        return self._body(x)["mid"].transpose(1, 2)

    def from_frame_stage(self, x: Tensor, inner: Tensor, return_attention: bool = False,
                         ) -> Tensor | tuple[Tensor, Tensor]:
        """:meth:`forward` given the chunk's :meth:`~.musicnn.MusicnnBody.frame_stage` rows
        ``inner (B, T - 6, 408)`` (shared between overlapping chunks of a stream)."""
        return self.head(self._body(x, inner)["mid"].transpose(1, 2), return_attention)

    def head(self, feats: Tensor, return_attention: bool = False,
             cls_attention: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """The trainable part on the body output ``(B, T, 753)``: max and mean over ``pool``
        frames (a shorter last group for ``T`` not divisible by ``pool``), projection, back-end."""
        x = feats.transpose(1, 2)  # (B, 753, T)
        pooled = torch.cat([F.max_pool1d(x, self.pool, ceil_mode=True),
                            F.avg_pool1d(x, self.pool, ceil_mode=True, count_include_pad=False)], dim=1)
        return self.backend(self.project(pooled.transpose(1, 2)), return_attention, cls_attention)

    def forward(self, x: Tensor, return_attention: bool = False,
                cls_attention: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        return self.head(self.body_features(x), return_attention, cls_attention)

    def load_body(self, state_dict: dict[str, Tensor]) -> None:
        """Copy the body's tensors from a ``musicnn`` state dict (same names); shapes must match."""
        mine = self.state_dict()
        body = {k: v for k, v in state_dict.items() if k.startswith(BODY_PREFIXES)}
        want = {k for k in mine if k.startswith(BODY_PREFIXES)}
        if set(body) != want:
            raise ConfigError(f"musicnn_att: the musicnn state dict lacks {sorted(want - set(body))[:3]}"
                              f" or has extra {sorted(set(body) - want)[:3]} body tensors")
        for k, v in body.items():
            if mine[k].shape != v.shape:
                raise ConfigError(f"musicnn_att: body tensor {k} has shape {tuple(v.shape)}, "
                                  f"need {tuple(mine[k].shape)}")
        with torch.no_grad():
            for k, v in body.items():
                mine[k].copy_(v)


@register_model("musicnn_att", logmel=MUSICNN)
def musicnn_att(*, n_tags: int = 50, n_mels: int = 96, input_length: int = 187, width: int = 128,
                layers: int = 2, heads: int = 4, ffn_dim: int | None = None,
                dropout: float = 0.1, pool: int = 4, train_body: bool = False) -> MusicnnAtt:
    """musicnn's body + Spec_Att's attention back-end; see :class:`MusicnnAtt`."""
    return MusicnnAtt(n_tags=n_tags, n_mels=n_mels, input_length=input_length, width=width,
                      layers=layers, heads=heads, ffn_dim=ffn_dim, dropout=dropout, pool=pool,
                      train_body=train_body)
