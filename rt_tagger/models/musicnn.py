"""musicnn (Pons & Serra 2019) in PyTorch: the MTT_musicnn / MSD_musicnn taggers of the PyPI
wheel ``musicnn==0.1.0`` (``musicnn/models.py: build_musicnn``), layer for layer.

Graph (T = 187 frames, F = 96 mel bands, channels-first inside):

* input batch norm (one channel);
* timbral front-end: zero-pad 3 frames on each side, Conv2d 7x38 and 7x67 (204 filters each,
  'valid'), ReLU, batch norm, max over frequency;
* temporal front-end: Conv2d 128x1, 64x1, 32x1 (51 filters each, TensorFlow 'same' padding:
  the odd extra frame goes at the end), ReLU, batch norm, max over frequency;
* mid-end on the 561 concatenated front-end channels: three 7-wide Conv1d of 64 filters with
  zero padding 3, each ReLU then batch norm, the 2nd and 3rd with a residual connection;
* back-end on the 753 channels (front-end + 3 mid-end outputs): max and mean over time,
  interleaved per channel as TF flattens them ``[max_0, mean_0, max_1, ...]``, batch norm,
  Dense 200 + ReLU, batch norm, Dense ``n_tags``.

Every batch norm uses TensorFlow's epsilon 1e-3. Dropout is omitted (inference only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..features.config import MUSICNN
from .registry import register_model
from .tags import MSD_TAGS, MTT_TAGS  # noqa: F401 - re-exported (converters, training.data.mtat)

TF_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default epsilon

FEATURE_NAMES = ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate")


def _eager() -> bool:
    """False while tracing, scripting, compiling or exporting (graphs keep the batch symbolic)."""
    return not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
                or torch.compiler.is_exporting())


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=TF_BN_EPS)


def _bn1d(c: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(c, eps=TF_BN_EPS)


class FrontEndBranch(nn.Module):
    """Conv2d -> ReLU -> BN -> max over frequency, with TF-exact time padding.

    Computed without materialising ReLU and BN on the large (C, T, F) map: BN at inference is
    a per-channel affine map ``a*v + b``, monotonic in ``v`` (so is its float rounding), hence
    ``max_f(a*relu(z)+b) = a*relu(max_f z)+b`` for ``a >= 0`` and ``a*relu(min_f z)+b`` for
    ``a < 0`` (equal up to the rounding of BN's own formula, ~1e-6 on the logits).
    ``min_f z = -max_f(-z)``, and ``-z`` is the conv with negated weights and bias
    (exact), so one conv plus one max over frequency does it. Weights stay in their original form.
    In training mode (batch statistics) the layers run literally.
    """

    def __init__(self, filters: int, kernel: tuple[int, int], pad_time: tuple[int, int]):
        super().__init__()
        self.pad_time = pad_time
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, T, F) -> (B, C, T)
        if self.training:  # batch statistics: the literal order
            return self.bn(F.relu(self.conv(F.pad(x, (0, 0, *self.pad_time))))).amax(dim=3)
        if x.shape[0] > 1 and x.device.type == "cpu" and _eager():
            # one patch at a time: a batch's (C, T, F) maps (~140 MB at batch 16) overflow the CPU's
            # caches (on a GPU the split costs 5.8x at batch 64: BENCHMARKS.md, GPU check)
            return torch.cat([self(patch) for patch in x.split(1)])
        return self.frames(x, self.pad_time)

    def frames(self, x: torch.Tensor, pad_time: tuple[int, int]) -> torch.Tensor:
        """The inference branch with ``pad_time`` zero frames before/after instead of its own:
        ``(0, 0)`` gives only the frames whose kernel lies inside ``x`` (``T - k + 1`` of them)."""
        x = F.pad(x, (0, 0, *pad_time))
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        sign = torch.where(scale < 0, -1.0, 1.0).to(scale.dtype)  # scalars alone give fp32
        z = F.conv2d(x, self.conv.weight * sign[:, None, None, None], self.conv.bias * sign)
        extreme = z.amax(dim=3) * sign[:, None]  # max_f z where a >= 0, min_f z where a < 0
        return F.relu(extreme) * scale[:, None] + shift[:, None]


class MidEndLayer(nn.Module):
    """7-wide Conv1d over time (zero padding 3) -> ReLU -> BN."""

    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.bn = _bn1d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C, T)
        return self.bn(F.relu(self.conv(x)))


class MusicnnBody(nn.Module):
    """musicnn's input batch norm, front-end and mid-end: log-mel ``(B, T, n_mels)`` ->
    ``(B, n_features, T)`` (753 channels: 561 front-end + 3 x 64 mid-end), time preserved.

    Shared by :class:`MusiCNN` (which pools it) and :class:`~.musicnn_att.MusicnnAtt` (which
    attends over it); the attribute names are the checkpoint's tensor names."""

    def __init__(self, n_mels: int, frontend_scale: float = 1.6, midend_filters: int = 64):
        super().__init__()
        self.n_mels = n_mels
        n_timbral, n_temporal = int(frontend_scale * 128), int(frontend_scale * 32)
        self.input_bn = _bn2d(1)
        self.timbral = nn.ModuleList(
            FrontEndBranch(n_timbral, (7, int(share * n_mels)), (3, 3)) for share in (0.4, 0.7)
        )
        # TF 'same' for an even kernel k: (k-1)//2 frames before, the rest after
        self.temporal = nn.ModuleList(
            FrontEndBranch(n_temporal, (k, 1), ((k - 1) // 2, k - 1 - (k - 1) // 2)) for k in (128, 64, 32)
        )
        n_front = 2 * n_timbral + 3 * n_temporal
        self.midend = nn.ModuleList(
            MidEndLayer(c, midend_filters) for c in (n_front, midend_filters, midend_filters)
        )
        self.n_features = n_front + 3 * midend_filters

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[2] != self.n_mels or x.shape[1] < 1:
            raise ConfigError(
                f"musicnn expects log-mel of shape (batch, frames, {self.n_mels}), got {tuple(x.shape)}"
            )

    def _body(self, x: torch.Tensor, inner: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every stage of the body, channels-first; ``mid`` is the concatenation. ``inner``:
        the chunk's :meth:`frame_stage` output, computed elsewhere (see there)."""
        self._check(x)
        x = self.input_bn(x.unsqueeze(1))  # (B, 1, T, F)
        if inner is None:
            timbral = torch.cat([branch(x) for branch in self.timbral], dim=1)
        else:  # only the frames whose 7-frame kernel reaches over the chunk's edges are new
            left, right = self.frame_stage_context
            head = torch.cat([b.frames(x[:, :, :left + right], (left, 0)) for b in self.timbral], 1)
            tail = torch.cat([b.frames(x[:, :, -(left + right):], (0, right)) for b in self.timbral], 1)
            timbral = torch.cat([head, inner.transpose(1, 2), tail], dim=2)
        temporal = torch.cat([branch(x) for branch in self.temporal], dim=1)
        front = torch.cat([timbral, temporal], dim=1)  # (B, 561, T)
        cnn1 = self.midend[0](front)
        cnn2 = self.midend[1](cnn1) + cnn1
        cnn3 = self.midend[2](cnn2) + cnn2
        return {"timbral": timbral, "temporal": temporal, "cnn1": cnn1, "cnn2": cnn2, "cnn3": cnn3,
                "mid": torch.cat([front, cnn1, cnn2, cnn3], dim=1)}  # (B, 753, T)

    # ---- frame reuse: what overlapping chunks can share ------------------------------------
    #: Frames of context the frame stage needs before/after a frame (the timbral kernels' 7).
    frame_stage_context = (3, 3)

    def frame_stage(self, x: torch.Tensor) -> torch.Tensor:
        """The timbral front-end (~80 % of the body's work) on a stretch of a stream's log-mel
        ``(B, T, n_mels)``: ``(B, T - 6, 408)``, one row per frame ``3 .. T - 4``, whose kernel
        lies inside ``x``. Those rows do not depend on where a chunk starts, so chunks that
        overlap (hop < chunk) can share them: pass a chunk's rows ``3 .. 183`` as ``inner``
        to :meth:`_body` and only its three frames at each edge are computed again."""
        self._check(x)
        x = self.input_bn(x.unsqueeze(1))
        return torch.cat([b.frames(x, (0, 0)) for b in self.timbral], dim=1).transpose(1, 2)


class MusiCNN(MusicnnBody):
    """musicnn tagger. Input ``(batch, frames, n_mels)`` log-mel (``log10(1 + 10000 * mel)``),
    output ``(batch, n_tags)`` logits. Trained on 187-frame patches (3 s at 16 kHz, hop 256),
    but any length >= 1 frame is accepted (the back-end pools globally over time)."""

    input_kind = "logmel"

    def __init__(
        self,
        *,
        n_tags: int = 50,
        n_mels: int = 96,
        input_length: int = 187,
        frontend_scale: float = 1.6,  # musicnn's num_filt: 204 timbral and 51 temporal filters
        midend_filters: int = 64,
        backend_units: int = 200,
    ):
        if n_tags < 1 or n_mels < 3 or input_length < 1 or midend_filters < 1 or backend_units < 1:
            raise ConfigError(
                f"invalid musicnn arguments: n_tags={n_tags}, n_mels={n_mels}, input_length={input_length}, "
                f"midend_filters={midend_filters}, backend_units={backend_units}"
            )
        super().__init__(n_mels, frontend_scale, midend_filters)
        self.n_tags, self.input_length = n_tags, input_length
        n_pool = self.n_features
        self.pool_bn = _bn1d(2 * n_pool)
        self.dense = nn.Linear(2 * n_pool, backend_units)
        self.dense_bn = _bn1d(backend_units)
        self.classifier = nn.Linear(backend_units, n_tags)

    def _run(self, x: torch.Tensor, inner: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self._body(x, inner)
        mid = out.pop("mid")
        max_pool, mean_pool = mid.amax(dim=2), mid.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF's interleaved flatten
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return {**out, "mean_pool": mean_pool, "max_pool": max_pool,
                "penultimate": penultimate, "logits": self.classifier(penultimate), "mid": mid}

    def body_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: the body output ``(B, T, 753)`` and the logits ``(B, n_tags)`` (what a
        student sharing this body, :class:`~.musicnn_att.MusicnnAtt`, is trained from)."""
        out = self._run(x)
        return out["mid"].transpose(1, 2), out["logits"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (batch, frames, n_mels)`` -> logits ``(batch, n_tags)``."""
        return self._run(x)["logits"]

    def from_frame_stage(self, x: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` given the chunk's :meth:`frame_stage` rows ``inner (B, T - 6, 408)``."""
        return self._run(x, inner)["logits"]

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate features laid out like musicnn's ``extractor`` returns them: ``timbral
        (B, T, 408)``, ``temporal (B, T, 153)``, ``cnn1..cnn3 (B, T, 64)``, ``mean_pool`` and
        ``max_pool (B, 753)``, ``penultimate (B, 200)``, plus ``logits (B, n_tags)``."""
        out = self._run(x)
        return {k: v.transpose(1, 2) if v.dim() == 3 else v for k, v in out.items() if k != "mid"}


@register_model("musicnn", logmel=MUSICNN)
def musicnn(*, n_tags: int = 50, n_mels: int = 96, input_length: int = 187,
            frontend_scale: float = 1.6, midend_filters: int = 64,
            backend_units: int = 200) -> MusiCNN:
    """musicnn (Pons & Serra 2019); see :class:`MusiCNN` for the arguments."""
    return MusiCNN(n_tags=n_tags, n_mels=n_mels, input_length=input_length,
                   frontend_scale=frontend_scale, midend_filters=midend_filters,
                   backend_units=backend_units)
