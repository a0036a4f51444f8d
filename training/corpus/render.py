"""FluidSynth and TiMidity++ renders with known instruments: public-domain scores (the music21 corpus) played
by chosen General MIDI instrumentations, generated drum loops, and game MIDI files with their
own programs. The ground-truth tags of a render come from the notes that actually sound."""
from __future__ import annotations

import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .decode import SR, write_wav
from .gm import DRUM_STYLES, VOICE_PROGRAMS, Ensemble, program_tags
from .sources import CorpusError

__all__ = ["Note", "drum_notes", "midi_tags", "score_parts", "synthesize", "write_midi"]

Note = tuple  # (start_s, dur_s, pitch, velocity)


def _mido():
    try:
        import mido
    except ImportError as e:  # the training extra installs it
        raise CorpusError("renders need mido: pip install 'rt-tagger[training]'") from e
    return mido


def score_parts(path: str, bpm: float, max_sec: float, seed: int = 0) -> list[list[Note]]:
    """The notes of each part of a music21-readable score, top part first, at ``bpm``,
    lightly humanised (onset jitter, velocity), up to ``max_sec`` seconds."""
    import warnings

    from music21 import converter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = converter.parse(path)
    if isinstance(s, stream.Opus):
        scores = list(s.scores)
        if not scores:
            return []
        s = scores[random.Random(seed).randrange(len(scores))]
    rng = random.Random(seed)
    spq = 60.0 / bpm
    parts = list(s.parts) or [s]
    out = []
    for p in parts:
        notes = []
        for n in p.flatten().notes:
            t = float(n.offset) * spq
            if t >= max_sec:
                break
            d = max(0.05, float(n.quarterLength) * spq)
            vel = int(np.clip(rng.gauss(82, 10), 45, 120))
            jit = rng.uniform(-0.012, 0.012)
            for pitch in n.pitches:
                notes.append((max(0.0, t + jit), min(d, max_sec - t), int(pitch.midi), vel))
        if notes:
            out.append(notes)
    return out


def drum_notes(style: str, bpm: float, seconds: float, seed: int = 0) -> list[Note]:
    """A GM drum track (channel 10 notes) of a :data:`DRUM_STYLES` pattern, with fills and
    crashes every four bars."""
    rng = random.Random(seed)
    pat = DRUM_STYLES[style]
    step = 60.0 / bpm / 4
    notes = []
    bars = int(seconds / (16 * step)) + 1
    for b in range(bars):
        for note, steps in pat.items():
            for i, c in enumerate(steps):
                if c == ".":
                    continue
                t = (b * 16 + i) * step + rng.uniform(-0.006, 0.006)
                vel = (100 if c == "x" else 60) + rng.randint(-12, 12)
                notes.append((max(0.0, t), step, note, vel))
        if b % 4 == 3 and rng.random() < 0.7:  # a tom fill on the last beat
            for i, tom in enumerate((50, 47, 45, 41)):
                notes.append(((b * 16 + 12 + i) * step, step, tom, 100))
        if b % 4 == 0:
            notes.append((b * 16 * step, 4 * step, 49, 105))
    return [n for n in notes if n[0] < seconds]


def write_midi(path: Path, tracks: list[tuple[tuple[int, ...] | None, list[Note]]],
               drums: list[Note] | None = None, seed: int = 0) -> None:
    """A type-1 MIDI file: each (programs, notes) track on its own channels (a tuple of
    programs doubles the part), drums on channel 10; random room (reverb, chorus) and pan."""
    mido = _mido()
    rng = random.Random(seed)
    tpb, tempo = 480, 500000  # 120 bpm grid: seconds -> ticks at 960 ticks/s
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    mid.tracks.append(meta)
    reverb, chorus = rng.randint(10, 90), rng.randint(0, 40)
    free = [c for c in range(16) if c != 9]
    jobs = []
    for programs, notes in tracks:
        for prog in programs or ():
            if not free:
                break
            jobs.append((free.pop(0), prog, notes))
    if drums:
        jobs.append((9, None, drums))
    for ch, prog, notes in jobs:
        tr = mido.MidiTrack()
        head = [("control_change", dict(control=91, value=reverb)),
                ("control_change", dict(control=93, value=chorus)),
                ("control_change", dict(control=10, value=int(np.clip(rng.gauss(64, 25), 0, 127)))),
                ("control_change", dict(control=7, value=100 if prog is not None else 90))]
        if prog is not None:
            head.insert(0, ("program_change", dict(program=prog)))
        for typ, kw in head:
            tr.append(mido.Message(typ, channel=ch, time=0, **kw))
        ev = []
        for start, dur, pitch, vel in notes:
            on = int(round(start * 960))
            ev.append((on, 1, pitch, vel))
            ev.append((on + max(1, int(round(dur * 960)) - 4), 0, pitch, 0))
        ev.sort(key=lambda e: (e[0], e[1]))
        last = 0
        for t, is_on, pitch, vel in ev:
            tr.append(mido.Message("note_on" if is_on else "note_off", channel=ch,
                                   note=int(np.clip(pitch, 0, 127)), velocity=vel,
                                   time=t - last))
            last = t
        mid.tracks.append(tr)
    mid.save(str(path))


