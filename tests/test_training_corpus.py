"""The real-audio corpus loader (whole sources held out) and the student/teacher comparison.

The corpus itself (~25 h built from Debian packages) is training data and not available in
CI; these tests write a small corpus in its manifest format with real wav files.
"""
from __future__ import annotations

import csv
import importlib

import numpy as np
import pytest
import soundfile as sf

import rt_tagger.training as T


def mod(name: str):
    return importlib.import_module(f"{T.__name__}.{name}")


FIELDS = ["path", "source", "package", "license", "duration_s", "orig_duration_s", "kind",
          "tags", "weak_tags", "style", "meta"]


def _score_in(split: str) -> str:
    """A score name the corpus split rule sends to ``split``."""
    for i in range(1000):
        name = f"bach/bwv{i}.mxl"
        if mod("data.corpus").split_of({"source": "music21+fluidsynth",
                                          "meta": name}) == split:
            return name
    raise AssertionError(split)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    sr, rng = 16000, np.random.default_rng(0)
    rows = []

    def add(path, source, kind="music", tags="", meta="", seconds=7.0, f0=220.0):
        t = np.arange(int(seconds * sr)) / sr
        y = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
        y += 0.02 * rng.standard_normal(t.size)
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / path, y.astype(np.float32), sr)
        rows.append({"path": path, "source": source, "kind": kind, "tags": tags, "meta": meta,
                     "license": "test", "duration_s": f"{seconds:.2f}"})

    add("music/ufoai/a.wav", "ufoai")
    add("music/ufoai/b.wav", "ufoai", f0=330)
    add("music/hedgewars/a.wav", "hedgewars")
    add("music/supertuxkart/a.wav", "supertuxkart", f0=440, seconds=10.0)
    test_score, train_score = _score_in("test"), _score_in("train")
    for name, inst, f0 in (("piano", "piano;classical", 262), ("flute", "flute;classical", 523)):
        add(f"midi_render/t_{name}.wav", "music21+fluidsynth", "midi_render", inst, test_score,
            f0=f0)
        add(f"midi_render/r_{name}.wav", "music21+fluidsynth", "midi_render", inst, train_score,
            f0=f0)
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS, restval="")
        w.writeheader()
        w.writerows(rows)
    return root


def test_corpus_holds_out_whole_sources_and_scores(corpus, tmp_path):
    index = mod("data").load_dataset("corpus", corpus)
    split = {c.key: c.split for c in index.clips}
    assert split["music/ufoai/a.wav"] == split["music/ufoai/b.wav"] == "train"
    assert split["music/hedgewars/a.wav"] == "valid"
    assert split["music/supertuxkart/a.wav"] == "test"
    # both instrumentations of a score share its split
    assert split["midi_render/t_piano.wav"] == split["midi_render/t_flute.wav"] == "test"
    assert split["midi_render/r_piano.wav"] == split["midi_render/r_flute.wav"] == "train"
    assert index.tags == []  # unlabelled: distillation data
    gt = mod("data.corpus").ground_truth(corpus)
    assert gt["midi_render/t_flute.wav"] == {"flute", "classical"}

    err = mod("data.common").DatasetError
    with pytest.raises(err, match="no manifest.csv"):
        mod("data").load_dataset("corpus", tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.csv").write_text("path,source\nmusic/x.wav,ufoai\n")
    with pytest.raises(err, match="music/x.wav is in the manifest but missing"):
        mod("data").load_dataset("corpus", broken)
    with pytest.raises(err, match="only 'sources'"):
        mod("data").load_dataset("corpus", corpus, "random")


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    index = mod("data").load_dataset("corpus", corpus)
    mod("data.prepare").prepare(index, out, ["spec_att", "musicnn.mtat"], workers=1,
                                progress=False)
    return out


def test_compare_a_teacher_with_itself_agrees_exactly(prepared, corpus, torch_two_threads):
    """musicnn as its own 'student': same chunks and patches, so the song vectors are equal
    and the top-5 sets coincide; the instrument table covers the test renders."""
    r = mod("compare").compare("musicnn.mtat", ["musicnn.mtat"], prepared, corpus=corpus,
                               latency_runs=3)
    s = r["students"]["musicnn.mtat"]
    assert r["clips"] == 3  # supertuxkart + the two renders of the test score
    assert s["song"]["mad"] < 1e-6 and s["chunk"]["mad"] < 1e-6
    assert s["song"]["top5_overlap"] == 1.0 and s["song"]["top1_equal"] == 1.0
    assert s["instruments"]["renders"] == 2
    assert s["instruments"]["per_tag"]["piano"]["positives"] == 1
    assert s["instruments"] == {**r["teacher_instruments"]}


def test_compare_reports_a_student(prepared, corpus, tmp_path, torch_two_threads):
    """A (random) spec_att student: chunk counts follow the non-overlapping 256-frame grid,
    the report has every section, and differences from the teacher are measured."""
    import torch

    from rt_tagger.checkpoint import save_checkpoint
    from rt_tagger.factory import create_model
    from rt_tagger.features import SPEC_ATT_DB
    from rt_tagger.models import get_arch

    tags = list(create_model("musicnn.mtat").checkpoint.tags)
    torch.manual_seed(0)
    args = {"n_tags": 50, "width": 64, "layers": 1, "heads": 4}
    student = get_arch("spec_att").factory(**args).eval()
    path = tmp_path / "student.safetensors"
    save_checkpoint(path, student, arch="spec_att", arch_args=args, tags=tags,
                    sample_rate=16000, input_kind="logmel", input_length=256, logmel=SPEC_ATT_DB)
    r = mod("compare").compare("musicnn.mtat", [str(path)], prepared, corpus=corpus,
                               latency_runs=3)
    s = r["students"][str(path)]
    frames = [int(10 * 16000 / 256) + 1, int(7 * 16000 / 256) + 1, int(7 * 16000 / 256) + 1]
    assert s["chunks"] == sum((n - 256) // 256 + 1 for n in frames)
    assert s["song"]["mad"] > 1e-3  # a random student is not the teacher
    assert 0 <= s["song"]["top5_overlap"] <= 1 and s["latency_ms"]["student"]["median"] > 0
    text = mod("compare").format_report(r)
    assert "student.safetensors" in text and "| piano | 1 |" in text and "| **mean** |" in text
