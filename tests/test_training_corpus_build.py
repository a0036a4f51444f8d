"""The corpus builder (``python -m rt_tagger.training corpus``) offline: the reserved packages are
refused by name, .deb extraction works on a package built here with ``dpkg-deb --build``, the
manifest and summary are what the corpus loader reads, finished items are never redone and
interrupted ones are, FluidSynth and TiMidity++ renders sound where they should, recorded drum
kits are read and sequenced note for note, the singing follows its melody, and the timbre/room
augmentations do what they say."""
from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from rt_tagger.training import augment
from rt_tagger.training.__main__ import main as training_main
from rt_tagger.training.corpus import build, debian, manifest, sources
from rt_tagger.training.corpus.sources import CorpusError
from rt_tagger.training.data import load_dataset
from rt_tagger.training.data.corpus import ground_truth

SR = 16000


# ---------------------------------------------------------------- the reserved packages
@pytest.mark.parametrize("name", ["gcompris-qt-data", "0ad-data", "freeciv-data", "asc-music",
                                  "wesnoth-1.16-music", "wesnoth-music", "pathological"])
def test_reserved_packages_are_refused_by_name(name, tmp_path):
    dest = tmp_path / "c"
    for call in (lambda: build.build_corpus(dest, only=[name], skip_apt=True),
                 lambda: build.build_corpus(dest, extra_packages=[name], skip_apt=True),
                 lambda: sources.select(only=["ufoai", name]),
                 lambda: sources.Source("x", name)):
        with pytest.raises(CorpusError, match=f"refusing package '{name}'.*reserved"):
            call()
    assert not dest.exists()  # refused before anything was created or downloaded
    with pytest.raises(CorpusError, match=name):
        debian.download([name], tmp_path / "debs")


def test_cli_refuses_a_reserved_package(tmp_path, capsys):
    rc = training_main(["corpus", str(tmp_path / "c"), "--skip-apt", "--only", "0ad-data"])
    assert rc == 2
    assert "refusing package '0ad-data'" in capsys.readouterr().err


def test_the_source_table_uses_no_reserved_package():
    assert len(sources.RESERVED) == 30
    for s in sources.SOURCES:
        assert sources.reserved_reason(s.package) is None, s.package
    assert len({s.key for s in sources.SOURCES}) == len(sources.SOURCES)
    # an unknown package given by the user becomes a generic source (still checked)
    (g,) = sources.select(only=["some-game-data"])
    assert (g.package, g.key, g.include) == ("some-game-data", "some-game", ())


# ---------------------------------------------------------------- .deb extraction
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: music/*
Copyright: 2020 A Composer
License: CC-BY-SA-3.0

Files: debian/*
Copyright: 2021 A Packager
License: GPL-3+
"""


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_extract_takes_only_the_wanted_members_of_a_deb(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: toy-data\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: toy\n")
    music = root / "usr/share/games/toy/music"
    music.mkdir(parents=True)
    (music / "a.ogg").write_bytes(b"A" * 100)
    (root / "usr/share/games/toy/sfx.wav").write_bytes(b"B" * 10)
    with zipfile.ZipFile(root / "usr/share/games/toy/data.pk3", "w") as z:
        z.writestr("sound/cd/c.ogg", b"C" * 50)
        z.writestr("maps/m.bsp", b"M")
    (root / "usr/share/doc/toy-data").mkdir(parents=True)
    (root / "usr/share/doc/toy-data/copyright").write_text(COPYRIGHT)
    debs = tmp_path / "debs"
    debs.mkdir()
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root),
                    str(debs / "toy-data_1.0_all.deb")], check=True, capture_output=True)
    deb = debian.deb_path(debs, "toy-data")
    assert deb is not None and debian.deb_path(debs, "toy") is None

    out = tmp_path / "stage"
    got = debian.extract(deb, out, ["usr/share/games/toy/music/*.ogg",
                                    "pk3:usr/share/games/toy/data.pk3:sound/*/*.ogg"])
    assert sorted(p.name for p in got) == ["a.ogg", "c.ogg"]
    assert (out / "usr/share/games/toy/music/a.ogg").read_bytes() == b"A" * 100
    assert not (out / "usr/share/games/toy/sfx.wav").exists()
    assert not (out / "usr/share/games/toy/data.pk3").exists()  # unpacked, then dropped
    cr = debian.copyright_file(out, "toy-data")
    assert debian.licenses_of(cr.read_text()) == ["GPL-2+", "CC-BY-SA-3.0"]
    # per file: the last matching Files stanza (source paths match installed tails)
    assert debian.licenses_for(cr.read_text(), ["usr/share/games/toy/music/a.ogg"]) \
        == ["CC-BY-SA-3.0"]
    assert debian.licenses_for(cr.read_text(), ["usr/share/games/toy/sfx.wav"]) == ["GPL-2+"]
    assert debian.licenses_for("Not machine-readable. GPL.", ["x/a.ogg"]) == []
    # finished once: a second call reads the marker, it does not need the .deb
    deb.unlink()
    assert sorted(p.name for p in debian.extract(deb, out, ["*"])) == ["a.ogg", "c.ogg"]


