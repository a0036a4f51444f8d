"""``python -m rt_tagger.training corpus DEST``: build the distillation corpus.

Stages (each a list of work items, resumable, see :mod:`.manifest`): real music from Debian
packages, game MIDI and public-domain scores rendered by FluidSynth with several soundfonts
and instrumentations, drum loops, synthetic singing, speech, and recorded instruments
("sampled": scores played by TiMidity++ from freepats' sampled instruments, drum loops from
Hydrogen's recorded kits). Writes ``DEST/manifest.csv``,
``DEST/summary.txt`` and ``DEST/licenses/``. Reserved packages (``sources.RESERVED``) are
refused by name before anything is downloaded.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from . import jobs
from .debian import copyright_file, download, extract, licenses_for, licenses_of
from .gm import ENSEMBLES, MELODY_ONLY, SOUNDFONTS, available_soundfonts
from .manifest import done_rows, is_done, mark_done, refresh, write_manifest, write_summary
from .sources import AUDIO_EXT, IVR, MIDI_SOURCES, CorpusError, check_allowed, select

__all__ = ["Item", "build_corpus", "run_items"]

TOOLS = ("sox", "libsox-fmt-all", "ffmpeg", "fluidsynth", "fluid-soundfont-gm",
         "musescore-general-soundfont-small", "timgm6mb-soundfont", "csound-soundfont",
         "espeak-ng", "festival", "festvox-kallpc16k", "festvox-us-slt-hts", "timidity",
         "freepats", "hydrogen-drumkits")
#: Written to ``DEST/.built`` once every stage ran; the recipes rebuild a corpus that lacks it
#: (so a corpus built before a stage was added gets it).
CORPUS_VERSION = "rt-tagger corpus 2 (stages: music, game_midi, renders, drum_loops, sung, " \
                 "speech, sampled)"
#: Hydrogen kits that are electronic or sound effects, left out of the recorded drum loops
SYNTH_KITS = ("ElectricEmpireKit", "HardElectro1", "Audiophob", "Gimme A Hand 1.0",
              "circAfrique v4")
CLASSICAL = {"bach", "palestrina", "monteverdi", "trecento", "beethoven", "mozart", "haydn",
             "josquin", "schumann_robert", "schumann_clara", "handel", "corelli", "chopin",
             "cpebach", "schubert", "verdi", "weber", "luca", "lusitano", "ciconia", "beach"}
#: share of score renders per music21 composer folder (parse speed and part count matter)
SCORE_QUOTA = {"bach": .34, "palestrina": .2, "ryansMammoth": .2, "monteverdi": .06,
               "trecento": .05, "oneills1850": .04, "essenFolksong": .03, "josquin": .02,
               "beethoven": .015, "mozart": .015, "haydn": .01, "schumann_robert": .01,
               "schumann_clara": .01, "airdsAirs": .005}
SF_CYCLE = ("fluidr3", "timgm6mb", "csound", "musescore", "fluidr3", "timgm6mb", "csound")


@dataclass
class Item:
    id: str
    fn: object  # a module-level function of ``jobs`` (picklable): fn(*args) -> rows
    args: tuple = field(default_factory=tuple)


def _run(item: Item) -> tuple[list[dict], str]:
    try:
        return item.fn(*item.args), ""
    except (CorpusError, OSError, subprocess.CalledProcessError, ValueError, RuntimeError,
            IndexError, KeyError, ZeroDivisionError) as e:
        return [], f"{type(e).__name__}: {str(e)[:200]}"
    except Exception as e:  # a parser of a third-party file (music21, mido) can raise anything
        return [], f"{type(e).__name__}: {str(e)[:200]}"


def run_items(dest: Path, items: list[Item], jobs_n: int = 1, log=print) -> int:
    """Run the items that have no marker yet; each is marked when it finishes (with its rows
    or its error). Returns how many ran."""
    todo = [it for it in items if not is_done(dest, it.id)]
    if not todo:
        return 0
    t0, every = time.time(), max(1, len(todo) // 20)
    if jobs_n <= 1:
        for k, it in enumerate(todo, 1):
            rows, err = _run(it)
            mark_done(dest, it.id, rows, err)
            if k % every == 0:
                log(f"  {k}/{len(todo)} ({time.time() - t0:.0f} s)")
        return len(todo)
    with ProcessPoolExecutor(jobs_n) as ex:
        futs = {ex.submit(_run, it): it for it in todo}
        for k, f in enumerate(as_completed(futs), 1):
            rows, err = f.result()
            mark_done(dest, futs[f].id, rows, err)
            if k % every == 0:
                log(f"  {k}/{len(todo)} ({time.time() - t0:.0f} s)")
    return len(todo)


def _install_tools(log) -> None:
    missing = [p for p in TOOLS if subprocess.run(["dpkg", "-s", p], capture_output=True)
               .returncode]
    if not missing:
        return
    if os.geteuid() != 0:
        log(f"not root: cannot apt-get install {' '.join(missing)} (use --skip-apt)")
        return
    log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        log(f"apt-get install failed (continuing with what is there): {r.stderr[-300:]}")


class _Licenses:
    def __init__(self, dest: Path):
        self.dir = dest / "licenses"
        self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, package: str, copyright: Path | None) -> str:
        """Copy a package's copyright file; returns its licence names (DEP-5 fields)."""
        if copyright is None or not copyright.is_file():
            return ""
        shutil.copy(copyright, self.dir / f"{package}.copyright")
        return " / ".join(licenses_of(copyright.read_text(errors="replace")))


