"""One work item each: convert a track, render a score, sing a melody, speak a text. Every
function writes its files under DEST and returns the manifest rows it made ([] = skipped)."""
from __future__ import annotations

import dataclasses
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .decode import SR, duration, safe_name, tags_of, to_wav, write_wav
from .gm import ENSEMBLES, SOUNDFONTS
from .sources import CorpusError

MIN_TRACK_SEC = 45.0  # shorter files are jingles or sound effects
_ENS = {e.name: e for e in ENSEMBLES}
SCORE_LICENSE = "score: music21 corpus (public-domain works, encodings freely distributable)"


def _rel(dest: Path, p: Path) -> str:
    return str(Path(p).relative_to(dest))


def convert_track(dest: str, src: str, rel_out: str, max_sec: float, row: dict) -> list[dict]:
    dest = Path(dest)
    od = duration(src)
    if od < MIN_TRACK_SEC:
        return []
    out = dest / rel_out
    if not to_wav(src, out, max_sec):
        raise CorpusError(f"could not decode {src}")
    return [dict(row, path=rel_out, duration_s=f"{duration(out):.2f}",
                 orig_duration_s=f"{od:.2f}", meta=tags_of(src))]


def fof_song(dest: str, folder: str, key: str, max_sec: float, row: dict) -> list[dict]:
    """A Frets on Fire song folder: the full mix, the lead-guitar stem, the backing stem."""
    dest, folder = Path(dest), Path(folder)
    song, gtr = folder / "song.ogg", folder / "guitar.ogg"
    if not (song.is_file() and gtr.is_file()):
        return []
    name = safe_name(folder.name)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        mix = Path(td) / "mix.wav"
        subprocess.run(["sox", "-q", "-m", str(song), str(gtr), str(mix)], check=True)
        for src, rel, kind, tags, what in (
                (mix, f"music/{key}/{name}_mix.wav", "music", row["weak_tags"], "full mix"),
                (gtr, f"stems/{key}/{name}_guitar.wav", "stem", "guitar;no vocals",
                 "isolated lead-guitar stem"),
                (song, f"stems/{key}/{name}_backing.wav", "stem", "drums",
                 "backing track without lead guitar")):
            rows += convert_track(str(dest), str(src), rel, max_sec,
                                  dict(row, kind=kind, tags=tags, weak_tags="",
                                       style=row["style"] + "; " + what))
    return rows


def _sf(name: str) -> Path:
    from .gm import available_soundfonts

    path = available_soundfonts().get(name)
    if path is None:
        raise CorpusError(f"soundfont {name} is not installed ({SOUNDFONTS[name][1]})")
    return path


def _sf_desc(name: str) -> str:
    return f"soundfont {name} ({SOUNDFONTS[name][1]}, {SOUNDFONTS[name][2]})"


def score_renders(dest: str, idx: int, score: str, rel_score: str, configs: list,
                  max_sec: float, classical: bool) -> list[dict]:
    """One score, several instrumentations (ensemble name, soundfont name) -> rows."""
    from .render import render_score

    dest = Path(dest)
    rows = []
    comp = rel_score.split("/")[0]
    base = f"{idx:04d}_{safe_name(comp)}_{safe_name(Path(rel_score).stem)}"
    for j, (ens_name, sf_name) in enumerate(configs):
        ens = _ENS[ens_name]
        if not classical:
            ens = dataclasses.replace(ens, classical=False)
        rel = f"midi_render/music21/{base}_{ens_name}_{sf_name}.wav"
        seconds, tags, used = render_score(score, ens, _sf(sf_name), dest / rel, max_sec,
                                           seed=idx * 31 + j)
        synth = "timidity" if SOUNDFONTS[sf_name][0][0].endswith(".cfg") else "fluidsynth"
        rows.append(dict(path=rel, source=f"music21+{synth}", kind="midi_render",
                         package=f"music21 corpus + {SOUNDFONTS[sf_name][1]}",
                         license=f"{SCORE_LICENSE}; {_sf_desc(sf_name)}",
                         duration_s=f"{seconds:.2f}", orig_duration_s="",
                         tags=";".join(sorted(tags)), weak_tags="",
                         style=f"{comp} score, {ens.texture} {ens_name} (GM programs {used}), "
                               f"{sf_name}", meta=rel_score))
    return rows