# ---------------------------------------------------------------- items, manifest, resume
def _tone(dest: str, rel: str, source: str, f0: float, tags: str = "", meta: str = "",
          kind: str = "music", log: str | None = None) -> list[dict]:
    """A work item for the tests: writes a 2 s tone, appends its name to ``log``."""
    if log:
        with open(log, "a") as f:
            f.write(rel + "\n")
    t = np.arange(2 * SR) / SR
    (Path(dest) / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(Path(dest) / rel, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), SR)
    return [dict(path=rel, source=source, package=source + "-data", license="GPL-2+",
                 duration_s="2.00", orig_duration_s="", kind=kind, tags=tags, weak_tags="",
                 style="test", meta=meta)]


def _fails(dest: str) -> list[dict]:
    raise CorpusError("this item cannot be made")


def _items(dest: Path, log: Path) -> list[build.Item]:
    d, lg = str(dest), str(log)
    return [build.Item("a", _tone, (d, "music/ufoai/a.wav", "ufoai", 220.0, "", "", "music", lg)),
            build.Item("b", _tone, (d, "music/supertuxkart/b.wav", "supertuxkart", 330.0, "", "",
                                    "music", lg)),
            build.Item("r1", _tone, (d, "midi_render/r1.wav", "music21+fluidsynth", 440.0,
                                     "flute;classical", "bach/bwv1.mxl", "midi_render", lg)),
            build.Item("r2", _tone, (d, "midi_render/r2.wav", "music21+fluidsynth", 262.0,
                                     "piano;classical", "bach/bwv1.mxl", "midi_render", lg)),
            build.Item("bad", _fails, (d,))]


def test_finished_items_are_not_redone_and_interrupted_ones_are(tmp_path):
    dest, log = tmp_path / "c", tmp_path / "ran.txt"
    dest.mkdir()
    items = _items(dest, log)
    # "a" finished in an earlier run; "b" was interrupted: a partial file and no marker
    _tone(str(dest), "music/ufoai/a.wav", "ufoai", 220.0)
    manifest.mark_done(dest, "a", _tone(str(dest), "music/ufoai/a.wav", "ufoai", 220.0))
    (dest / "music/supertuxkart").mkdir(parents=True)
    (dest / "music/supertuxkart/b.wav").write_bytes(b"RIFF-trunc")
    assert build.run_items(dest, items) == 4
    ran = log.read_text().split()
    assert "music/ufoai/a.wav" not in ran and "music/supertuxkart/b.wav" in ran
    assert sf.info(dest / "music/supertuxkart/b.wav").frames == 2 * SR  # redone whole
    # everything is finished now (the failure too, with its reason): nothing runs again
    assert build.run_items(dest, items) == 0
    rows, failed = manifest.done_rows(dest)
    assert len(rows) == 4 and failed == [("bad", "CorpusError: this item cannot be made")]
    # a corrected licence reaches a finished item's rows without redoing it
    manifest.refresh(dest, "b", license="CC0-1.0")
    rows, _ = manifest.done_rows(dest)
    assert {r["path"]: r["license"] for r in rows}["music/supertuxkart/b.wav"] == "CC0-1.0"
    assert build.run_items(dest, items) == 0


