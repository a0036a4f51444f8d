"""The demo clip: 24 s of music synthesised by rt-tagger itself (no file, no sound card needed).

The clip is three equal sections, listed in :data:`SECTIONS`: a plucked-string melody
(Karplus-Strong), a drum-machine pattern (kick, snare, hi-hat), then both with a bass line.
:func:`demo_clip` builds the audio from that table and :func:`describe` tells the user what
it contains from the same table, so the two cannot drift. Deterministic (seeded), 16 kHz mono
float32.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

SR = 16000
BPM = 100.0


class Section(NamedTuple):
    """One third of the clip and the parts that play in it."""

    melody: bool  # plucked-string melody in A minor, eighth notes
    drums: bool  # kick on beats 1 and 3, snare on 2 and 4, hi-hat on every eighth
    bass: bool  # plucked bass line, one note per beat (only with the drums)


SECTIONS = (Section(melody=True, drums=False, bass=False),
            Section(melody=False, drums=True, bass=False),
            Section(melody=True, drums=True, bass=True))
#: part -> (name when it plays alone, short name in a mix)
PART_NAMES = {"melody": ("plucked melody", "melody"),
              "drums": ("drum machine", "drums"),
              "bass": ("bass line", "bass")}


def describe(seconds: float = 24.0) -> str:
    """One line (under 80 columns) saying what the demo clip of ``seconds`` plays, and when."""
    third = seconds / len(SECTIONS)
    parts = []
    for i, sec in enumerate(SECTIONS):
        names = [PART_NAMES[p] for p in Section._fields if getattr(sec, p)]
        what = names[0][0] if len(names) == 1 else " + ".join(short for _, short in names)
        parts.append(f"{i * third:g}-{(i + 1) * third:g} s {what}")
    return "demo: " + "; ".join(parts)


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
    """The clip as float32 at :data:`SR`, built section by section from :data:`SECTIONS`."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * SR))
    beat = 60.0 / BPM
    a_minor = [220.0, 246.94, 261.63, 293.66, 329.63, 349.23, 392.0, 440.0]
    melody = [0, 2, 4, 7, 5, 4, 2, 0, 4, 5, 7, 4, 2, 1, 0, 2]
    third = seconds / len(SECTIONS)
    starts = [i * third for i in range(len(SECTIONS))]
    # all melody sections first, then all drum sections (the order the seeded noise is drawn in)
    for start in (s for s, sec in zip(starts, SECTIONS) if sec.melody):  # eighth notes
        t, k = start, 0
        while t < start + third - beat / 2:
            note = a_minor[melody[k % len(melody)]]
            _place(y, _pluck(note, beat, rng), t, 0.5)
            t += beat / 2
            k += 1
    for start, sec in ((s, sec) for s, sec in zip(starts, SECTIONS) if sec.drums):
        t, k = start, 0
        while t < start + third - 1e-6:
            if k % 4 in (0, 2):
                _place(y, _kick(), t, 0.9)
            else:
                _place(y, _snare(rng), t, 0.6)
            _place(y, _hat(rng), t, 1.0)
            _place(y, _hat(rng), t + beat / 2, 0.7)
            if sec.bass:
                _place(y, _pluck(a_minor[[0, 0, 5, 4][k % 4]] / 4, beat, rng, 0.999), t, 0.6)
            t += beat
            k += 1
    y /= max(1e-9, np.abs(y).max()) / 0.8
    return y.astype(np.float32)


def write_demo_clip(path, seconds: float = 24.0) -> str:
    """Writes :func:`demo_clip` to ``path`` as a float WAV; returns the path."""
    import soundfile as sf

    sf.write(path, demo_clip(seconds), SR, subtype="FLOAT")
    return str(path)
