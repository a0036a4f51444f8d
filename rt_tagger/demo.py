"""The demo clip: 24 s of music synthesised by rt-tagger itself (no file, no sound card needed).

0-8 s a plucked-string melody (Karplus-Strong), 8-16 s a drum-machine pattern (kick, snare,
hi-hat), 16-24 s both with a bass line. Deterministic (seeded), 16 kHz mono float32.
"""
from __future__ import annotations

import numpy as np

SR = 16000
BPM = 100.0


def _pluck(freq: float, dur: float, rng: np.random.Generator, decay: float = 0.996) -> np.ndarray:
    n = int(dur * SR)
    period = max(2, int(round(SR / freq)))
    buf = rng.uniform(-1, 1, period)
    out = np.empty(n)
    for i in range(n):  # Karplus-Strong: a delay line with an averaging low-pass
        j = i % period
        out[i] = buf[j]
        buf[j] = decay * 0.5 * (buf[j] + buf[(j + 1) % period])
    return out


def _kick(dur: float = 0.35) -> np.ndarray:
    t = np.arange(int(dur * SR)) / SR
    f = 40 + 90 * np.exp(-t * 25)
    return np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t * 9)


def _snare(rng: np.random.Generator, dur: float = 0.2) -> np.ndarray:
    t = np.arange(int(dur * SR)) / SR
    return (0.6 * rng.standard_normal(t.size) + 0.5 * np.sin(2 * np.pi * 185 * t)) * np.exp(-t * 22)


def _hat(rng: np.random.Generator, dur: float = 0.05) -> np.ndarray:
    noise = rng.standard_normal(int(dur * SR))
    noise = np.diff(noise, prepend=0.0)  # crude high-pass
    return 0.35 * noise * np.exp(-np.arange(noise.size) / SR * 80)


def _place(track: np.ndarray, sound: np.ndarray, at: float, gain: float = 1.0) -> None:
    i = int(at * SR)
    j = min(track.size, i + sound.size)
    if i < track.size:
        track[i:j] += gain * sound[: j - i]


def demo_clip(seconds: float = 24.0, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * SR))
    beat = 60.0 / BPM
    a_minor = [220.0, 246.94, 261.63, 293.66, 329.63, 349.23, 392.0, 440.0]
    melody = [0, 2, 4, 7, 5, 4, 2, 0, 4, 5, 7, 4, 2, 1, 0, 2]
    third = seconds / 3
    # section 1 (and 3): melody in eighth notes
    for start in (0.0, 2 * third):
        t, k = start, 0
        while t < start + third - beat / 2:
            note = a_minor[melody[k % len(melody)]]
            _place(y, _pluck(note, beat, rng), t, 0.5)
            t += beat / 2
            k += 1
    # section 2 and 3: drums; bass in 3
    for start in (third, 2 * third):
        t, k = start, 0
        while t < start + third - 1e-6:
            if k % 4 in (0, 2):
                _place(y, _kick(), t, 0.9)
            else:
                _place(y, _snare(rng), t, 0.6)
            _place(y, _hat(rng), t, 1.0)
            _place(y, _hat(rng), t + beat / 2, 0.7)
            if start == 2 * third:
                _place(y, _pluck(a_minor[[0, 0, 5, 4][k % 4]] / 4, beat, rng, 0.999), t, 0.6)
            t += beat
            k += 1
    y /= max(1e-9, np.abs(y).max()) / 0.8
    return y.astype(np.float32)


def write_demo_clip(path, seconds: float = 24.0) -> str:
    import soundfile as sf

    sf.write(path, demo_clip(seconds), SR, subtype="FLOAT")
    return str(path)