def test_manifest_and_summary_are_read_back_by_the_corpus_loader(tmp_path):
    dest = tmp_path / "c"
    dest.mkdir()
    build.run_items(dest, _items(dest, tmp_path / "ran.txt"))
    rows, failed = manifest.done_rows(dest)
    manifest.write_manifest(dest, rows)
    manifest.write_summary(dest, rows, failed, elapsed_s=90)
    header = (dest / "manifest.csv").read_text().splitlines()[0]
    assert header == ",".join(manifest.FIELDS)
    index = load_dataset("corpus", dest)
    split = {c.key: c.split for c in index.clips}
    assert split["music/ufoai/a.wav"] == "train" and split["music/supertuxkart/b.wav"] == "test"
    assert split["midi_render/r1.wav"] == split["midi_render/r2.wav"]  # one score, one split
    assert ground_truth(dest)["midi_render/r1.wav"] == {"flute", "classical"}
    summary = (dest / "summary.txt").read_text()
    line = next(ln for ln in summary.splitlines() if " ufoai " in ln)
    assert line.split()[:4] == ["music", "ufoai", "1", f"{2 / 3600:.2f}"]
    assert "GPL-2+" in line
    assert "TOTAL 4 files" in summary and "1 items failed" in summary


# ---------------------------------------------------------------- FluidSynth
def _soundfont():
    from rt_tagger.training.corpus.gm import available_soundfonts

    sfs = available_soundfonts()
    return next(iter(sfs.values()), None)


@pytest.mark.skipif(shutil.which("fluidsynth") is None or _soundfont() is None,
                    reason="fluidsynth or a General MIDI soundfont is not installed")
def test_fluidsynth_renders_a_tiny_score_in_its_band(tmp_path):
    pytest.importorskip("mido", reason="renders need mido (the training extra)")
    from rt_tagger.training.corpus import render

    notes = [(0.5 * i, 0.45, 69, 96) for i in range(6)]  # A4 = 440 Hz, flute (program 73)
    mid, out = tmp_path / "t.mid", tmp_path / "t.wav"
    render.write_midi(mid, [((73,), notes)], seed=0)
    assert render.midi_tags(mid)[0] == {"flute"}
    seconds = render.synthesize(mid, out, _soundfont(), max_sec=3)
    y, sr = sf.read(out)
    assert sr == SR and 2.5 <= seconds <= 3.0 and np.max(np.abs(y)) > 0.5
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    f = np.fft.rfftfreq(y.size, 1 / sr)
    assert abs(f[np.argmax(spec)] / 440 - 1) < 0.03
    assert spec[(f > 400) & (f < 1800)].sum() > 0.8 * spec[f > 60].sum()


# ---------------------------------------------------------------- TiMidity++ and freepats
def test_patch_programs_reads_bank_0_only(tmp_path):
    from rt_tagger.training.corpus.gm import patch_programs

    cfg = tmp_path / "p.cfg"
    cfg.write_text("dir /x\n# a comment\ndrumset 0\n 35 Drum_000/035_Kick.pat amp=100\n"
                   "bank 0\n 0 Tone_000/000_Piano.pat\n 40\tTone_000/040_Violin.pat  # v\n"
                   "bank 1\n 41 Tone_001/041_Viola.pat\n")
    assert patch_programs(cfg) == {0, 40}


@pytest.mark.skipif(shutil.which("timidity") is None
                    or not Path("/etc/timidity/freepats.cfg").is_file(),
                    reason="timidity or freepats is not installed")
