"""The whole training chain on a synthetic MagnaTagATune (real CSV layout, real MP3 files):
prepare -> train (paper schedule: Adam -> reload best -> SGD, two drops) -> evaluate -> export
-> the runtime loads and tags; plus the reload, Ctrl-C/resume and DDP-parity guarantees.

Task: four tags tied to synthetic sounds (piano tones, noise-burst drums, fast techno pulses,
a vibrato flute); a tiny Spec_Att (width 64, 1 layer, 64 frames) learns it in a few epochs.
"""
from __future__ import annotations

import csv
import json
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rt_tagger.training as T


def mod(name: str):
    return importlib.import_module(f"{T.__name__}.{name}")


SMALL = {"n_mels": 32, "width": 64, "layers": 1, "heads": 4, "input_length": 64,
         "dropout": 0.0}
EPOCHS = 6  # switch to SGD at 3, drops at 4 and 5


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("mtat")
    mod("data.synthetic").make_mtat(root, n_train=64, n_valid=24, n_test=24, n_untagged=4,
                                    n_broken=1)
    index = mod("data.mtat").load_mtat(root, "refined")
    out = tmp_path_factory.mktemp("prepared")
    from rt_tagger.features import SPEC_ATT_DB

    feats = [SPEC_ATT_DB.replace(n_mels=32), "musicnn.mtat", "raw"]
    mod("data.prepare").prepare(index, out, feats, workers=2, progress=False)
    return out


def config(prepared, out, **kw):
    base = dict(model="spec_att", model_args=SMALL, data=str(prepared), out=str(out),
                epochs=EPOCHS, batch_size=8, switch_epoch=3, drop_epochs=[4, 5], adam_lr=1e-3,
                sgd_lr=1e-2, val_chunks=4, threads=2, quiet=True)
    base.update(kw)
    return mod("config").TrainConfig(**base)


def read_log(run: Path) -> list[dict]:
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict, atol: float = 0.0) -> bool:
    return all(torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0) for k in a)


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory):
    """Uninterrupted reference run; records the weights at every reload and best.pt then,
    and the weights at the start of every epoch."""
    out = tmp_path_factory.mktemp("run")
    reloads, starts = [], {}

    def callback(event, epoch, model):
        if event == "epoch_start":
            starts[epoch] = state(model)
        if event == "reload":
            best = torch.load(out / "best.pt", weights_only=True)
            reloads.append((epoch, state(model), best["model"], best["epoch"]))
    T.train(config(prepared, out), callback=callback)
    return out, reloads, starts


@pytest.mark.slow
def test_prepared_lists_the_broken_file(prepared):
    data = mod("data.dataset").Prepared(prepared)
    assert [f["status"] for f in data.meta["failed"]] == ["unreadable"]
    assert (prepared / "failed.tsv").read_text().count("unreadable") == 1


@pytest.mark.slow
def test_training_learns_and_switches(run):
    out, *_ = run
    log = read_log(out)
    assert [r["optimizer"] for r in log] == ["adam"] * 3 + ["sgd"] * 3
    assert [float(r["lr"]) for r in log][3:] == pytest.approx([1e-2, 1e-3, 1e-4])
    loss = [float(r["train_loss"]) for r in log]
    auc = [float(r["val_roc_auc"]) for r in log]
    print("train loss", loss, "valid ROC-AUC", auc)
    assert min(loss) < 0.6 * loss[0]
    assert max(auc) > 0.85  # chance is 0.5
    assert all(0 <= float(r["val_pr_auc"]) <= 1 for r in log)


def test_every_reload_loads_the_best_weights(run):
    _, reloads, _ = run
    assert [e for e, *_ in reloads] == [3, 4, 5]
    for epoch, weights, best, best_epoch in reloads:
        assert best_epoch < epoch
        assert same(weights, best), f"epoch {epoch}: weights are not best.pt's"


@pytest.mark.slow
def test_reload_restores_an_earlier_epoch_not_the_last(prepared, tmp_path):
    """Spoil the last Adam epoch's weights before validation: the switch must bring back an
    earlier epoch, not continue from the spoiled weights (the authors' code would continue)."""
    seen = {}

    def callback(event, epoch, model):
        if event == "before_validation" and epoch == 2:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 3.0)
            seen["spoiled"] = state(model)
        if event == "reload" and epoch == 3:
            seen["reloaded"] = state(model)
            seen["best"] = torch.load(out / "best.pt", weights_only=True)
    out = tmp_path / "run"
    T.train(config(prepared, out, epochs=4, export=False), callback=callback)
    best_epoch = int(read_log(out)[2]["best_epoch"])
    assert best_epoch < 2
    best = seen["best"]
    assert best["epoch"] == best_epoch
    assert same(seen["reloaded"], best["model"])
    assert not same(seen["reloaded"], seen["spoiled"], atol=1e-3)


