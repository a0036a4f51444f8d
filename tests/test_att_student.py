"""musicnn_att (musicnn's body + an attention back-end) and its training chain: the body cache
holds exactly the teacher's body outputs and logits, distill-body writes a checkpoint the
runtime loads, thresholds reproduce the teacher's 0.5 decisions, and the exported ONNX graph
equals PyTorch with its attention."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import rt_tagger.training as T
from rt_tagger.factory import create_model

SMALL = {"width": 32, "layers": 1, "heads": 2, "dropout": 0.0}


def mod(name: str):
    return importlib.import_module(f"{T.__name__}.{name}")


@pytest.fixture(scope="module")
def teacher():
    return create_model("musicnn.mtat")


@pytest.fixture(scope="module")
def student(teacher):
    torch.manual_seed(0)
    s = create_model("musicnn_att", **SMALL)
    s.load_body(teacher.state_dict())
    return s.eval()


def test_body_is_the_teachers_and_stays_frozen(teacher, student):
    x = torch.randn(3, 187, 96)
    with torch.inference_mode():
        body, logits = teacher.body_and_logits(x)
        assert torch.equal(student.body_features(x), body)
        assert torch.allclose(logits, teacher(x))
        assert torch.equal(student(x), student.head(body))
    student.train()
    try:
        assert not student.input_bn.training and not student.midend.training
        assert student.backend.training
        assert not any(p.requires_grad for p in student.timbral.parameters())
        assert all(p.requires_grad for p in student.backend.parameters())
    finally:
        student.eval()


def test_load_body_refuses_a_wrong_state_dict(student):
    from rt_tagger.errors import ConfigError

    sd = create_model("musicnn.mtat").state_dict()
    sd.pop("midend.2.conv.weight")
    with pytest.raises(ConfigError, match="midend.2.conv.weight"):
        student.load_body(sd)


def test_attention_rows_and_time_map(student):
    x = torch.randn(2, 187, 96)
    with torch.inference_mode():
        logits, attn = student(x, return_attention=True)
    assert attn.shape == (2, 1, 2, 48, 48)  # [CLS] + 47 steps of 4 frames
    assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
    spans = student.time_steps_to_frames().spans()
    assert spans.shape == (47, 2) and spans[0].tolist() == [0, 4] and spans[-1].tolist() == [184, 187]


def test_pooling_is_max_and_mean_over_four_frames(student):
    feats = torch.randn(1, 187, 753)
    seen = {}

    def keep(module, inputs, output):
        seen["x"] = inputs[0]

    hook = student.project.register_forward_hook(keep)
    try:
        with torch.inference_mode():
            student.head(feats)
    finally:
        hook.remove()
    x = seen["x"][0]  # (47, 1506)
    assert torch.allclose(x[0, :753], feats[0, :4].amax(0)) and torch.allclose(x[0, 753:], feats[0, :4].mean(0))
    assert torch.allclose(x[46, :753], feats[0, 184:].amax(0)) and torch.allclose(x[46, 753:], feats[0, 184:].mean(0))


def test_checkpoint_round_trip_and_onnx_equals_torch_with_attention(student, tmp_path):
    from rt_tagger.checkpoint import save_checkpoint
    from rt_tagger.engines import create_engine
    from rt_tagger.features.config import MUSICNN
    from rt_tagger.models.musicnn import MTT_TAGS

    path = save_checkpoint(tmp_path / "s.safetensors", student, arch="musicnn_att", arch_args=SMALL,
                           tags=list(MTT_TAGS), sample_rate=16000, input_kind="logmel",
                           input_length=187, logmel=MUSICNN)
    student = create_model(path)
    x = np.random.default_rng(0).standard_normal((2, 187, 96)).astype(np.float32)
    eng = create_engine(student, backend="onnxruntime", threads=1, max_batch=4, attention=True)
    out = eng.run(x)
    with torch.inference_mode():
        logits, attn = student(torch.from_numpy(x), return_attention=True)
    probs = torch.sigmoid(logits).numpy()
    np.testing.assert_allclose(out.probs, probs, atol=1e-4)
    assert out.attention is not None
    np.testing.assert_allclose(np.asarray(out.attention), attn.numpy(), atol=1e-4)


def test_thresholds_reproduce_the_teachers_decisions():
    rng = np.random.default_rng(0)
    teacher_p = rng.random((400, 4))
    teacher_p[:, 3] *= 0.4  # a tag the teacher never calls
    student_p = teacher_p ** 2  # same order, other scale
    thr = mod("body_distill").calibrate_thresholds(student_p, teacher_p)
    for k in range(3):
        assert np.array_equal(student_p[:, k] >= thr[k], teacher_p[:, k] >= 0.5)
    assert thr[3] > student_p[:, 3].max()  # never switches on where the teacher never did


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("mtat")
    mod("data.synthetic").make_mtat(root, n_train=8, n_valid=4, n_test=2, n_untagged=0,
                                    n_broken=0, seconds=10.0)
    index = mod("data.mtat").load_mtat(root, "refined")
    out = tmp_path_factory.mktemp("prepared")
    mod("data.prepare").prepare(index, out, ["musicnn.mtat", "raw"], workers=1, progress=False)
    return out


@pytest.mark.slow
def test_body_cache_and_distill_body(prepared, teacher, tmp_path):
    bc, bd = mod("body_cache"), mod("body_distill")
    cache = tmp_path / "cache"
    counts = bc.build_body_cache(prepared, cache, workers=1, aug_fraction=0.5, n_probes=8,
                                 quiet=True)
    assert counts["train"] > 0 and counts["valid"] > 0 and counts["probes"] == 8
    assert counts["aug"] > 0
    # clean rows are the teacher on the prepared chunk, cut as the runtime cuts a file
    feats, logits, index = bc.load_part(cache, "train")
    prep = mod("data.dataset").Prepared(prepared)
    store = prep.features(teacher.checkpoint.logmel_config)
    for r in (0, len(logits) - 1):
        clip, start = index["rows"][r]
        x = torch.from_numpy(store.chunk(clip, start, 187)[None])
        with torch.inference_mode():
            body, lg = teacher.body_and_logits(x)
        np.testing.assert_allclose(logits[r], lg[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(feats[r].astype(np.float32), body[0].numpy(), rtol=2e-3, atol=2e-3)
    a_feats, a_logits, _ = bc.load_part(cache, "aug")
    assert np.isfinite(a_logits).all() and np.abs(a_feats[0]).max() > 0
    # resuming a finished cache computes nothing and changes nothing
    before = logits.copy()
    bc.build_body_cache(prepared, cache, workers=1, aug_fraction=0.5, n_probes=8, quiet=True)
    assert np.array_equal(bc.load_part(cache, "train")[1], before)

    cfg = bd.BodyDistillConfig(cache=str(cache), out=str(tmp_path / "run"), width=32, layers=1,
                               heads=2, steps=60, batch_size=16, lr=3e-3, warmup=5,
                               eval_every=30, threads=1)
    path = bd.distill_body(cfg, quiet=True)
    model = create_model(path)
    assert model.checkpoint.arch == "musicnn_att" and len(model.checkpoint.thresholds) == 50
    sd, tsd = model.state_dict(), teacher.state_dict()
    assert all(torch.equal(sd[k], tsd[k]) for k in tsd if k.startswith(("timbral.", "midend.")))
    rows = [line.split(",") for line in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    first, last = float(rows[0][2]), float(rows[-1][2])
    assert last < first  # the back-end learns the teacher (train loss falls)


def test_report_song_agreement_and_shared_body(teacher, student):
    rep = mod("report")
    t = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]])
    s = np.array([[0.8, 0.9, 0.7, 0.6, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]])
    a = rep.song_agreement(t, s, ["x", "y"])
    assert a["per_source"]["x"]["top5_overlap"] == pytest.approx(0.8)  # 4 of 5 shared
    assert a["per_source"]["x"]["same_top1"] == 0.0 and a["per_source"]["y"]["same_top1"] == 1.0
    assert a["top5_overlap"] == pytest.approx(0.9) and a["mad"] == pytest.approx(np.abs(t - s).mean())
    assert rep._shares_body(student, teacher)
    other = create_model("musicnn_att", **SMALL)  # an untrained body (random init)
    assert not rep._shares_body(other, teacher)


def test_completed_rows_of_a_part_stopped_early(tmp_path):
    import json

    bc = mod("body_cache")
    part = tmp_path / "aug"
    part.mkdir()
    (part / "index.json").write_text(json.dumps({"rows": [[0, i] for i in range(10)]}))
    assert bc.completed_rows(tmp_path, "aug") == (0, 10)
    (part / "done.0").write_text("3")  # worker 0 did rows 0, 2, 4
    (part / "done.1").write_text("2")  # worker 1 did rows 1, 3
    assert bc.completed_rows(tmp_path, "aug") == (4, 10)
    assert not bc.part_complete(tmp_path, "aug")
    (part / "done.0").write_text("5")
    (part / "done.1").write_text("5")
    assert bc.completed_rows(tmp_path, "aug") == (10, 10) and bc.part_complete(tmp_path, "aug")


def test_lift_targets_moves_only_a_missed_instrument_into_the_top_3():
    bd = mod("body_distill")
    p = np.array([[0.9, 0.5, 0.4, 0.2, 0.1],    # playing tag 3 is 4th: lifted
                  [0.9, 0.5, 0.4, 0.2, 0.1],    # playing tag 2 is 3rd already: kept
                  [0.9, 0.5, 0.4, 0.2, 0.1],    # nothing known: kept
                  [0.9, 0.5, 0.4, 0.2, 0.1]])   # tags 3 and 4 play: the likelier one is lifted
    present = np.zeros(p.shape, bool)
    present[0, 3] = present[1, 2] = present[3, 3] = present[3, 4] = True
    out, fix = bd.lift_targets(p, present, 1.5)
    assert fix.tolist() == [True, False, False, True]
    assert out[0, 3] == pytest.approx(0.6) and out[3, 3] == pytest.approx(0.6)
    assert out[3, 4] == p[3, 4]  # only one tag per row moves
    changed = out != p
    assert changed.sum() == 2  # every other target is the teacher's
    for r in (0, 3):
        assert 3 in np.argsort(-out[r])[:3]
    assert bd.instrument_top3(out, present) == 1.0 and bd.instrument_top3(p, present) == pytest.approx(1 / 3)
    assert bd.instrument_top3(p, None) is None


def test_known_instruments_come_from_the_corpus_manifest(tmp_path):
    import csv
    import json

    bd = mod("body_distill")
    corpus, prepared, cache = tmp_path / "corpus", tmp_path / "prepared", tmp_path / "cache"
    for d in (corpus, prepared, cache / "train"):
        d.mkdir(parents=True)
    rows = [{"path": "r/harpsichord.wav", "kind": "midi_render", "tags": "classical;harpsichord;no vocals"},
            {"path": "m/song.wav", "kind": "music", "tags": ""},
            {"path": "s/sung.wav", "kind": "sung", "tags": "female;guitar;vocal"}]
    with open(corpus / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "source", "package", "license", "duration_s", "kind", "tags"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "source": "x", "package": "x", "license": "x", "duration_s": "30"})
    (prepared / "prepared.json").write_text(json.dumps({"dataset": "corpus", "root": str(corpus)}))
    (cache / "cache.json").write_text(json.dumps({"data": str(prepared)}))
    (cache / "train" / "index.json").write_text(json.dumps(
        {"rows": [[0, 0], [0, 187], [1, 0], [2, 0]],
         "keys": {"0": rows[0]["path"], "1": rows[1]["path"], "2": rows[2]["path"]}}))
    tags = ["guitar", "classical", "harpsichord", "female", "piano"]
    k = bd.known_instruments(cache, "train", 4, tags)
    assert k.tolist() == [[False, False, True, False, False], [False, False, True, False, False],
                          [False] * 5, [True, False, False, False, False]]
    assert bd.known_instruments(cache, "probes", 4, tags) is None


def test_report_counts_a_miss_against_the_teachers_by_clip(monkeypatch, tmp_path):
    rep, ts = mod("report"), mod("teachers")
    tags = ["cello", "guitar", "piano", "slow", "harp"]
    clips = [{"path": f"/x/{n}.wav", "instrument": i, "tags": [i]}
             for n, i in (("cello-a", "cello"), ("harp-b", "harp"))]
    # teacher: misses cello-a, hits harp-b; student: misses both, with other top-3 tags
    probs = {"T": np.array([[0.1, 0.9, 0.8, 0.7, 0.0], [0.0, 0.9, 0.1, 0.1, 0.8]]),
             "S": np.array([[0.0, 0.9, 0.7, 0.8, 0.0], [0.0, 0.9, 0.8, 0.7, 0.1]])}
    monkeypatch.setattr(ts, "render_set", lambda work: clips)
    monkeypatch.setattr(ts, "real_set", lambda work: clips)
    monkeypatch.setattr(ts, "teacher_probs", lambda c, names, threads: ({names[0]: probs[names[0]]}, tags))

    class Fake:  # stands in for the models: only their tags are read on this path
        def __init__(self, name):
            self.checkpoint = type("C", (), {"tags": tags})

        def eval(self):
            return self

    monkeypatch.setattr(rep, "_model", Fake)
    monkeypatch.setattr(rep, "Prepared", lambda data: type("P", (), {"splits": np.array([]), "keys": []})())
    monkeypatch.setattr(rep, "read_manifest", lambda corpus: [])
    res = rep.report("T", ["S"], tmp_path, tmp_path, tmp_path / "w", skip=("songs", "sung", "cli"))
    miss = res["instruments"]["renders"]["S"]["misses_where_teacher_hits"]
    assert [m.split(" -> ")[0] for m in miss] == ["harp:harp-b"]
