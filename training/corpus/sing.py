"""Synthetic singing: espeak-ng speech resynthesised by the WORLD vocoder (``pyworld``) to
follow a score's melody, one word or syllable per note, over a FluidSynth backing of the
score's other parts.

What it is, honestly: a formant-preserving pitch and duration edit of robotic speech, with
vibrato and glides; it sounds like a vocoder choir-boy, not a recorded singer. The teacher labels
these clips; measure what it says before training on them (see docs/training.md).
"""
from __future__ import annotations

import random
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .decode import SR
from .sources import CorpusError

__all__ = ["VOICES", "sing_melody", "speak"]

#: (espeak-ng voice, gender); German voices for chorale lyrics, English otherwise
VOICES = {"de": (("de+m3", "male"), ("de+m1", "male"), ("de+f2", "female"), ("de+f4", "female")),
          "en": (("en-us+m3", "male"), ("en+m7", "male"), ("en-us+f3", "female"),
                 ("en+f2", "female"))}
#: words sung where a score has no lyrics (plain English, written for this corpus)
WORDS = ("la la sun and rain come home my love the sea is wide and deep oh the night "
         "falls soft on hills of green I will go down by the river where the willows "
         "grow sing to me of morning light and the long road home").split()
FRAME_MS = 5.0


def _pw():
    """The WORLD bindings. pyworld 0.3.5's ``__init__`` imports ``pkg_resources`` (gone from
    setuptools >= 81) only to read its own version, so on ImportError the compiled module is
    loaded directly."""
    try:
        import pyworld
        return pyworld
    except ImportError as e:
        import importlib.machinery
        import importlib.util

        spec = importlib.util.find_spec("pyworld")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for so in sorted(Path(folder).glob("pyworld.*.so")):
                loader = importlib.machinery.ExtensionFileLoader("pyworld.pyworld", str(so))
                mod = importlib.util.module_from_spec(
                    importlib.util.spec_from_file_location("pyworld.pyworld", so, loader=loader))
                loader.exec_module(mod)
                return mod
        raise CorpusError("singing needs pyworld: pip install 'rt-tagger[training]'") from e


def speak(text: str, voice: str, speed: int = 150) -> np.ndarray:
    """espeak-ng speech of ``text`` at 16 kHz (float64)."""
    from scipy.signal import resample_poly

    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "s.wav"
        r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
                           capture_output=True, text=True)
        if r.returncode or not wav.is_file():
            raise CorpusError(f"espeak-ng failed: {r.stderr.strip()[-200:]}")
        y, sr = sf.read(wav, dtype="float64")
    if y.ndim > 1:
        y = y.mean(axis=1)
    if sr != SR:
        g = np.gcd(SR, sr)
        y = resample_poly(y, SR // g, sr // g)
    return y


def _trim(y: np.ndarray, thresh: float = 0.01) -> np.ndarray:
    idx = np.flatnonzero(np.abs(y) > thresh * (np.max(np.abs(y)) + 1e-12))
    return y[idx[0]: idx[-1] + 1] if idx.size else y


def _sung_note(word: np.ndarray, seconds: float, f_start: float, f_note: float,
               rng: random.Random) -> np.ndarray:
    """WORLD-resynthesise one spoken word to last ``seconds`` at ``f_note`` Hz: consonant
    edges kept at their speed, the voiced middle stretched, a glide from ``f_start`` and a
    vibrato that sets in after 150 ms."""
    pw = _pw()
    x = np.ascontiguousarray(word, dtype=np.float64)
    f0, t = pw.dio(x, SR, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, t, SR)
    sp = pw.cheaptrick(x, f0, t, SR)
    ap = pw.d4c(x, f0, t, SR)
    n_in, n_out = len(f0), max(4, int(seconds * 1000 / FRAME_MS))
    voiced = np.flatnonzero(f0 > 0)
    if voiced.size >= 2 and n_out > n_in:
        a, b = voiced[0], voiced[-1]  # stretch the voiced stretch, keep the edges
        mid_out = n_out - (a + (n_in - 1 - b))
        idx = np.concatenate([np.arange(a), np.linspace(a, b, max(mid_out, 1)),
                              np.arange(b + 1, n_in)])
    else:
        idx = np.linspace(0, n_in - 1, n_out)
    idx = np.clip(np.round(idx).astype(int), 0, n_in - 1)
    sp, ap, v = sp[idx], ap[idx], f0[idx] > 0
    k = np.arange(len(idx)) * FRAME_MS / 1000
    glide = np.clip(k / 0.06, 0, 1)
    f = f_start * (f_note / f_start) ** glide
    depth = 0.25 * np.clip((k - 0.15) / 0.2, 0, 1) * rng.uniform(0.6, 1.2)
    f = f * 2 ** (depth * np.sin(2 * np.pi * rng.uniform(4.8, 6.2) * k) / 12)
    f0_new = np.where(v, f, 0.0)
    y = pw.synthesize(f0_new, np.ascontiguousarray(sp), np.ascontiguousarray(ap), SR, FRAME_MS)
    fade = min(len(y) // 4, int(0.01 * SR))
    if fade:
        y[:fade] *= np.linspace(0, 1, fade)
        y[-fade:] *= np.linspace(1, 0, fade)
    return y


def sing_melody(notes: list[tuple[float, float, int, int]], lyrics: list[str], voice: str,
                seconds: float, seed: int = 0) -> np.ndarray:
    """A vocal line: each (start_s, dur_s, midi pitch, velocity) note sung on its lyric
    (cycled; ``lyrics`` of one word per note), as 16 kHz audio ``seconds`` long."""
    rng = random.Random(seed)
    if not any(lyrics):
        lyrics = []
    out = np.zeros(int(seconds * SR) + SR)
    cache: dict[str, np.ndarray] = {}
    prev_f = None
    for i, (start, dur, pitch, vel) in enumerate(notes):
        if start >= seconds:
            break
        text = (lyrics[i % len(lyrics)] if lyrics else WORDS[i % len(WORDS)]) or "ah"
        if text not in cache:
            cache[text] = _trim(speak(text, voice, rng.choice((130, 150, 170))))
        f = 440.0 * 2 ** ((pitch - 69) / 12)
        y = _sung_note(cache[text], max(dur * 0.95, 0.12), prev_f or f, f, rng)
        y *= (vel / 100) ** 1.5
        a = int(start * SR)
        n = min(len(y), len(out) - a)
        out[a: a + n] += y[:n]
        prev_f = f
    return out[: int(seconds * SR)]


def lyrics_of(path: str, max_notes: int = 400) -> list[str]:
    """The first verse's syllables of a score's top part, one per note ('' where a note
    has none: a melisma)."""
    import warnings

    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = converter.parse(path)
    parts = list(getattr(s, "parts", [])) or [s]
    out = []
    for n in parts[0].flatten().notes[:max_notes]:
        first = n.lyrics[0].text if n.lyrics else ""  # the first verse
        out.append(re.sub(r"[^\w'-]+", " ", (first or "").split("\n")[0]).strip())
    return out