def game_midi(dest: str, src: str, package: str, license: str, sf_name: str,
              max_sec: float) -> list[dict]:
    from .render import render_midi_file

    dest = Path(dest)
    rel = (f"midi_render/game_midi/{safe_name(package)}_{safe_name(Path(src).stem)}_"
           f"{sf_name}.wav")
    seconds, tags, used = render_midi_file(Path(src), _sf(sf_name), dest / rel, max_sec)
    if seconds < MIN_TRACK_SEC / 2:
        (dest / rel).unlink()
        return []
    return [dict(path=rel, source="game_midi+fluidsynth", kind="midi_render",
                 package=f"{package} + {SOUNDFONTS[sf_name][1]}",
                 license=f"{license}; {_sf_desc(sf_name)}", duration_s=f"{seconds:.2f}",
                 orig_duration_s="", tags=";".join(sorted(tags)), weak_tags="no vocals",
                 style=f"game MIDI with its own GM programs {used}", meta=Path(src).name)]


def drum_loop(dest: str, i: int, style: str, bpm: int, sf_name: str, seconds: float) -> list[dict]:
    from .render import drum_notes, synthesize, write_midi

    dest = Path(dest)
    rel = f"midi_render/drum_loops/drums_{i:03d}_{style}_{bpm}bpm_{sf_name}.wav"
    with tempfile.TemporaryDirectory() as td:
        mid = Path(td) / "d.mid"
        write_midi(mid, [], drum_notes(style, bpm, seconds, seed=i), seed=i)
        got = synthesize(mid, dest / rel, _sf(sf_name), seconds)
    tags = ["drums", "beat", "beats", "no vocals"] + (["fast"] if bpm >= 150 else []) \
        + (["slow"] if bpm <= 75 else [])
    return [dict(path=rel, source="drum_loop+fluidsynth", kind="drum_loop",
                 package=f"generated pattern + {SOUNDFONTS[sf_name][1]}",
                 license=f"generated; {_sf_desc(sf_name)}", duration_s=f"{got:.2f}",
                 orig_duration_s="", tags=";".join(tags), weak_tags="",
                 style=f"GM drum pattern '{style}' at {bpm} bpm, drums only", meta="")]


def kit_loop(dest: str, i: int, kit: str, style: str, bpm: int, seconds: float,
             license: str) -> list[dict]:
    """A drum loop of a :data:`.gm.DRUM_STYLES` pattern played from a recorded kit's samples
    (:mod:`.kits`), in a random room half of the time."""
    from ..augment import reverb
    from .kits import render_kit_loop
    from .render import drum_notes

    dest = Path(dest)
    rng = random.Random(i)
    y, played = render_kit_loop(kit, drum_notes(style, bpm, seconds, seed=i), seconds, seed=i)
    if not played or float(np.max(np.abs(y))) < 1e-4:
        return []
    room = ""
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.2, 1.2)
        y = reverb(y, SR, rt60=rt60, wet=rng.uniform(0.1, 0.3),
                   rng=np.random.default_rng(i))[: y.size]
        room = f", room rt60 {rt60:.1f} s"
    name = Path(kit).name
    rel = f"sampled/drum_kits/kit_{i:03d}_{safe_name(name)}_{style}_{bpm}bpm.wav"
    got = write_wav(dest / rel, y)
    tags = ["drums", "beat", "beats", "no vocals"] + (["fast"] if bpm >= 150 else []) \
        + (["slow"] if bpm <= 75 else [])
    return [dict(path=rel, source="drum_kit+hydrogen", kind="drum_loop",
                 package=f"generated pattern + hydrogen-drumkits ({name})",
                 license=f"generated; kit {name}: {license}", duration_s=f"{got:.2f}",
                 orig_duration_s="", tags=";".join(tags), weak_tags="",
                 style=f"GM drum pattern '{style}' at {bpm} bpm played from the recorded kit "
                       f"{name} (GM notes {played}){room}", meta=name)]


