"""Drum loops played from recorded drum kits: the one-shot samples of Hydrogen's kits
(Debian's ``hydrogen-drumkits``: acoustic kits recorded with microphones, and breakbeat hits),
sequenced here with the General MIDI patterns of :data:`.gm.DRUM_STYLES`.

A General MIDI soundfont's drums are a handful of samples per font; a real drum recording (a
breakbeat, a kit in a room) sounds unlike them. A kit's samples are found by file name
(:data:`ROLES`: kick, snare, hats, toms, cymbals, hand percussion) and each note plays one of
its role's samples at random (velocity layers, round robin), so no two hits need be the same.
"""
from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from .decode import SR
from .sources import CorpusError

__all__ = ["HYDROGEN_KITS", "ROLES", "find_kits", "kit_samples", "render_kit_loop"]

HYDROGEN_KITS = Path("/usr/share/hydrogen/data/drumkits")

#: GM drum note -> (pattern on a sample's lower-case "instrument name + file name", fallback
#: notes in order)
ROLES: dict[int, tuple[str, tuple[int, ...]]] = {
    36: (r"kick|bass ?drum|bassdrum|(^|[^a-z])bd([^a-z]|$)", ()),
    38: (r"snare(?!.*(roll|rim))|(^|[^a-z])sd([^a-z]|$)", ()),
    37: (r"rim|stick", (38,)),
    39: (r"clap", (38,)),
    42: (r"(hat|hh).*(cl|tight)|closed.*(hat|hh)|chh", (44, 46)),
    44: (r"(hat|hh).*(pd|pedal|foot)|pedal.*(hat|hh)", (42,)),
    46: (r"(hat|hh).*(op|open)|open.*(hat|hh)|ohh", (42,)),
    49: (r"crash|splash|china", (51,)),
    51: (r"ride(?!.*(bell|cup))", (49, 42)),
    41: (r"tom.*(lo|floor)|(low|floor)[ -]?tom|floor", (45, 47, 48)),
    45: (r"tom.*(mid|med)|(mid|middle)[ -]?tom", (41, 48)),
    47: (r"tom.*(mid|med)|(mid|middle)[ -]?tom", (41, 48)),
    48: (r"tom.*(hi|high)|(hi|high)[ -]?tom", (45, 41)),
    50: (r"tom.*(hi|high)|(hi|high)[ -]?tom", (45, 41)),
    56: (r"cow ?bell", ()),
    60: (r"bongo.*(hi|high)|djembe|tabla|bongo", (62,)),
    61: (r"bongo.*(lo|low)|bongo", (60, 64)),
    62: (r"conga.*(hi|high|mute)|conga|djembe|tumba", (60,)),
    63: (r"conga.*(hi|high|open)|conga|tumba", (62, 60)),
    64: (r"conga.*(lo|low)|tumba|conga", (62, 61)),
}
AUDIO = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def find_kits(root: str | Path = HYDROGEN_KITS) -> list[Path]:
    """Kit folders under ``root`` that have a kick, a snare and a hi-hat."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir()
                  and all(kit_samples(str(d)).get(n) for n in (36, 38, 42)))


def _named_files(kit: Path) -> list[tuple[str, Path]]:
    """(lower-case "instrument name + file stem", file) for each sample: the instrument names
    come from the kit's ``drumkit.xml`` (Hydrogen's format, any version), else file names."""
    named, seen = [], set()
    xml = kit / "drumkit.xml"
    if xml.is_file():
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            root = None
        for ins in root.iter() if root is not None else ():
            if ins.tag.rsplit("}", 1)[-1] != "instrument":
                continue
            name = next((c.text or "" for c in ins if c.tag.rsplit("}", 1)[-1] == "name"), "")
            for f in ins.iter():
                if f.tag.rsplit("}", 1)[-1] == "filename" and f.text:
                    p = kit / f.text.strip()
                    if p.is_file() and p.suffix.lower() in AUDIO and p not in seen:
                        named.append((f"{name} {p.stem}".lower(), p))
                        seen.add(p)
    for p in sorted(kit.rglob("*")):
        if p.suffix.lower() in AUDIO and p not in seen:
            named.append((p.stem.lower(), p))
    return named


@lru_cache(maxsize=64)
def kit_samples(kit: str) -> dict[int, tuple[str, ...]]:
    """GM drum note -> the kit's sample files for it (its own role, else the first fallback
    role that has samples); notes no role of the kit can play are absent."""
    named = _named_files(Path(kit))
    own = {}
    for note, (pattern, _) in ROLES.items():
        rx = re.compile(pattern)
        own[note] = tuple(str(p) for key, p in named if rx.search(key))
    out = {}
    for note, (_, fallbacks) in ROLES.items():
        for k in (note, *fallbacks):
            if own.get(k):
                out[note] = own[k]
                break
    return out


@lru_cache(maxsize=512)
def _sample(path: str) -> np.ndarray:
    import soxr

    try:
        y, sr = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise CorpusError(f"cannot read drum sample {path}: {e}") from e
    y = y.mean(axis=1)
    if sr != SR:
        y = soxr.resample(y, sr, SR).astype(np.float32)
    return y[: 4 * SR]  # a long cymbal tail is cut at 4 s


def render_kit_loop(kit: str | Path, notes: list[tuple], seconds: float,
                    seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Mix the kit's samples at the notes' times (``(start_s, dur_s, gm_note, velocity)``, as
    :func:`.render.drum_notes` makes them) into ``seconds`` of 16 kHz audio. Velocity scales
    the hit (with a little random spread); a note the kit cannot play is left out. Returns the
    audio (peak 1 or silence) and the GM notes that sounded."""
    rng = random.Random(seed)
    samples = kit_samples(str(kit))
    out = np.zeros(int(seconds * SR) + 4 * SR, dtype=np.float64)
    played = set()
    for start, _dur, note, vel in notes:
        choices = samples.get(int(note))
        if not choices or start >= seconds:
            continue
        y = _sample(rng.choice(choices))
        i = int(round(start * SR))
        gain = (vel / 127) ** 1.5 * 10 ** (rng.uniform(-1.5, 1.5) / 20)
        out[i:i + y.size] += gain * y[: out.size - i]
        played.add(int(note))
    out = out[: int(seconds * SR)]
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return (out / peak if peak > 0 else out), sorted(played)
