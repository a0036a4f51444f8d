"""Short-chunk CNN with residual connections (Won, Ferraro, Bogdanov & Serra 2020).

The best CNN of "Evaluation of CNN-based automatic music tagging models" and of the
music-classification tutorial: an input BatchNorm, seven residual blocks of two 3x3 convs with
stride 2 (channels 128, 128, 256, 256, 256, 256, 512), global max pooling, then
Linear(512, 512) + BatchNorm + ReLU + dropout 0.5 + Linear -> n_tags.

Input: log-mel ``(B, frames, n_mels)`` of 3.69 s at 16 kHz — 59,049 samples at hop 256 with
centred frames gives ``1 + 59049 // 256 = 231`` frames — with 128 mel bands and dB
compression (:data:`SHORT_RES_LOGMEL`). Seven stride-2 blocks reduce 128 mels to 1 band and
231 frames to 2 steps; the global max runs over whatever grid remains, so longer inputs work.
The paper computed its mel bank with torchaudio (HTK scale, no area normalisation); ours is
librosa's Slaney bank, so weights trained elsewhere would need retraining or that bank.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from ..features.config import LogMelConfig
from .registry import register_model

__all__ = ["CHUNK_SAMPLES", "SHORT_RES_LOGMEL", "Res2d", "ShortChunkResNet", "short_res"]

#: 128 mel bands, dB (10 log10 of the mel power, no top_db floor), 16 kHz, n_fft 512, hop 256.
SHORT_RES_LOGMEL = LogMelConfig(n_mels=128, log="db", top_db=None)
#: 3^10 samples = 3.69 s at 16 kHz, the chunk length of the paper.
CHUNK_SAMPLES = 59049
CHANNELS = (128, 128, 256, 256, 256, 256, 512)


class Res2d(nn.Module):
    """Residual block: ``relu(bn(conv3x3(relu(bn(conv3x3_s(x))))) + shortcut(x))``; the
    shortcut is a strided 3x3 conv + BN when shape changes, identity otherwise."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                                          nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def res_stack(channels: Sequence[int]) -> nn.Sequential:
    """Input BatchNorm + one stride-2 :class:`Res2d` per entry of ``channels``;
    ``(B, 1, n_mels, frames)`` -> ``(B, channels[-1], ceil(n_mels/2^k), ceil(frames/2^k))``."""
    blocks: list[nn.Module] = [nn.BatchNorm2d(1)]
    c_in = 1
    for c in channels:
        blocks.append(Res2d(c_in, c))
        c_in = c
    return nn.Sequential(*blocks)


def frames_for(samples: int, hop_length: int) -> int:
    """Number of centred frames ``librosa.stft``-style framing yields for ``samples``."""
    return 1 + samples // hop_length


class ShortChunkResNet(nn.Module):
    """``forward(x (B, frames, n_mels))`` -> logits ``(B, n_tags)``."""

    input_kind = "logmel"

    def __init__(self, *, n_mels: int = 128, input_length: int = 231,
                 channels: Sequence[int] = CHANNELS, n_tags: int = 50,
                 dropout: float = 0.5) -> None:
        super().__init__()
        for name, v in (("n_mels", n_mels), ("input_length", input_length), ("n_tags", n_tags)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"short_res: {name} must be a positive integer, got {v!r}")
        if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
            raise ConfigError(f"short_res: channels must be positive integers, got {channels!r}")
        self.n_mels, self.input_length, self.n_tags = n_mels, input_length, n_tags
        self.layers = res_stack(channels)
        c = channels[-1]
        self.head = nn.Sequential(nn.Linear(c, c), nn.BatchNorm1d(c), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(c, n_tags))

    def forward(self, x: Tensor) -> Tensor:
        h = self.layers(x.transpose(1, 2).unsqueeze(1))  # (B, C, F', T')
        return self.head(h.flatten(2).amax(dim=2))  # global max pool


@register_model("short_res", logmel=SHORT_RES_LOGMEL)
def short_res(*, n_mels: int = 128, input_length: int = 231,
              channels: Sequence[int] = CHANNELS, n_tags: int = 50,
              dropout: float = 0.5) -> ShortChunkResNet:
    """Short-chunk ResNet (Won et al. 2020): 231 frames (3.69 s) x 128 mels, dB."""
    return ShortChunkResNet(n_mels=n_mels, input_length=input_length, channels=tuple(channels),
                            n_tags=n_tags, dropout=dropout)
