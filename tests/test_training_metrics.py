"""Metrics against scikit-learn, F1 thresholds against brute force, the optimiser schedule,
teacher patch alignment, the config command line and the CLI's error exit."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import io

import numpy as np
import pytest

import rt_tagger.training as T


def mod(name: str):
    return importlib.import_module(f"{T.__name__}.{name}")


def test_roc_and_pr_auc_match_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    m = mod("metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 200))
        y = rng.random(n) < rng.uniform(0.05, 0.6)
        if y.all() or not y.any():
            continue
        s = np.round(rng.random(n) + 0.8 * y, 1 if trial % 2 else 6)  # ties on odd trials
        assert m.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
        assert m.average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s),
                                                          abs=1e-12)
    assert np.isnan(m.roc_auc(np.zeros(4), np.arange(4.0)))
    assert np.isnan(m.average_precision(np.ones(4), np.arange(4.0)))


def test_tag_metrics_skip_single_class_tags():
    m = mod("metrics")
    y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0]])
    p = np.array([[0.9, 0.1, 0.2], [0.2, 0.3, 0.8], [0.7, 0.2, 0.4], [0.1, 0.9, 0.5]])
    r = m.tag_metrics(y, p, ["a", "b", "c"])
    assert r["n_tags_scored"] == 2 and r["n_tags_skipped"] == 1
    assert r["roc_auc"] == pytest.approx((1.0 + 0.75) / 2)  # c: 0.8, 0.4 vs 0.2, 0.5 -> 3/4
    assert [t["positives"] for t in r["per_tag"]] == [2, 0, 2]


def test_f1_thresholds_are_optimal():
    m = mod("metrics")
    rng = np.random.default_rng(1)
    y = rng.random((60, 5)) < 0.3
    p = np.clip(0.3 * y + rng.random((60, 5)) * 0.7, 0, 1)
    y[:, 4] = False
    thr = m.f1_thresholds(y, p)
    assert thr[4] == 0.5  # no positive: the default

    def f1(yj, pred):
        tp = np.sum(yj & pred)
        return 2 * tp / (np.sum(yj) + np.sum(pred)) if tp else 0.0
    for j in range(4):
        best = max(f1(y[:, j], p[:, j] >= t) for t in np.unique(p[:, j]))
        assert f1(y[:, j], p[:, j] >= thr[j]) == pytest.approx(best)


def test_paper_schedule_and_alternatives():
    cfg = mod("config").TrainConfig(data="x")
    phase_at = mod("schedule").phase_at
    got = {e: phase_at(cfg, e) for e in (0, 59, 60, 79, 80, 99, 100, 199)}
    assert [(p.kind, p.reload_best) for p in got.values()] == \
        [("adam", False)] * 2 + [("sgd", True)] * 6
    assert [got[e].lr for e in (0, 60, 80, 100)] == pytest.approx([1e-4, 1e-3, 1e-4, 1e-5])
    assert len({got[e].index for e in (60, 80, 100)}) == 3 and got[59].index == got[0].index
    cfg.optimizer = "adam"
    assert {phase_at(cfg, e).lr for e in range(200)} == {1e-4}
    cfg.optimizer = "sgd"
    assert [phase_at(cfg, e).lr for e in (0, 80, 100)] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert not any(phase_at(cfg, e).reload_best for e in range(200))
    opt = mod("schedule").make_optimizer(cfg, [__import__("torch").zeros(1, requires_grad=True)],
                                         phase_at(cfg, 0))
    g = opt.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"]) == (0.9, True, 1e-4)


def test_teacher_patches_cover_the_student_chunk():
    patch_starts = mod("distill").patch_starts
    # musicnn (187 frames) under a 256-frame student chunk at frame 100: two patches
    assert patch_starts(100, 256, 187, 1000).tolist() == [100, 169]
    for f0, span, p in ((0, 1024, 187), (7, 400, 100), (3, 190, 187)):
        s = patch_starts(f0, span, p, 5000)
        assert s[0] == f0 and s[-1] + p == f0 + span  # exactly the chunk
        assert np.all(np.diff(s) <= p)  # no gap
    # a longer teacher is centred on the chunk, clipped to the clip
    assert patch_starts(100, 64, 187, 1000).tolist() == [39]
    assert patch_starts(0, 64, 187, 1000).tolist() == [0]


def test_chunk_starts_song_level():
    chunk_starts = mod("data.dataset").chunk_starts
    assert chunk_starts(1000, 256, 16).tolist() == np.linspace(0, 744, 16).round().tolist()
    assert chunk_starts(1000, 256, 0).tolist() == [0, 256, 512]
    assert chunk_starts(100, 256, 16).tolist() == [0] * 16


def test_config_command_line_roundtrip():
    C = mod("config").TrainConfig
    p = argparse.ArgumentParser()
    C.add_arguments(p)
    cfg = C.from_args(p.parse_args(["--data", "d", "--drop-epochs", "3", "4", "--model-args",
                                    '{"width": 64}', "--no-amp", "--adam-lr", "0.01"]))
    assert (cfg.drop_epochs, cfg.model_args, cfg.amp, cfg.adam_lr) == ([3, 4], {"width": 64},
                                                                        False, 0.01)
    assert C.from_dict(cfg.to_dict()) == cfg
    from rt_tagger.errors import ConfigError

    with pytest.raises(ConfigError, match="switch_epoch < drop_epochs"):
        C(data="d", switch_epoch=90).validate()
    with pytest.raises(ConfigError, match="optimizer must be one of paper, adam, sgd"):
        C(data="d", optimizer="rmsprop").validate()
    with pytest.raises(ConfigError, match="--data is required"):
        C().validate()
    with pytest.raises(SystemExit):
        p.parse_args(["--model-args", "[1, 2]"])


def test_cli_errors_are_one_line(tmp_path, capsys):
    main = mod("__main__").main
    assert main(["evaluate", "--model", "musicnn.mtat", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a prepared dataset" in err
    assert main(["prepare", "--dataset", "mtat", "--root", str(tmp_path / "x"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_progress_bar_writes_deciles():
    Progress = mod("progress").Progress
    buf = io.StringIO()
    with Progress(20, "prep", stream=buf) as bar:
        for _ in range(20):
            bar.update(note="ok")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("prep [########################] 20/20")


def test_tensorboard_flag_without_the_package_fails_early(tmp_path):
    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed: nothing to refuse")
    from rt_tagger.errors import ConfigError

    cfg = mod("config").TrainConfig(data=str(tmp_path / "nothing"), out=str(tmp_path / "run"),
                                    tensorboard=True)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        T.train(cfg)
    assert not (tmp_path / "run").exists()
