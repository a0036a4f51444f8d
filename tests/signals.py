"""Seeded synthetic signals and real music clips (tests/data), importable by tests."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
SR = 16000

MUSIC_CLIPS = (
    "render_piano_monteverdi_12s.flac",
    "render_strings_bach_bwv47.5_12s.flac",
    "render_drums_70bpm_12s.flac",
)


@functools.lru_cache(maxsize=None)
def load_music(name: str) -> np.ndarray:
    import soundfile as sf

    y, sr = sf.read(DATA / name, dtype="float32")
    assert sr == SR and y.ndim == 1
    y.setflags(write=False)
    return y


@functools.lru_cache(maxsize=None)
def synthetic(kind: str, seconds: float = 5.0, seed: int = 0) -> np.ndarray:
    """Seeded test signals at 16 kHz, float32, read-only (cached)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    if kind == "noise":
        y = 0.1 * rng.standard_normal(n)
    elif kind == "sine":
        y = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    elif kind == "chirp":  # 20 Hz -> 7.9 kHz exponential sweep
        f0, f1 = 20.0, 7900.0
        k = np.log(f1 / f0) / seconds
        y = 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    elif kind == "clicks":
        y = np.zeros(n)
        y[rng.integers(0, n, 40)] = rng.choice([-1.0, 1.0], 40)
    elif kind == "silence":
        y = np.zeros(n)
    elif kind == "loud":  # clipped square wave at full scale
        y = np.sign(np.sin(2 * np.pi * 97.0 * t))
    else:
        raise ValueError(kind)
    out = y.astype(np.float32)
    out.setflags(write=False)
    return out


SYNTHETIC = ("noise", "sine", "chirp", "clicks", "silence", "loud")
