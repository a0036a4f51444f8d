"""Training augmentations (all off by default), with parameters drawn in the epoch plan.

Waveform augmentations act on the raw chunk before the log-mel: gain (random dB), additive
white noise (random SNR) and mixing two clips (``y = (1 - w) a + w b``, labels: union, w in
[0, 0.5]; under distillation the
elementwise max of both chunks' teacher targets). Time shift rolls the model input (frames or samples) by a random offset.
"""
from __future__ import annotations

import numpy as np

__all__ = ["draw", "needs_waveform", "apply_wave", "apply_shift"]


def needs_waveform(cfg) -> bool:
    return cfg.aug_gain_db > 0 or cfg.aug_noise_snr > 0 or cfg.aug_mix > 0


def draw(cfg, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-item augmentation parameters for ``n`` items (always drawn in the same order)."""
    return {
        "gain_db": rng.uniform(-1, 1, n) * cfg.aug_gain_db,
        "snr": cfg.aug_noise_snr + 20 * rng.random(n),
        "noise_seed": rng.integers(0, 2**31, n),
        "mix": rng.random(n) < cfg.aug_mix,
        "mix_weight": 0.5 * rng.random(n),
        "mix_pick": rng.random(n),
        "mix_start": rng.random(n),
        "shift": rng.random(n),
    }


def apply_wave(cfg, y: np.ndarray, p: dict, k: int, other: np.ndarray | None) -> np.ndarray:
    """Augment waveform chunk ``y`` of item ``k`` (``other``: the chunk to mix in, if any)."""
    if other is not None:
        w = p["mix_weight"][k]
        y = (1 - w) * y + w * other
    if cfg.aug_gain_db > 0:
        y = y * np.float32(10 ** (p["gain_db"][k] / 20))
    if cfg.aug_noise_snr > 0:
        power = float(np.mean(y.astype(np.float64) ** 2)) + 1e-12
        noise = np.random.default_rng(int(p["noise_seed"][k])).standard_normal(y.size)
        y = y + noise * np.sqrt(power / 10 ** (p["snr"][k] / 10))
    return y.astype(np.float32)


def apply_shift(x: np.ndarray, p: dict, k: int) -> np.ndarray:
    return np.roll(x, int(p["shift"][k] * x.shape[0]), axis=0)