def _music_items(dest, sources, cache, max_sec, lic: _Licenses, log) -> list[Item]:
    debs = download([s.package for s in sources], cache / "debs", log)
    items = []
    for s in sources:
        if s.package not in debs:
            log(f"skip {s.key}: no .deb for {s.package}")
            continue
        pats = list(s.include) or [f"usr/share/*{e}" for e in AUDIO_EXT]
        stage = cache / "stage" / s.package
        files = extract(debs[s.package], stage, pats, s.package)
        lic.add(s.package, copyright_file(stage, s.package))
        cr = copyright_file(stage, s.package)
        text = cr.read_text(errors="replace") if cr else ""
        # the table's licence (checked by hand), else what the copyright file says of the
        # music files themselves (DEP-5 Files stanzas), else a pointer to the file
        found = " / ".join(licenses_for(text, [str(f.relative_to(stage)) for f in files]))
        license = s.license or found or "see licenses/" + s.package + ".copyright"
        row = dict(source=s.key, package=s.package, license=license, kind="music",
                   tags=s.tags, weak_tags=s.weak_tags, style=s.style)
        if s.kind == "fof":
            for folder in sorted({f.parent for f in files}):
                items.append(Item(f"music/{s.key}/{folder.name}", jobs.fof_song,
                                  (str(dest), str(folder), s.key, max_sec, row)))
            continue
        stems = [f.stem for f in files]
        for f in files:
            if any(Path(f).match(x) for x in s.exclude):
                continue
            # a name two folders share (faction themes) keeps its folder
            name = jobs.safe_name(f.stem if stems.count(f.stem) == 1
                                  else f"{f.parent.name}_{f.stem}")
            rel = f"music/{s.key}/{name}.wav"
            items.append(Item(rel, jobs.convert_track, (str(dest), str(f), rel, max_sec, row)))
    return items


def _midi_items(dest, cache, max_sec, sfs, lic, log) -> list[Item]:
    debs = download([p for p, _, _ in MIDI_SOURCES], cache / "debs", log)
    items = []
    for pkg, pat, license in MIDI_SOURCES:
        if pkg not in debs:
            continue
        stage = cache / "stage" / pkg
        files = extract(debs[pkg], stage, [pat], pkg)
        lic.add(pkg, copyright_file(stage, pkg))
        for k, f in enumerate(files):
            for sf_name in (SF_CYCLE[k % len(SF_CYCLE)], SF_CYCLE[(k + 3) % len(SF_CYCLE)]):
                if sf_name in sfs:
                    items.append(Item(f"game_midi/{pkg}/{f.stem}_{sf_name}", jobs.game_midi,
                                      (str(dest), str(f), pkg, license, sf_name, max_sec)))
    return items


