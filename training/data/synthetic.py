"""A small synthetic MagnaTagATune in the exact on-disk format, with a learnable task.

``make_mtat(root)`` writes ``annotations_final.csv`` (clip_id, the 188 tag columns in the real
order, mp3_path) and real MP3 files in folders ``0`` ... ``f``. Four tags are tied to sounds:

* ``piano``: decaying harmonic tones (8 partials) at random pitches, ~2 notes per second;
* ``drums``: bursts of white noise with a fast decay, ~3 per second;
* ``techno``: fast low pulses (60 Hz thumps, 8 per second);
* ``flute``: a sustained sine with vibrato at a random pitch in 500-1000 Hz.

Each clip draws every tag with probability 0.4 and mixes the matching sounds over a low noise
floor; clips drawing none keep only the floor (the ``refined`` split removes them). Files go
to folders by split: 0-b train, c valid, d-f test. Seeded: the same arguments give the same files.
Used by the tests and for trying the pipeline without the real data.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .mtat import ALL_TAGS

__all__ = ["SOUND_TAGS", "make_mtat"]

SOUND_TAGS = ("piano", "drums", "techno", "flute")


def _piano(rng, n, sr):
    y = np.zeros(n)
    t = np.arange(int(0.8 * sr)) / sr
    for start in rng.integers(0, n - t.size, size=max(1, int(2 * n / sr))):
        f0 = 110 * 2 ** rng.uniform(0, 3)
        note = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 9)) * np.exp(-4 * t)
        y[start:start + t.size] += note
    return 0.15 * y


def _drums(rng, n, sr):
    y = np.zeros(n)
    t = np.arange(int(0.15 * sr)) / sr
    for start in rng.integers(0, n - t.size, size=max(1, int(3 * n / sr))):
        y[start:start + t.size] += rng.standard_normal(t.size) * np.exp(-30 * t)
    return 0.3 * y


def _techno(rng, n, sr):
    period = sr // 8
    t = np.arange(period) / sr
    pulse = np.sin(2 * np.pi * 60 * t) * np.exp(-25 * t)
    offset = int(rng.integers(0, period))
    return 0.5 * np.roll(np.resize(pulse, n), offset)


def _flute(rng, n, sr):
    t = np.arange(n) / sr
    f0 = rng.uniform(500, 1000)
    phase = 2 * np.pi * f0 * t + 0.02 * f0 / 5 * np.sin(2 * np.pi * 5 * t)
    return 0.2 * np.sin(phase)


_SOUNDS = {"piano": _piano, "drums": _drums, "techno": _techno, "flute": _flute}


def make_mtat(root: str | Path, *, n_train: int = 96, n_valid: int = 32, n_test: int = 32,
              n_untagged: int = 8, n_broken: int = 0, seconds: float = 4.0,
              sample_rate: int = 22050, seed: int = 0) -> Path:
    """Write the synthetic dataset into ``root`` and return it.

    ``n_broken`` extra tagged rows point at files that are not audio (like MTAT's broken mp3s).
    Audio is written at ``sample_rate`` (not 16 kHz, so preparation really resamples).
    """
    import soundfile as sf

    root = Path(root)
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    folders = (["0123456789ab"] * n_train + ["c"] * n_valid + ["def"] * n_test
               + ["0123456789abcdef"] * (n_untagged + n_broken))
    header = ["clip_id", *ALL_TAGS, "mp3_path"]
    rows = []
    for i, choices in enumerate(folders):
        folder = choices[i % len(choices)]
        (root / folder).mkdir(parents=True, exist_ok=True)
        rel = f"{folder}/synthetic_artist-synthetic_album-{i:02d}-clip_{i}-0-{int(seconds)}.mp3"
        broken = i >= len(folders) - n_broken
        untagged = not broken and i >= n_train + n_valid + n_test
        chosen = [] if untagged else [t for t in SOUND_TAGS if rng.random() < 0.4]
        if broken:  # tagged, so that every split keeps it (like MTAT's few empty mp3s)
            chosen = chosen or ["piano"]
        if broken:
            (root / rel).write_bytes(b"this is not an mp3 file\n" * 4)
        else:
            y = 0.01 * rng.standard_normal(n)
            for tag in chosen:
                y += _SOUNDS[tag](rng, n, sample_rate)
            y = y / max(1.0, np.abs(y).max() / 0.9)
            sf.write(root / rel, y.astype(np.float32), sample_rate, format="MP3")
        row = {"clip_id": str(i * 2 + 1), "mp3_path": rel}
        row.update({t: int(t in chosen) for t in ALL_TAGS})
        rows.append(row)
    with open(root / "annotations_final.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL)
        w.writerow(header)
        for row in rows:
            w.writerow([row[h] for h in header])
    return root
