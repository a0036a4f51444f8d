"""Which MTT teacher to distil from: ``musicnn.mtat``, ``musicnn_vgg.mtat`` or their ensemble
(the mean of their probabilities), judged on audio whose instrument is known.

``python -m rt_tagger.training teachers --work DIR [--json out.json] [--markdown out.md]``

Two clip sets, both rebuilt from scratch in ``DIR`` (nothing is shipped):

* **renders**: public-domain melodies (Beethoven's "Ode to Joy", the traditional "Frère
  Jacques" and "Twinkle, Twinkle") written here as MIDI and rendered by FluidSynth for 11 General
  MIDI programs (piano, harpsichord, violin, cello, string ensemble, harp, flute, sitar, nylon
  guitar, church organ, choir) plus three drum patterns, through three soundfonts (FluidR3 GM,
  TimGM6mb, MuseScore General Lite from Debian);
* **real**: solo recordings of real instruments shipped in Debian packages (``REAL``: Tux Paint's
  stamp sounds, LMMS's instrument samples), downloaded with ``apt-get download`` and unpacked
  with ``dpkg-deb -x``; never a package reserved for the independent evaluation.

Every clip is tagged by each teacher on non-overlapping 187-frame patches (clips shorter than
3 patches are looped); a clip's vector is the mean over its patches, the ensemble's the mean of
the two teachers' patch probabilities. Reported per teacher: how often a true instrument tag is
in the clip's top 3, and per-instrument ROC-AUC (positives: the clips that instrument plays;
organ and bassoon have no MTAT tag and are negatives for every tag).
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rt_tagger.errors import ConfigError

from .metrics import roc_auc

__all__ = ["REAL", "RENDER_PROGRAMS", "evaluate_teachers", "format_table"]

SR = 16000
TEACHERS = ("musicnn.mtat", "musicnn_vgg.mtat")

#: instrument -> (GM program, 0-based; None: drums on channel 10), transposition, MTAT tags that
#: are true for it. The first tag is the instrument's own (its ROC-AUC row).
RENDER_PROGRAMS = {
    "piano": (0, 0, ("piano",)), "harpsichord": (6, 0, ("harpsichord",)),
    "violin": (40, 12, ("violin", "strings")), "cello": (42, -12, ("cello", "strings")),
    "strings": (48, 0, ("strings", "violin", "cello")), "harp": (46, 0, ("harp",)),
    "flute": (73, 12, ("flute",)), "sitar": (104, 0, ("sitar",)), "guitar": (24, -12, ("guitar",)),
    "organ": (19, 0, ()), "choir": (52, 0, ("choir", "choral")), "drums": (None, 0, ("drums",)),
}
SOLO = {"violin", "cello", "flute", "sitar"}  # melody only; the others get a bass line too

#: Public-domain melodies as (MIDI note, beats); 0 is a rest.
MELODIES = {
    "ode_to_joy": [(64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1), (60, 1), (60, 1),
                   (62, 1), (64, 1), (64, 1.5), (62, 0.5), (62, 2), (64, 1), (64, 1), (65, 1), (67, 1),
                   (67, 1), (65, 1), (64, 1), (62, 1), (60, 1), (60, 1), (62, 1), (64, 1), (62, 1.5),
                   (60, 0.5), (60, 2)],
    "frere_jacques": [(60, 1), (62, 1), (64, 1), (60, 1)] * 2 + [(64, 1), (65, 1), (67, 2)] * 2
                     + [(67, .5), (69, .5), (67, .5), (65, .5), (64, 1), (60, 1)] * 2
                     + [(60, 1), (55, 1), (60, 2)] * 2,
    "twinkle": [(60, 1), (60, 1), (67, 1), (67, 1), (69, 1), (69, 1), (67, 2), (65, 1), (65, 1), (64, 1),
                (64, 1), (62, 1), (62, 1), (60, 2), (67, 1), (67, 1), (65, 1), (65, 1), (64, 1), (64, 1),
                (62, 2)],
}
#: drum patterns: name -> (bpm, one bar of 8 eighth-note steps as sets of GM drum notes)
DRUMS = {
    "rock": (100, [{36, 42}, {42}, {38, 42}, {42}, {36, 42}, {36, 42}, {38, 42}, {42}]),
    "halftime": (76, [{36, 42, 49}, {42}, {42}, {42}, {38, 42}, {42}, {36, 42}, {46}]),
    "shuffle": (132, [{36, 51}, {51}, {38, 51}, {51, 36}, {36, 51}, {51}, {38, 51}, {46}]),
}
SOUNDFONTS = {  # name -> (path, Debian package, licence); the package is fetched if the path is missing
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm", "MIT"),
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont", "GPL-2"),
    "musescore": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small", "MIT"),
}


@dataclass(frozen=True)
class RealClip:
    package: str  # Debian package (GPL-2 / GPL-2+; see its copyright file)
    path: str     # inside the package
    instrument: str
    tags: tuple[str, ...]


_TUX = "usr/share/tuxpaint/stamps/hobbies/music/"
_LMMS = "usr/share/lmms/samples/"
#: Real solo recordings (chosen by file name, before any teacher heard them). LMMS's
#: ``harpsichord01.ogg`` is left out: it is Vorbis inside a WAV header, which nothing here decodes.
REAL = (
    RealClip("tuxpaint-stamps-default", _TUX + "string/violin.ogg", "violin", ("violin", "strings")),
    RealClip("tuxpaint-stamps-default", _TUX + "string/cello.ogg", "cello", ("cello", "strings")),
    RealClip("tuxpaint-stamps-default", _TUX + "percussion/drumkit.ogg", "drums", ("drums",)),
    RealClip("tuxpaint-stamps-default", _TUX + "wind/bassoon.ogg", "bassoon", ()),
    RealClip("lmms-common", _LMMS + "instruments/piano02.ogg", "piano", ("piano",)),
    RealClip("lmms-common", _LMMS + "instruments/flute01.ogg", "flute", ("flute",)),
    RealClip("lmms-common", _LMMS + "instruments/cello01.ogg", "cello", ("cello", "strings")),
    RealClip("lmms-common", _LMMS + "instruments/violin_fingered01.ogg", "violin", ("violin", "strings")),
    RealClip("lmms-common", _LMMS + "instruments/steel_guitar01.ogg", "guitar", ("guitar",)),
    RealClip("lmms-common", _LMMS + "instruments/steel_guitar_heavy_distorted01.ogg", "guitar", ("guitar",)),
    RealClip("lmms-common", _LMMS + "latin/latin_guitar01.ogg", "guitar", ("guitar",)),
    RealClip("lmms-common", _LMMS + "latin/latin_guitar03.ogg", "guitar", ("guitar",)),
    RealClip("lmms-common", _LMMS + "instruments/church_organ01.ogg", "organ", ()),
    RealClip("lmms-common", _LMMS + "stringsnpads/strings01.ogg", "strings", ("strings",)),
    RealClip("lmms-common", _LMMS + "beats/break01.ogg", "drums", ("drums",)),
    RealClip("lmms-common", _LMMS + "beats/break02.ogg", "drums", ("drums",)),
)


# --------------------------------------------------------------------------- MIDI, by hand
def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def midi_bytes(events: list[tuple[float, bytes]], bpm: float, tpq: int = 480) -> bytes:
    """A type-0 Standard MIDI File from ``(time in beats, channel message)`` events."""
    track = b"\x00\xff\x51\x03" + int(60e6 / bpm).to_bytes(3, "big")
    now = 0
    for beat, msg in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):  # offs first
        tick = round(beat * tpq)
        track += _vlq(tick - now) + msg
        now = tick
    track += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq) + b"MTrk" + struct.pack(">I", len(track)) + track


def melody_midi(melody: str, program: int, transpose: int, bass: bool, repeats: int = 2) -> bytes:
    events, t = [(0.0, bytes((0xC0, program)))], 0.0
    for _ in range(repeats):
        for note, beats in MELODIES[melody]:
            if note:
                events += [(t, bytes((0x90, note + transpose, 96))), (t + beats * 0.95, bytes((0x80, note + transpose, 0)))]
                if bass and (t % 4) == 0:  # a bass note a bar (4 beats), two octaves down
                    root = note + transpose - 24
                    events += [(t, bytes((0x90, root, 70))), (t + 3.8, bytes((0x80, root, 0)))]
            t += beats
    return midi_bytes(events, bpm=110)


def drums_midi(pattern: str, bars: int = 8) -> bytes:
    bpm, steps = DRUMS[pattern]
    events = []
    for i in range(bars * len(steps)):
        for note in steps[i % len(steps)]:
            t = i * 0.5
            events += [(t, bytes((0x99, note, 100))), (t + 0.4, bytes((0x89, note, 0)))]
    return midi_bytes(events, bpm=bpm)


# --------------------------------------------------------------------------- clip sets
def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise ConfigError(f"{what} failed: {(r.stderr or r.stdout).strip()[-300:]}")


def _debian(package: str, work: Path) -> Path:
    """``apt-get download`` + ``dpkg-deb -x`` of one package into ``work/debs``; its root."""
    from .corpus import check_allowed

    check_allowed(package)  # the reserved packages of issue #12 are refused by name
    root = work / "debs" / package
    if not root.is_dir():
        debs = work / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
        deb = next(iter(sorted(debs.glob(f"{package}_*.deb"))), None)
        if deb is None:
            raise ConfigError(f"apt-get download {package} failed: {r.stderr.strip()[-300:]}")
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
    return root


def soundfont(name: str, work: Path) -> Path:
    path, package, _ = SOUNDFONTS[name]
    if Path(path).is_file():
        return Path(path)
    local = _debian(package, work) / path.lstrip("/")
    if not local.is_file():
        raise ConfigError(f"{package} has no {path}")
    return local


def render(midi: bytes, sf: Path, out: Path) -> Path:
    """FluidSynth at 16 kHz, mono, peak-normalised to -1 dBFS."""
    import soundfile

    if shutil.which("fluidsynth") is None:
        raise ConfigError("fluidsynth is not installed (apt-get install fluidsynth)")
    mid = out.with_suffix(".mid")
    mid.write_bytes(midi)
    raw = out.with_suffix(".raw.wav")
    _run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-F", str(raw), "-T", "wav", str(sf), str(mid)],
         f"fluidsynth {mid.name}")
    y, sr = soundfile.read(raw, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    y = y / max(float(np.abs(y).max()), 1e-6) * 0.89
    soundfile.write(out, y, sr)
    raw.unlink()
    mid.unlink()
    return out


def render_set(work: Path) -> list[dict]:
    """The render clips (written once into ``work/renders``) with their instrument and tags."""
    out_dir = work / "renders"
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for sf_name in SOUNDFONTS:
        sf = soundfont(sf_name, work)
        for inst, (program, shift, tags) in RENDER_PROGRAMS.items():
            takes = DRUMS if program is None else MELODIES
            for take in takes:
                out = out_dir / f"{inst}-{take}-{sf_name}.wav"
                if not out.is_file():
                    midi = drums_midi(take) if program is None else melody_midi(take, program, shift, inst not in SOLO)
                    render(midi, sf, out)
                clips.append({"path": str(out), "instrument": inst, "tags": list(tags), "soundfont": sf_name})
    return clips


def real_set(work: Path) -> list[dict]:
    clips = []
    for c in REAL:
        path = _debian(c.package, work) / c.path
        if not path.is_file():
            raise ConfigError(f"{c.package} has no {c.path}")
        clips.append({"path": str(path), "instrument": c.instrument, "tags": list(c.tags), "package": c.package})
    return clips


# --------------------------------------------------------------------------- scoring
def _patches(y: np.ndarray, logmel_cfg, length: int, min_patches: int = 3) -> np.ndarray:
    from rt_tagger.features import logmel

    need = (min_patches * length + 1) * logmel_cfg.hop_length
    if y.size < need:  # short recordings are looped
        y = np.tile(y, -(-need // y.size))
    x = logmel(np.ascontiguousarray(y, dtype=np.float32), logmel_cfg)
    n = x.shape[0] // length
    return np.ascontiguousarray(x[: n * length].reshape(n, length, -1))


def teacher_probs(clips: list[dict], teachers=TEACHERS, threads: int = 2) -> tuple[dict[str, np.ndarray], list[str]]:
    """``({name: (clips, 50) song-level probabilities}, tags)``, with ``"ensemble"`` (the mean of
    the teachers' patch probabilities)."""
    import torch

    from rt_tagger.factory import create_model
    from .data.audio import load_audio

    torch.set_num_threads(threads)
    models = [create_model(t) for t in teachers]
    cfgs = {(m.checkpoint.logmel_config, m.input_length) for m in models}
    if len(cfgs) != 1 or len({tuple(m.checkpoint.tags) for m in models}) != 1:
        raise ConfigError(f"teachers {teachers} differ in features or tags; they cannot be averaged")
    (cfg, length), = cfgs
    out = {t: [] for t in (*teachers, "ensemble")}
    for clip in clips:
        x = torch.from_numpy(_patches(load_audio(clip["path"], SR), cfg, length))
        with torch.no_grad():
            probs = [torch.sigmoid(m(x)).double().numpy() for m in models]
        for t, p in zip(teachers, probs):
            out[t].append(p.mean(0))
        out["ensemble"].append(np.mean(probs, axis=0).mean(0))
    return {k: np.stack(v) for k, v in out.items()}, list(models[0].checkpoint.tags)


def scores(clips: list[dict], probs: np.ndarray, tags: list[str]) -> dict:
    """Top-3 hits and per-instrument ROC-AUC of one teacher's song vectors."""
    judged = [i for i, c in enumerate(clips) if c["tags"]]
    top3 = np.argsort(-probs, axis=1)[:, :3]
    hits = [bool({tags[j] for j in top3[i]} & set(clips[i]["tags"])) for i in judged]
    per_tag = {}
    for tag in dict.fromkeys(c["tags"][0] for c in clips if c["tags"]):
        y = np.array([tag in c["tags"] for c in clips])
        per_tag[tag] = roc_auc(y, probs[:, tags.index(tag)]) if 0 < y.sum() < len(y) else float("nan")
    misses = [f"{clips[i]['instrument']}:{Path(clips[i]['path']).stem} -> {', '.join(tags[j] for j in top3[i])}"
              for i, h in zip(judged, hits) if not h]
    aucs = [a for a in per_tag.values() if not np.isnan(a)]
    return {"top3_hits": int(sum(hits)), "judged": len(judged), "per_tag_roc_auc": per_tag,
            "mean_roc_auc": float(np.mean(aucs)) if aucs else float("nan"), "misses": misses}


def evaluate_teachers(work: str | Path, teachers=TEACHERS, threads: int = 2) -> dict:
    work = Path(work)
    result = {"teachers": list(teachers), "sets": {}}
    for name, clips in (("renders", render_set(work)), ("real", real_set(work))):
        probs, tags = teacher_probs(clips, teachers, threads)
        result["sets"][name] = {"clips": len(clips), **{k: scores(clips, v, tags) for k, v in probs.items()}}
    return result


def format_table(result: dict) -> str:
    cols = [*result["teachers"], "ensemble"]
    lines = ["| | " + " | ".join(f"`{c}`" if c != "ensemble" else "ensemble (mean prob.)" for c in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for set_name, res in result["sets"].items():
        first = res[cols[0]]
        lines.append(f"| **{set_name}** ({res['clips']} clips): instrument in top 3 | "
                     + " | ".join(f"{res[c]['top3_hits']}/{first['judged']}" for c in cols) + " |")
        lines.append(f"| {set_name}: mean instrument ROC-AUC | "
                     + " | ".join(f"{res[c]['mean_roc_auc']:.3f}" for c in cols) + " |")
        for tag in first["per_tag_roc_auc"]:
            lines.append(f"| {set_name}: `{tag}` ROC-AUC | "
                         + " | ".join(f"{res[c]['per_tag_roc_auc'][tag]:.3f}" for c in cols) + " |")
    return "\n".join(lines)
