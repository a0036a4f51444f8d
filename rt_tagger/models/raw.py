"""Waveform models: Raw_Att (Won et al. 2019) and the sample-level CNN Raw_CNN_L (Lee et al. 2017).

Sample-level CNN (Table 1 "Raw", ten layers of 1x3 filters, channels 128, 128, 128, 256, 256,
256, 256, 256, 256, 512): layer 1 is a strided conv (kernel 3, stride 3) + BatchNorm + ReLU;
every later layer is conv (kernel 3, "same" padding) + BatchNorm + ReLU + max-pool 3. Convs
keep their bias as in the original Keras models.

* ``raw_att``: the first five layers are the *Raw* front-end — 65,610 samples become 270 steps
  of 243 samples (15.2 ms at 16 kHz) — followed by one 1x7 conv (+ BatchNorm + ReLU) to the
  attention width (the paper's match for the 7-frame vertical filters) and the *Att* back-end.
* ``raw_cnn_l``: all ten layers (59,049 = 3^10 samples become one step), global max pooling over
  time (so longer inputs also work), dropout 0.5, Linear -> n_tags.

Input ``(B, samples)`` float32 at 16 kHz, no normalisation.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .attention import AttentionBackend, TimeMap
from .registry import register_model

__all__ = ["RawAtt", "RawCNN", "raw_att", "raw_cnn_l", "sample_level_layers"]

#: Table 1, Raw: output channels of the ten 1x3 conv layers.
CHANNELS = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512)
FRONTEND_LAYERS = 5


def sample_level_layers(channels: tuple[int, ...]) -> nn.Sequential:
    """Strided first layer, then conv-BN-ReLU-maxpool(3) layers; ``(B,1,N)`` -> ``(B,C,N/3^k)``."""
    layers: list[nn.Module] = [nn.Sequential(
        nn.Conv1d(1, channels[0], 3, stride=3), nn.BatchNorm1d(channels[0]), nn.ReLU())]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers.append(nn.Sequential(nn.Conv1d(c_in, c_out, 3, padding=1), nn.BatchNorm1d(c_out),
                                    nn.ReLU(), nn.MaxPool1d(3)))
    return nn.Sequential(*layers)


def _steps(n_samples: int, n_layers: int) -> int:
    n = n_samples // 3
    for _ in range(n_layers - 1):
        n //= 3
    return n


def _check(name: str, **values: object) -> None:
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name}: {key} must be a positive integer, got {v!r}")


class RawAtt(nn.Module):
    """Raw_Att: ``forward(x (B, samples), return_attention=False, cls_attention=None)``;
    attention and ``cls_attention`` as in :class:`~.attention.AttentionBackend`."""

    input_kind = "waveform"

    def __init__(self, *, input_length: int = 65610, width: int = 512, layers: int = 2,
                 heads: int = 8, n_tags: int = 50, dropout: float = 0.1,
                 ffn_dim: int | None = None) -> None:
        super().__init__()
        _check("raw_att", input_length=input_length, width=width, heads=heads, n_tags=n_tags)
        self.input_length, self.n_tags = input_length, n_tags
        self.n_steps = _steps(input_length, FRONTEND_LAYERS)
        if self.n_steps < 1:
            raise ConfigError(f"raw_att: input_length must be at least {3 ** FRONTEND_LAYERS} "
                              f"samples, got {input_length}")
        self.frontend = sample_level_layers(CHANNELS[:FRONTEND_LAYERS])
        c = CHANNELS[FRONTEND_LAYERS - 1]
        self.conv7 = nn.Sequential(nn.Conv1d(c, width, 7, padding=3), nn.BatchNorm1d(width),
                                   nn.ReLU())
        self.backend = AttentionBackend(width=width, layers=layers, heads=heads,
                                        max_steps=self.n_steps, n_tags=n_tags, dropout=dropout,
                                        ffn_dim=ffn_dim)

    def time_steps_to_frames(self) -> TimeMap:
        """Attention index ``t + 1`` <-> samples ``[243 t, 243 (t + 1))`` (3^5 = 243 per step)."""
        return TimeMap(n_steps=self.n_steps, hop=3 ** FRONTEND_LAYERS, unit="samples")

    def forward(self, x: Tensor, return_attention: bool = False,
                cls_attention: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        feats = self.conv7(self.frontend(x.unsqueeze(1))).transpose(1, 2)  # (B, T, W)
        return self.backend(feats, return_attention, cls_attention)


class RawCNN(nn.Module):
    """Raw_CNN_L (sample-level CNN): ``forward(x (B, samples))`` -> logits ``(B, n_tags)``."""

    input_kind = "waveform"

    def __init__(self, *, input_length: int = 59049, n_tags: int = 50,
                 dropout: float = 0.5) -> None:
        super().__init__()
        _check("raw_cnn_l", input_length=input_length, n_tags=n_tags)
        if _steps(input_length, len(CHANNELS)) < 1:
            raise ConfigError(f"raw_cnn_l: input_length must be at least {3 ** len(CHANNELS)} "
                              f"samples, got {input_length}")
        self.input_length, self.n_tags = input_length, n_tags
        self.layers = sample_level_layers(CHANNELS)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(CHANNELS[-1], n_tags)

    def forward(self, x: Tensor) -> Tensor:
        h = self.layers(x.unsqueeze(1)).amax(dim=2)  # global max pool over time: (B, 512)
        return self.classifier(self.drop(h))


@register_model("raw_att", logmel=None)
def raw_att(*, input_length: int = 65610, width: int = 512, layers: int = 2, heads: int = 8,
            n_tags: int = 50, dropout: float = 0.1, ffn_dim: int | None = None) -> RawAtt:
    """Raw_Att of Won et al. (2019): 65,610 samples at 16 kHz (~4.1 s)."""
    return RawAtt(input_length=input_length, width=width, layers=layers, heads=heads,
                  n_tags=n_tags, dropout=dropout, ffn_dim=ffn_dim)


@register_model("raw_cnn_l", logmel=None)
def raw_cnn_l(*, input_length: int = 59049, n_tags: int = 50, dropout: float = 0.5) -> RawCNN:
    """Sample-level CNN of Lee et al. (2017): 59,049 samples at 16 kHz (~3.69 s)."""
    return RawCNN(input_length=input_length, n_tags=n_tags, dropout=dropout)