def test_timidity_plays_freepats_violin_at_its_pitch(tmp_path):
    pytest.importorskip("mido", reason="renders need mido (the training extra)")
    from rt_tagger.training.corpus import render
    from rt_tagger.training.corpus.gm import available_soundfonts, patch_programs

    cfg = available_soundfonts()["freepats"]
    assert {0, 40, 42, 46, 73, 104} <= patch_programs(cfg)  # piano, violin, cello, harp, ...
    notes = [(0.6 * i, 0.55, 69, 100) for i in range(5)]  # A4 = 440 Hz, violin (program 40)
    mid, out = tmp_path / "v.mid", tmp_path / "v.wav"
    render.write_midi(mid, [((40,), notes)], seed=0)
    seconds = render.synthesize(mid, out, cfg, max_sec=3)
    y, sr = sf.read(out)
    assert sr == SR and 2.5 <= seconds <= 3.0 and np.max(np.abs(y)) > 0.5
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    f = np.fft.rfftfreq(y.size, 1 / sr)
    low = spec[(f > 60) & (f < 2000)]
    assert abs(f[(f > 60) & (f < 2000)][np.argmax(low)] / 440 - 1) < 0.03


# ---------------------------------------------------------------- recorded drum kits
def _kit(tmp_path) -> Path:
    """A Hydrogen-style kit: drumkit.xml names the instruments; each sample is one click of
    its own length (so a hit's sample can be told from the mix), files named unhelpfully."""
    kit = tmp_path / "kit"
    kit.mkdir()
    xml = ['<?xml version="1.0"?><drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">'
           '<name>t</name><instrumentList>']
    for k, (name, n) in enumerate((("Kick", 2), ("Snare Rock", 1), ("Hi Hat Closed", 1),
                                   ("Floor Tom", 1), ("Snare Roll", 1))):
        files = []
        for j in range(n):
            y = np.zeros(400 + 100 * k + 10 * j)
            y[0] = 0.5
            fn = f"S{k}_{j}.flac"
            sf.write(kit / fn, y, 44100)
            files.append(f"<layer><filename>{fn}</filename></layer>")
        xml.append(f"<instrument><id>{k}</id><name>{name}</name>{''.join(files)}</instrument>")
    (kit / "drumkit.xml").write_text("".join(xml) + "</instrumentList></drumkit_info>")
    return kit


def test_kit_roles_come_from_instrument_names_with_fallbacks(tmp_path):
    from rt_tagger.training.corpus import kits

    kit = _kit(tmp_path)
    got = {n: sorted(Path(f).name for f in fs) for n, fs in kits.kit_samples(str(kit)).items()}
    assert got[36] == ["S0_0.flac", "S0_1.flac"]
    assert got[38] == ["S1_0.flac"]  # "Snare Roll" is not a snare hit
    assert got[42] == ["S2_0.flac"] and got[44] == got[46] == got[42]  # hats fall back
    assert got[41] == ["S3_0.flac"] and got[48] == got[41]  # toms fall back to the floor tom
    assert got[51] == got[42] and got[37] == got[38]  # ride -> hat, rim -> snare
    assert 56 not in got and 60 not in got  # no cowbell, no hand drums
    assert kits.find_kits(tmp_path) == [kit]
    assert kits.find_kits(tmp_path / "none") == []


def test_kit_loop_puts_each_hit_at_its_time_and_leaves_out_what_the_kit_lacks(tmp_path):
    from rt_tagger.training.corpus import kits

    kit = _kit(tmp_path)
    notes = [(0.25, 0.1, 36, 127), (0.75, 0.1, 38, 64), (1.0, 0.1, 56, 127), (1.5, 0.1, 42, 127)]
    y, played = kits.render_kit_loop(kit, notes, 2.0, seed=1)
    assert y.size == 2 * SR and played == [36, 38, 42]
    onsets = np.flatnonzero(np.abs(y) > 0.05)
    starts = onsets[np.insert(np.diff(onsets) > 50, 0, True)]
    assert list(starts) == pytest.approx([0.25 * SR, 0.75 * SR, 1.5 * SR], abs=3)
    peak = lambda t: np.max(np.abs(y[int(t * SR) - 5:int(t * SR) + 20]))  # noqa: E731
    assert peak(0.75) < 0.6 * peak(0.25)  # velocity 64 is quieter than 127 (+-1.5 dB spread)
    assert np.max(np.abs(y)) == pytest.approx(1.0)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_singing_follows_the_melody(tmp_path):
    from rt_tagger.training.corpus import sing

    pw = sing._pw()
    notes = [(0.0, 0.8, 57, 100), (0.9, 0.8, 64, 100)]  # A3 220 Hz, then E4 ~330 Hz
    y = sing.sing_melody(notes, ["la", "ma"], "en-us+m3", 1.8, seed=0)
    x = np.ascontiguousarray(y)
    f0, t = pw.dio(x, SR, frame_period=5.0)
    for (start, dur, pitch, _), lo, hi in zip(notes, (0.25, 1.15), (0.65, 1.55)):
        sel = f0[(t > lo) & (t < hi) & (f0 > 0)]
        assert sel.size > 20
        want = 440 * 2 ** ((pitch - 69) / 12)
        assert abs(np.median(sel) / want - 1) < 0.04  # within ~2/3 semitone, vibrato included