def _scores(n_pieces: int, seed: int = 1234) -> list[tuple[str, str]]:
    """(path, path under the music21 corpus) of ``n_pieces`` scores, by :data:`SCORE_QUOTA`."""
    try:
        from music21 import corpus
    except ImportError as e:
        raise CorpusError("score renders need music21: pip install 'rt-tagger[training]'") from e
    by: dict[str, list] = {}
    for p in map(str, corpus.getPaths()):
        rel = p.split("/corpus/", 1)[-1]
        if not p.endswith(".rntxt"):
            by.setdefault(rel.split("/")[0], []).append((p, rel))
    rnd = random.Random(seed)
    pick = []
    for comp, q in SCORE_QUOTA.items():
        paths = sorted(by.get(comp, []))
        rnd.shuffle(paths)
        pick += paths[: max(1, round(q * n_pieces))]
    rnd.shuffle(pick)
    return pick[:n_pieces]


def _score_items(dest, midi_n, max_sec, sfs) -> list[Item]:
    """Each score three times: a solo, a duo and an ensemble (one-part tunes: melody
    instruments), each instrumentation and soundfont taken in turn so all get used."""
    solos = [e.name for e in ENSEMBLES if e.texture == "solo"]
    duos = [e.name for e in ENSEMBLES if e.texture == "duo"]
    ens = [e.name for e in ENSEMBLES if e.texture == "ensemble"]
    cyc = [s for s in SF_CYCLE if s in sfs]
    items = []
    for i, (path, rel) in enumerate(_scores((midi_n + 2) // 3)):
        comp = rel.split("/")[0]
        mono = comp in ("ryansMammoth", "oneills1850", "essenFolksong", "airdsAirs")
        names = ([MELODY_ONLY[(3 * i + k) % len(MELODY_ONLY)] for k in range(3)] if mono else
                 [solos[i % len(solos)], duos[i % len(duos)], ens[i % len(ens)]])
        configs = [(n, cyc[(i + 2 * k) % len(cyc)]) for k, n in enumerate(names)]
        items.append(Item(f"score/{i:04d}", jobs.score_renders,
                          (str(dest), i, path, rel, configs, min(max_sec or 30, 30),
                           comp in CLASSICAL)))
    return items


def _drum_items(dest, sfs) -> list[Item]:
    from .gm import DRUM_STYLES

    tempi = {"dnb": (165, 174), "tabla_like": (70, 95), "swing": (100, 160)}
    cyc = [s for s in SF_CYCLE if s in sfs]
    items, i = [], 0
    for style in DRUM_STYLES:
        for bpm in tempi.get(style, (72, 100, 124, 150)):
            for sf_name in (cyc[i % len(cyc)], cyc[(i + 1) % len(cyc)]):
                items.append(Item(f"drums/{i:03d}_{sf_name}", jobs.drum_loop,
                                  (str(dest), i, style, bpm, sf_name, 30.0)))
            i += 1
    return items


def _sampled_items(dest, n_scores, sfs, lic, log) -> list[Item]:
    """Recorded instruments: ``n_scores`` scores, each as a solo and a duo played by freepats'
    sampled instruments through TiMidity++ (only instrumentations freepats has every program
    of), and each pattern of :data:`.gm.DRUM_STYLES` played from each recorded Hydrogen kit."""
    from .gm import DRUM_STYLES, patch_programs
    from .kits import HYDROGEN_KITS, find_kits

    items = []
    if "freepats" in sfs:
        have = patch_programs(sfs["freepats"])
        ok = [e for e in ENSEMBLES if all(p in have for part in (e.top, e.inner, e.bottom)
                                          if part for p in part)]
        solos = [e.name for e in ok if e.texture == "solo"]
        duos = [e.name for e in ok if e.texture in ("duo", "ensemble")]
        mono_ok = [m for m in MELODY_ONLY if m in solos]
        for i, (path, rel) in enumerate(_scores(n_scores, seed=4321)):
            comp = rel.split("/")[0]
            mono = comp in ("ryansMammoth", "oneills1850", "essenFolksong", "airdsAirs")
            names = ([mono_ok[(2 * i + k) % len(mono_ok)] for k in range(2)] if mono else
                     [solos[i % len(solos)], duos[i % len(duos)]])
            items.append(Item(f"sampled/score/{i:04d}", jobs.score_renders,
                              (str(dest), 5000 + i, path, rel, [(n, "freepats") for n in names],
                               30, comp in CLASSICAL)))
    else:
        log("freepats is not installed: no sampled-instrument renders (apt-get install "
            "timidity freepats)")
    kits = [k for k in find_kits() if k.name not in SYNTH_KITS]
    if not kits:
        log(f"no recorded drum kit in {HYDROGEN_KITS}: no kit loops (apt-get install "
            "hydrogen-drumkits)")
        return items
    license = lic.add("hydrogen-drumkits",
                      Path("/usr/share/doc/hydrogen-drumkits/copyright")) or "see licenses/"
    tempi = {"dnb": (165, 174), "swing": (100, 160), "halftime": (70, 90)}
    styles = [s for s in DRUM_STYLES if s not in ("tabla_like", "latin")]  # no hand drums
    i = 0
    for kit in kits:
        for style in styles:
            choices = tempi.get(style, (80, 96, 110, 124, 140))
            bpm = choices[i % len(choices)]
            items.append(Item(f"sampled/kit/{i:03d}", jobs.kit_loop,
                              (str(dest), i, str(kit), style, bpm, 30.0, license)))
            i += 1
    return items


def _sung_items(dest, n, sfs) -> list[Item]:
    from .sing import VOICES

    scores = [s for s in _scores(4 * n, seed=99) if s[1].startswith("bach")][:n]
    backs = ("piano", "nylon_guitar", "string_ensemble", "church_organ", "pop_band", "folk",
             "piano_trio", "synth_pop", "rock_band", "harp", None)
    cyc = [s for s in SF_CYCLE if s in sfs]
    items = []
    for i, (path, rel) in enumerate(scores):
        lang = "de" if i % 3 else "en"
        voice, gender = VOICES[lang][i % len(VOICES[lang])]
        items.append(Item(f"sung/{i:04d}", jobs.sung, (str(dest), i, path, rel, voice, gender,
                          backs[i % len(backs)], cyc[i % len(cyc)], 30.0)))
    return items


def _speech_items(dest, cache, lic, log) -> list[Item]:
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    paras = [re.sub(r"\s+", " ", p).strip() for p in text.split("\n\n")]
    paras = [p for p in paras if 250 <= len(p) <= 700]
    rnd = random.Random(7)
    voices = [("espeak", v, g) for v, g in (("en-us+m3", "male"), ("en+m1", "male"),
              ("en-gb-x-rp+m7", "male"), ("en-us+f2", "female"), ("en+f3", "female"),
              ("en-gb-x-rp+f4", "female"))]
    if shutil.which("text2wave"):
        voices += [("festival", "voice_kal_diphone", "male"),
                   ("festival", "voice_cmu_us_slt_arctic_hts", "female")]
    items = [Item(f"tts/{e}_{v}_{i}", jobs.tts, (str(dest), i, e, v, g, rnd.choice(paras)))
             for i in range(5) for e, v, g in voices]
    debs = download([p for _, p in IVR], cache / "debs", log)
    for lang, pkg in IVR:
        if pkg not in debs:
            continue
        stage = cache / "stage" / pkg
        files = extract(debs[pkg], stage, ["usr/share/asterisk/sounds/*.wav"], pkg)
        license = lic.add(pkg, copyright_file(stage, pkg)) or "CC-BY-SA-3.0"
        files = [f for f in files if not re.search(r"/(digits|letters|phonetic|silence)/",
                                                   str(f))]
        spk = next((p for p in str(files[0]).split("/") if re.match(r"^[a-z]{2}_[A-Z]{2}_[mf]_",
                                                                     p)), lang) if files else lang
        gender = "male" if "_m_" in spk else "female"
        random.Random(lang).shuffle(files)
        clip, length, k = [], 0.0, 0
        for f in files:
            d = jobs.duration(f)
            if not 0 < d <= 15:
                continue
            clip.append(str(f))
            length += d + 0.4
            if length >= 28:
                items.append(Item(f"ivr/{lang}_{k:02d}", jobs.ivr, (str(dest), lang, pkg, license,
                                                                   spk, gender, k, clip)))
                clip, length, k = [], 0.0, k + 1
                if k >= 25:
                    break
    return items


def _music21_note(folder: Path) -> None:
    """Where the scores come from, in music21's own words, and its licence file."""
    try:
        import music21
        import music21.corpus as m21corpus
    except ImportError:
        return
    words = " ".join((m21corpus.__doc__ or "").split("Use `corpus.parse`")[0].split())
    (folder / "music21-corpus.txt").write_text(
        "Score renders (music21+fluidsynth, sung_world) use the corpus shipped with music21 "
        f"{music21.__version__} (PyPI; the toolkit is BSD-3-Clause). Renders take scores of "
        "composers who died centuries ago (public-domain works) and public-domain tune books; "
        "the encodings are distributed with music21. In music21's words:\n\n" + words + "\n")
    for lic in Path(music21.__file__).parent.parent.glob("music21-*.dist-info/licenses/*"):
        shutil.copy(lic, folder / f"music21.{lic.name}")


def build_corpus(dest: str | Path, *, jobs_n: int = 1, max_track_sec: float = 160,
                 midi_n: int = 1800, sung_n: int = 150, sampled_n: int = 120,
                 only: list[str] | None = None,
                 extra_packages: list[str] = (), skip_apt: bool = False,
                 cache: str | Path | None = None, log=print) -> Path:
    """Build (or resume) the corpus in ``dest``; returns the manifest's path."""
    check_allowed(*(only or ()), *extra_packages)  # before anything touches the network
    t0 = time.time()
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache else dest / ".cache"
    if not skip_apt:
        _install_tools(log)
    lic = _Licenses(dest)
    stages = {"music", "renders", "game_midi", "drum_loops", "sung", "speech", "sampled"}
    names = [o for o in only or () if o not in stages]  # sources (keys or package names)
    wanted = (set(only) & stages) | ({"music"} if names else set()) if only else stages
    sources = select(names or None, extra_packages) if "music" in wanted else []
    sfs = available_soundfonts()
    for name in sfs:
        pkg = SOUNDFONTS[name][1]
        lic.add(pkg, Path(f"/usr/share/doc/{pkg}/copyright"))

    def stage(name: str, make):
        if name not in wanted:
            return
        log(f"[{time.time() - t0:6.0f} s] {name}: listing work")
        items = make()
        n = run_items(dest, items, jobs_n, log)
        if name == "music":  # licences read again: a resumed corpus gets the current ones
            for it in items:
                refresh(dest, it.id, license=it.args[-1]["license"])
        rows, failed = done_rows(dest)
        write_manifest(dest, rows)
        write_summary(dest, rows, failed, time.time() - t0)
        log(f"[{time.time() - t0:6.0f} s] {name}: {len(items)} items, {n} ran now; corpus "
            f"{sum(float(r['duration_s'] or 0) for r in rows) / 3600:.2f} h")

    stage("music", lambda: _music_items(dest, sources, cache, max_track_sec, lic, log))
    if sfs:
        stage("game_midi", lambda: _midi_items(dest, cache, max_track_sec, sfs, lic, log))
        stage("renders", lambda: _score_items(dest, midi_n, max_track_sec, sfs))
        stage("drum_loops", lambda: _drum_items(dest, sfs))
        stage("sung", lambda: _sung_items(dest, sung_n, sfs))
    else:
        log("no General MIDI soundfont installed: no renders (apt-get install fluid-soundfont-gm)")
    stage("speech", lambda: _speech_items(dest, cache, lic, log))
    stage("sampled", lambda: _sampled_items(dest, sampled_n, available_soundfonts(), lic, log))
    _music21_note(lic.dir)
    rows, failed = done_rows(dest)
    path = write_manifest(dest, rows)
    write_summary(dest, rows, failed, time.time() - t0)
    if not only and not extra_packages:
        (dest / ".built").write_text(CORPUS_VERSION + "\n" + time.strftime("%Y-%m-%d %H:%M:%S\n"))
    log((dest / "summary.txt").read_text())
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m rt_tagger.training corpus DEST")