def midi_tags(path: Path, min_frac: float = 0.05) -> tuple[set[str], list]:
    """Ground-truth tags of a MIDI file: the instruments of the programs that play at least
    ``min_frac`` of its notes (channel 10: drums)."""
    mido = _mido()
    m = mido.MidiFile(str(path))
    prog: dict[int, int] = {}
    count: dict[tuple, int] = {}
    for tr in m.tracks:
        for msg in tr:
            if msg.type == "program_change":
                prog[msg.channel] = msg.program
            elif msg.type == "note_on" and msg.velocity > 0:
                k = ("drums",) if msg.channel == 9 else (prog.get(msg.channel, 0),)
                count[k] = count.get(k, 0) + 1
    total = sum(count.values()) or 1
    tags: set[str] = set()
    used = []
    for k, n in sorted(count.items(), key=lambda kv: str(kv[0])):
        if n / total >= min_frac:
            tags |= program_tags(0, drums=True) if k == ("drums",) else program_tags(k[0])
            used.append(k[0])
    return tags, used


def _synth_command(midi: Path, raw: Path, font: Path, gain: float) -> list[str]:
    """The command that renders ``midi`` to ``raw`` (wav at :data:`SR`): FluidSynth for an
    sf2/sf3 soundfont, TiMidity++ for a GUS patch set's configuration file (``.cfg``)."""
    if font.suffix == ".cfg":
        return ["timidity", "-c", str(font), "-Ow", "--output-mono", "-s", str(SR),
                "-A", str(round(200 * gain)), "-o", str(raw), str(midi)]
    # sf3 (Ogg-compressed) fonts take ~10 s to decode whole: load only the samples used
    lazy = ["-o", "synth.dynamic-sample-loading=1"] if font.suffix == ".sf3" else []
    return ["fluidsynth", "-ni", "-q", *lazy, "-g", str(gain), "-r", str(SR), "-F", str(raw),
            "-T", "wav", str(font), str(midi)]


def synthesize(midi: Path, out: Path, soundfont: Path, max_sec: float = 0,
               gain: float = 0.6) -> float:
    """Render ``midi`` with ``soundfont`` (an sf2/sf3 file: FluidSynth; a TiMidity++ ``.cfg``
    of GUS patches such as freepats: TiMidity++) to a 16 kHz mono wav peak-normalised to
    -1 dBFS, cut (with a 0.5 s fade) to ``max_sec``; returns its seconds. Silence is an error."""
    soundfont = Path(soundfont)
    with tempfile.TemporaryDirectory() as td:
        raw = Path(td) / "st.wav"
        cmd = _synth_command(midi, raw, soundfont, gain)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode or not raw.is_file():
            raise CorpusError(f"{cmd[0]} failed on {midi}: {r.stderr.strip()[-200:]}")
        y, sr = sf.read(raw, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if max_sec:
        y = y[: int(max_sec * sr)]
        fade = min(y.size, int(0.5 * sr))
        y[y.size - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak < 1e-4:
        raise CorpusError(f"{cmd[0]} rendered silence from {midi}")
    return write_wav(out, y)


def render_score(path: str, ens: Ensemble, soundfont: Path, out: Path, max_sec: float,
                 seed: int) -> tuple[float, set[str], list]:
    """Render one score with ``ens``; returns (seconds, ground-truth tags, programs used)."""
    rng = random.Random(seed)
    bpm = rng.uniform(*ens.tempo)
    parts = score_parts(path, bpm, max_sec, seed)
    if not parts:
        raise CorpusError(f"{path}: no notes")
    transpose = rng.choice((0, 0, 0, -2, 2, -1, 1))
    tracks = []
    for programs, notes in zip(ens.parts(len(parts)), parts):
        if programs:
            shift = transpose - (12 if programs[0] in (32, 33, 34, 36, 38, 43) else 0)
            tracks.append((programs, [(s, d, p + shift, v) for s, d, p, v in notes]))
    end = max(s + d for _, notes in tracks for s, d, _, _ in notes)
    drums = drum_notes(ens.drums, bpm, min(end, max_sec), seed) if ens.drums else None
    with tempfile.TemporaryDirectory() as td:
        mid = Path(td) / "r.mid"
        write_midi(mid, tracks, drums, seed)
        tags, used = midi_tags(mid)
        seconds = synthesize(mid, out, soundfont, max_sec)
    if ens.classical:
        tags.add("classical")
    if not any(p in VOICE_PROGRAMS for progs, _ in tracks for p in progs):
        tags.add("no vocals")
    return seconds, tags, used


def render_midi_file(src: Path, soundfont: Path, out: Path,
                     max_sec: float) -> tuple[float, set[str], list]:
    """Render a game's MIDI file with its own programs (cut at ``max_sec``)."""
    tags, used = midi_tags(src)
    seconds = synthesize(src, out, soundfont, max_sec)
    return seconds, tags, used