def test_ctrl_c_then_resume_equals_uninterrupted(prepared, run, tmp_path):
    """Ctrl-C at the start of epoch 3 (the Adam -> SGD switch), resume, finish epoch 3: the
    weights equal the uninterrupted run's after epoch 3."""
    ref, _, starts = run
    out = tmp_path / "run"

    def interrupt(event, epoch, model):
        if event == "epoch_start" and epoch == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        T.train(config(prepared, out, export=False), callback=interrupt)
    assert len(read_log(out)) == 3
    with pytest.raises(Exception, match="--resume"):
        T.train(config(prepared, out, export=False))
    T.train(config(prepared, out, epochs=4, export=False, resume=True))
    b = torch.load(out / "last.pt", weights_only=True)
    assert same(starts[4], b["model"], atol=1e-6)
    assert [r["val_roc_auc"] for r in read_log(ref)][:4] == \
        [r["val_roc_auc"] for r in read_log(out)]


class _RunsCode:
    """Unpickling this writes ``marker``: a stand-in for a crafted ``best.pt`` / ``last.pt``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def crafted_run_file(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 0, "payload": _RunsCode(marker)}, path)
    return path


def test_crafted_run_file_payload_is_live(tmp_path):
    """Control: the crafted file really runs code under the old ``weights_only=False`` load."""
    marker = tmp_path / "ran"
    torch.load(crafted_run_file(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


def test_resume_refuses_a_crafted_last_pt(prepared, tmp_path):
    from rt_tagger.errors import ConfigError

    out, marker = tmp_path / "run", tmp_path / "ran"
    out.mkdir()
    crafted_run_file(out / "last.pt", marker)
    with pytest.raises(ConfigError, match=r"last\.pt: refused to load: it holds code .*\(exec\)"):
        T.train(config(prepared, out, export=False, resume=True))
    assert not marker.exists()


def test_export_refuses_a_crafted_best_pt(run, tmp_path):
    ref, *_ = run
    bad, marker = tmp_path / "bad_run", tmp_path / "ran"
    bad.mkdir()
    for name in ("config.json", "log.csv"):
        (bad / name).write_bytes((ref / name).read_bytes())
    crafted_run_file(bad / "best.pt", marker)
    r = subprocess.run([sys.executable, "-m", T.__name__, "export", "--run", str(bad)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "refused to load" in r.stderr, r.stderr
    assert r.stdout == "" and not marker.exists() and not (bad / "model.safetensors").exists()


def test_export_loads_in_the_runtime_and_tags(run, prepared):
    from rt_tagger.checkpoint import load_checkpoint
    from rt_tagger.engines import create_engine
    from rt_tagger.features import LogMel

    out, *_ = run
    ckpt = load_checkpoint(out / "model.safetensors")
    assert ckpt.arch == "spec_att" and ckpt.input_length == 64 and len(ckpt.tags) == 50
    from rt_tagger.features import SPEC_ATT_DB

    assert ckpt.logmel_config == SPEC_ATT_DB.replace(n_mels=32)
    prov = ckpt.provenance
    assert prov["dataset"] == "mtat" and prov["split"] == "refined" and prov["epochs"] == EPOCHS
    assert 0.5 < prov["metrics"]["test"]["roc_auc"] <= 1
    assert len(ckpt.thresholds) == 50
    json.dumps(ckpt.provenance, allow_nan=False)  # strict JSON: unscorable tags are null
    assert sum(r["roc_auc"] is None for r in prov["per_tag_test"]) == 46
    # the runtime: a torch engine on native log-mel chunks of a fresh piano-only and drums-only clip
    synth = mod("data.synthetic")
    rng = np.random.default_rng(5)
    eng = create_engine(out / "model.safetensors", backend="torch", device="cpu")
    lm = LogMel(ckpt.logmel_config)
    piano, drums = eng.tags.index("piano"), eng.tags.index("drums")
    scores = {}
    for name, fn in (("piano", synth._piano), ("drums", synth._drums)):
        y = (fn(rng, 3 * 16000, 16000) + 0.01 * rng.standard_normal(3 * 16000)).astype(np.float32)
        x = lm(y)[None, :64]
        p = eng.run(x).probs[0]
        scores[name] = (p[piano], p[drums])
    assert scores["piano"][0] > scores["drums"][0]  # piano tag higher on the piano clip
    assert scores["drums"][1] > scores["piano"][1]


def test_evaluate_the_export_and_musicnn(run, prepared):
    ev = mod("evaluate")
    out, *_ = run
    mine = ev.evaluate(str(out / "model.safetensors"), prepared, split="test", n_chunks=4)
    assert mine["n_tags_scored"] == 4 and mine["roc_auc"] > 0.75
    # independent check of the song-level averaging for one clip
    from rt_tagger.factory import create_model

    model = create_model(out / "model.safetensors")
    data = mod("data.dataset").Prepared(prepared)
    store = data.features(model.checkpoint.logmel_config)
    i = data.indices("test", [store])[0]
    clip = store.clip(i)
    starts = np.linspace(0, clip.shape[0] - 64, 4).round().astype(int)
    with torch.no_grad():
        p = torch.sigmoid(model(torch.from_numpy(np.stack([clip[s:s + 64] for s in starts]))))
    tags = model.checkpoint.tags
    np.testing.assert_allclose(mine["_probs"][0], p.mean(0).numpy()[[tags.index(t) for t in
                                                                      mine_tags(mine)]], atol=1e-5)
    # the converted musicnn knows these instruments too (tags matched by name)
    mn = ev.evaluate("musicnn.mtat", prepared, split="test", n_chunks=2)
    assert mn["n_tags_scored"] == 4 and mn["roc_auc"] > 0.6
    assert "macro" in ev.format_table(mn)


def mine_tags(result):
    return [r["tag"] for r in result["per_tag"]]


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(prepared, tmp_path):
    """2 gloo ranks x 4 clips == 1 process with 2 accumulated micro-batches of 4 (same global
    batch of 8, same per-micro-batch BatchNorm statistics)."""
    args = ["--model", "spec_att", "--model-args", json.dumps(SMALL), "--data", str(prepared), "--epochs", "2",
            "--batch-size", "8", "--optimizer", "adam", "--adam-lr", "1e-3", "--val-chunks", "2",
            "--threads", "1", "--no-export", "--quiet"]
    pkg = T.__name__
    env = dict(os.environ)
    if pkg == "training":
        env["PYTHONPATH"] = os.pathsep.join([str(Path(T.__file__).parents[1]),
                                             env.get("PYTHONPATH", "")])
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", pkg, "train", *args, "--out",
                          str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # cwd: the source tree must not shadow
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    T.train(config(prepared, tmp_path / "one", epochs=2, batch_size=8, optimizer="adam",
                   val_chunks=2, accum_steps=2, export=False, threads=1,
                   model_args=SMALL))
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    params = [k for k in a if "running" not in k and "num_batches" not in k]
    err = max(float((a[k] - b[k]).abs().max()) for k in params)
    scale = max(float(b[k].abs().max()) for k in params)
    print(f"DDP vs single process: max weight difference {err:.3g} (max |w| {scale:.3g})")
    assert err < 1e-4
    la, lb = read_log(tmp_path / "ddp"), read_log(tmp_path / "one")
    for ra, rb in zip(la, lb):
        assert float(ra["train_loss"]) == pytest.approx(float(rb["train_loss"]), abs=1e-4)


@pytest.mark.slow
def test_distillation_targets_and_run(prepared, tmp_path):
    """Teacher targets are the mean teacher probability over the patches covering the student
    chunk; a short distillation run trains a student with the teacher's tags."""
    from rt_tagger.factory import create_model
    from rt_tagger.features import SPEC_ATT_DB

    data = mod("data.dataset").Prepared(prepared)
    teacher = mod("distill").Teacher("musicnn.mtat", data, SPEC_ATT_DB.replace(n_mels=32), 200,
                                     torch.device("cpu"))
    clip = 0
    got = teacher.targets(np.array([clip]), np.array([20]))[0]
    feats = teacher.source.store.clip(clip)  # musicnn's own log-mel, 187-frame patches
    assert feats.shape[0] >= 220
    ref = create_model("musicnn.mtat")
    with torch.no_grad():
        x = torch.from_numpy(np.stack([feats[20:207], feats[33:220]]))
        want = torch.sigmoid(ref(x)).mean(0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)

    out = tmp_path / "distill"
    T.train(config(prepared, out, teacher="musicnn.mtat", epochs=3, optimizer="adam",
                   steps_per_epoch=2, val_chunks=1))
    log = read_log(out)
    loss = [float(r["train_loss"]) for r in log]
    print("distillation train loss", loss)
    assert len(log) == 3 and loss[-1] < loss[0]
    ckpt = create_model(out / "model.safetensors").checkpoint
    assert ckpt.tags == teacher.tags and ckpt.provenance["teacher"] == "musicnn.mtat"
    # shipping: a model card and extra provenance (how to rebuild the data) go into the file
    (tmp_path / "card.md").write_text("# student\nheld-out figures ...\n")
    (tmp_path / "prov.json").write_text('{"corpus": {"rebuild": "build_corpus.sh DEST"}}')
    from rt_tagger.checkpoint import load_checkpoint

    cli = mod("__main__").main
    assert cli(["export", "--run", str(out), "--out", str(tmp_path / "s.safetensors"),
                "--card", str(tmp_path / "card.md"),
                "--provenance", str(tmp_path / "prov.json")]) == 0
    shipped = load_checkpoint(tmp_path / "s.safetensors")
    assert shipped.model_card.startswith("# student")
    assert shipped.provenance["corpus"] == {"rebuild": "build_corpus.sh DEST"}
    assert shipped.provenance["teacher"] == "musicnn.mtat"
    assert cli(["export", "--run", str(out), "--card", "/no/card.md"]) == 2
    # the training curve, as a table and a plot
    table = mod("curves").curves_table([out])
    assert table.count("| adam |") == 3 and f"{loss[0]:.4f}" in table
    png = mod("curves").plot_curves([out], tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_teacher_cache_equals_teacher_on_the_grid(prepared, tmp_path):
    """Cached grid targets (teacher run once per grid point on onnxruntime) equal the per-batch
    teacher targets (PyTorch) for every grid chunk; off-grid chunks fall back to the teacher."""
    from rt_tagger.features import SPEC_ATT_DB

    cache_mod = mod("teacher_cache")
    assert cache_mod.grid_stride(256, 187) == 69  # the shipped student's alignment
    assert cache_mod.grid_stride(128, 187) is None and cache_mod.grid_stride(300, 187) == 113
    data = mod("data.dataset").Prepared(prepared)
    teacher = mod("distill").Teacher("musicnn.mtat", data, SPEC_ATT_DB.replace(n_mels=32), 200,
                                     torch.device("cpu"))
    cache = cache_mod.TeacherCache(teacher, tmp_path)  # 200-frame chunks: patches 13 apart
    assert cache.usable and cache.stride == 13
    cache.load_or_build(len(data.keys), threads=2, progress=False)
    clips = np.repeat(np.arange(3), 4)
    starts = np.tile(np.arange(4) * 13, 3)
    want = teacher.targets(clips, starts)
    np.testing.assert_allclose(cache.targets(clips, starts), want, atol=2e-5)
    off = cache.targets(np.array([1]), np.array([5]))
    np.testing.assert_allclose(off, teacher.targets(np.array([1]), np.array([5])), atol=1e-6)
    # a second cache object reuses the files; a different teacher grid would rebuild
    again = cache_mod.TeacherCache(teacher, tmp_path)
    again.load_or_build(len(data.keys), progress=False)
    assert np.array_equal(np.asarray(again.probs), np.asarray(cache.probs))


@pytest.mark.slow
def test_distillation_on_the_grid_with_mixing(prepared, tmp_path):
    """With the cache, chunks start on the teacher grid, and a mixed chunk's target is the
    elementwise max of both chunks' teacher targets."""
    cfg = config(prepared, tmp_path / "run", teacher="musicnn.mtat", epochs=2,
                 optimizer="adam", steps_per_epoch=2, val_chunks=1, aug_mix=1.0,
                 model_args={**SMALL, "input_length": 200})
    data = mod("data.dataset").Prepared(prepared)
    from rt_tagger.features import SPEC_ATT_DB

    teacher = mod("distill").Teacher("musicnn.mtat", data, SPEC_ATT_DB.replace(n_mels=32), 200,
                                     torch.device("cpu"))
    source = mod("chunks").ChunkSource(data, SPEC_ATT_DB.replace(n_mels=32), 200, cfg)
    source.target_fn = mod("train")._teacher_targets(cfg, mod("ddp").Dist(), teacher, data,
                                                     source)
    assert source.grid == 13
    plan = source.plan(source.indices("train"), 0, 0, 8)
    assert all((b["starts"] % 13 == 0).all() for b in plan)
    item = plan[0]
    _, y = source.batch(item)
    own = teacher.targets(item["clips"], item["starts"])
    assert (y >= own - 2e-5).all() and (y > own + 1e-3).any()  # mixed in: max of both
    T.train(cfg)
    assert len(read_log(tmp_path / "run")) == 2