def sung(dest: str, i: int, score: str, rel_score: str, voice: str, gender: str,
         backing: str | None, sf_name: str, seconds: float) -> list[dict]:
    """A melody sung by a WORLD-resynthesised espeak-ng voice, over the score's other parts
    played by ``backing`` (an ensemble name; None: a cappella)."""
    from ..augment import reverb
    from .render import midi_tags, score_parts, synthesize, write_midi
    from .sing import lyrics_of, sing_melody

    dest = Path(dest)
    rng = random.Random(i)
    bpm = rng.uniform(60, 96)
    parts = score_parts(score, bpm, seconds, seed=i)
    if not parts:
        return []
    melody = parts[0]
    shift = -12 if gender == "male" and np.mean([n[2] for n in melody]) > 62 else 0
    melody = [(s, d, p + shift, v) for s, d, p, v in melody]
    lyrics = lyrics_of(score) if voice.startswith("de") else []
    voc = sing_melody(melody, lyrics, voice, seconds, seed=i)
    voc = reverb(voc, SR, rt60=rng.uniform(0.3, 1.6), wet=rng.uniform(0.1, 0.35),
                 rng=np.random.default_rng(i))[: voc.size]
    tags = {"singing", "vocal", "vocals", "voice"}
    tags |= ({"male", "male vocal", "male voice", "man"} if gender == "male"
             else {"female", "female vocal", "female voice", "woman"})
    mix = voc
    if backing and len(parts) > 1:
        ens = dataclasses.replace(_ENS[backing], top=None)
        tracks = [(progs, notes) for progs, notes in zip(ens.parts(len(parts)), parts) if progs]
        with tempfile.TemporaryDirectory() as td:
            from .render import drum_notes

            mid, wav = Path(td) / "b.mid", Path(td) / "b.wav"
            drums = drum_notes(ens.drums, bpm, seconds, seed=i) if ens.drums else None
            write_midi(mid, tracks, drums, seed=i)
            btags, _ = midi_tags(mid)
            synthesize(mid, wav, _sf(sf_name), seconds)
            back, _ = sf.read(wav, dtype="float64")
        n = min(back.size, voc.size)
        rms = lambda x: float(np.sqrt(np.mean(x ** 2))) + 1e-9  # noqa: E731
        gain = rms(back[:n]) / rms(voc[:n]) * 10 ** (rng.uniform(0, 6) / 20)
        mix = back[:n] + gain * voc[:n]
        tags |= btags
    rel = f"sung/world_{i:04d}_{safe_name(voice)}_{backing or 'acappella'}.wav"
    got = write_wav(dest / rel, mix)
    return [dict(path=rel, source="sung_world", kind="sung", package="espeak-ng + pyworld"
                 + (f" + {SOUNDFONTS[sf_name][1]}" if backing else ""),
                 license=f"generated; {SCORE_LICENSE}"
                 + (f"; {_sf_desc(sf_name)}" if backing else ""),
                 duration_s=f"{got:.2f}", orig_duration_s="", tags=";".join(sorted(tags)),
                 weak_tags="", style=f"synthetic singing: espeak-ng {voice} resynthesised with "
                 f"WORLD on the top part, backing {backing or 'none'}", meta=rel_score)]


def tts(dest: str, i: int, engine: str, voice: str, gender: str, text: str) -> list[dict]:
    dest = Path(dest)
    rel = f"speech/{engine}/{engine}_{safe_name(voice)}_{gender}_{i:02d}.wav"
    with tempfile.TemporaryDirectory() as td:
        raw = Path(td) / "r.wav"
        if engine == "espeak":
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(random.Random(i).choice(
                (140, 160, 175))), "-w", str(raw), text], check=True, capture_output=True)
        else:
            subprocess.run(["text2wave", "-eval", f"({voice})", "-o", str(raw)],
                           input=text.encode(), check=True, capture_output=True)
        if not to_wav(raw, dest / rel, 30):
            return []
    tag = "male;male voice;man" if gender == "male" else "female;female voice;woman"
    return [dict(path=rel, source=engine, kind="tts", package=engine, license="generated "
                 "(text: the GPL-3 licence text)", duration_s=f"{duration(dest / rel):.2f}",
                 orig_duration_s="", tags="speech;voice;no music;" + tag, weak_tags="",
                 style=f"synthetic speech ({engine} {voice}), no music", meta=text[:60])]


def ivr(dest: str, lang: str, package: str, license: str, speaker: str, gender: str, k: int,
        files: list[str]) -> list[dict]:
    """Real human telephone prompts of one speaker, concatenated with 0.4 s gaps."""
    dest = Path(dest)
    rel = f"speech/asterisk_{lang}/asterisk_{lang}_{gender}_{k:02d}.wav"
    ys = []
    for f in files:
        with tempfile.TemporaryDirectory() as td:
            if to_wav(f, Path(td) / "p.wav"):
                y, _ = sf.read(Path(td) / "p.wav", dtype="float64")
                ys += [y, np.zeros(int(0.4 * SR))]
    if not ys:
        return []
    got = write_wav(dest / rel, np.concatenate(ys), peak_db=-3)
    tag = "male;male voice;man" if gender == "male" else "female;female voice;woman"
    return [dict(path=rel, source="asterisk_" + lang, kind="speech", package=package,
                 license=license, duration_s=f"{got:.2f}", orig_duration_s="",
                 tags="speech;voice;no music;" + tag, weak_tags="",
                 style=f"real human IVR prompts ({speaker}), 8 kHz telephone band upsampled",
                 meta=f"{len(files)} prompts")]