# ---------------------------------------------------------------- augmentations
def _sine(f, seconds=2.0):
    return np.sin(2 * np.pi * f * np.arange(int(seconds * SR)) / SR)


def _peak_hz(y):
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return np.argmax(spec) * SR / y.size


@pytest.mark.parametrize("semitones", [-5, 3, 7])
def test_pitch_shift_moves_a_sine_by_the_ratio_and_keeps_length(semitones):
    y = _sine(440)
    z = augment.pitch_shift(y, SR, semitones)
    assert z.size == y.size
    assert abs(_peak_hz(z) / (440 * 2 ** (semitones / 12)) - 1) < 0.005


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_time_stretch_changes_length_not_pitch(rate):
    y = _sine(330)
    z = augment.time_stretch(y, rate)
    assert z.size == round(y.size / rate)
    assert abs(_peak_hz(z) / 330 - 1) < 0.005


def test_eq_has_its_gain_at_its_band_and_none_far_away():
    db = lambda a, b: 20 * np.log10(np.std(a[SR:]) / np.std(b[SR:]))  # noqa: E731
    y = _sine(1000)
    assert abs(db(augment.eq(y, SR, 1000, 6.0, 1.0), y) - 6.0) < 0.1
    assert abs(db(augment.eq(y, SR, 1000, -9.0, 2.0), y) + 9.0) < 0.1
    far = _sine(100)
    assert abs(db(augment.eq(far, SR, 4000, 9.0, 1.0), far)) < 0.3


@pytest.mark.parametrize("rt60", [0.4, 1.0])
def test_reverb_tail_decays_60_db_in_rt60(rt60):
    imp = np.zeros(SR // 2)
    imp[0] = 1.0
    r = augment.reverb(imp, SR, rt60=rt60, wet=1.0, rng=np.random.default_rng(1))
    assert r.size == imp.size + int(rt60 * SR) - 1
    energy = lambda a, b: np.mean(r[int(a * SR):int(b * SR)] ** 2)  # noqa: E731
    a, b = 0.05 * rt60, 0.55 * rt60  # half an rt60 apart: 30 dB
    drop = 10 * np.log10(energy(a, a + 0.05 * rt60) / energy(b, b + 0.05 * rt60))
    assert 26 < drop < 34


def test_apply_wave_uses_timbre_options_only_when_asked():
    base = dict(aug_gain_db=0.0, aug_noise_snr=0.0, aug_mix=0.0)
    plain = SimpleNamespace(**base)
    assert not augment.needs_waveform(plain)
    cfg = SimpleNamespace(**base, aug_eq_db=6.0, aug_reverb=1.0, aug_pitch=2.0, aug_stretch=0.1)
    assert augment.needs_waveform(cfg)
    p = augment.draw(cfg, np.random.default_rng(0), 2)
    np.testing.assert_equal(p, augment.draw(plain, np.random.default_rng(0), 2))  # same plan
    y = (0.3 * _sine(440, 3.0)).astype(np.float32)
    z = augment.apply_wave(cfg, y, p, 0, None)
    assert z.dtype == np.float32 and z.size == y.size
    assert abs(np.std(z) / np.std(y) - 1) < 0.01  # level kept
    assert np.max(np.abs(z - y)) > 0.05  # and the sound changed
    np.testing.assert_array_equal(z, augment.apply_wave(cfg, y, p, 0, None))  # deterministic
    np.testing.assert_array_equal(augment.apply_wave(plain, y, p, 0, None), y)
