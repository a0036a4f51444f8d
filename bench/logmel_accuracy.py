"""Log-mel accuracy against librosa: max abs error on the log10(1+10000·mel) scale.

    python bench/logmel_accuracy.py [--out bench/results/logmel_accuracy.md]

Over the real music fixtures (tests/data) and the seeded synthetic signals of the tests, every
backend against ``librosa.feature.melspectrogram`` with the same parameters.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import librosa
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "logmel_accuracy.md")
    args = ap.parse_args()
    from signals import MUSIC_CLIPS, SYNTHETIC, load_music, synthetic

    from rt_tagger.features import BACKENDS, logmel

    rows = []
    for name in (*MUSIC_CLIPS, *SYNTHETIC):
        y = np.ascontiguousarray(load_music(name) if name in MUSIC_CLIPS else synthetic(name))
        mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96,
                                             fmin=0, fmax=8000)
        ref = np.log10(1 + 10000 * mel).T
        rows.append((name, [float(np.abs(logmel(y, backend=b) - ref).max()) for b in BACKENDS]))
    lines = ["## Log-mel accuracy against librosa", "",
             f"Max abs error on the log10(1+10000·mel) scale (librosa {librosa.__version__}). "
             "Command: `python bench/logmel_accuracy.py`", "",
             "| signal | " + " | ".join(BACKENDS) + " |", "|---|" + "---:|" * len(BACKENDS)]
    lines += [f"| {n} | " + " | ".join(f"{e:.2e}" for e in errs) + " |" for n, errs in rows]
    worst = np.max([errs for _, errs in rows], axis=0)
    lines.append("| **worst** | " + " | ".join(f"**{e:.2e}**" for e in worst) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
