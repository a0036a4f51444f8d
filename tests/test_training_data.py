"""Dataset loaders (MTAT, MSD, MTG-Jamendo, folder), their error messages, audio decoding and
the resumable, parallel preparation into memory-mapped arrays."""
from __future__ import annotations

import csv
import importlib
import pickle
import shutil

import numpy as np
import pytest
import soundfile as sf

import rt_tagger.training as T


def mod(name: str):
    return importlib.import_module(f"{T.__name__}.{name}")


DatasetError = mod("data.common").DatasetError


@pytest.fixture(scope="module")
def mtat(tmp_path_factory):
    root = tmp_path_factory.mktemp("mtat")
    return mod("data.synthetic").make_mtat(root, n_train=12, n_valid=4, n_test=4, n_untagged=3,
                                           n_broken=1, seconds=2.0)


def copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- MagnaTagATune
def test_mtat_csv_has_the_real_layout(mtat):
    m = mod("data.mtat")
    with open(mtat / "annotations_final.csv", newline="") as f:
        header = next(csv.reader(f, delimiter="\t"))
    assert len(header) == 190 and header[0] == "clip_id" and header[-1] == "mp3_path"
    assert tuple(header[1:-1]) == m.ALL_TAGS and len(set(m.ALL_TAGS)) == 188
    assert len(set(m.TOP50)) == 50 and set(m.TOP50) <= set(m.ALL_TAGS)


def test_mtat_splits_match_an_independent_reading(mtat):
    m = mod("data.mtat")
    with open(mtat / "annotations_final.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    want = {"train": set(), "valid": set(), "test": set()}
    refined = {"train": set(), "valid": set(), "test": set()}
    for r in rows:
        folder = r["mp3_path"][0]
        split = "train" if int(folder, 16) <= 11 else "valid" if folder == "c" else "test"
        want[split].add(r["clip_id"])
        if any(r[t] == "1" for t in m.TOP50):
            refined[split].add(r["clip_id"])
    for name, expect in (("folder", want), ("refined", refined)):
        index = m.load_mtat(mtat, name)
        got = {s: {c.key for c in index.clips if c.split == s} for s in expect}
        assert got == expect
        assert index.tags == list(m.TOP50)
    assert sum(len(v) for v in refined.values()) < sum(len(v) for v in want.values())
    clip = next(c for c in m.load_mtat(mtat).clips if c.labels.any())
    row = next(r for r in rows if r["clip_id"] == clip.key)
    assert [int(row[t]) for t in m.TOP50] == clip.labels.tolist()


def test_mtat_errors_say_what_is_missing(mtat, tmp_path):
    m = mod("data.mtat")
    with pytest.raises(DatasetError, match="does not exist"):
        m.load_mtat(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="unknown MTAT split 'random'.*folder, refined"):
        m.load_mtat(mtat, "random")
    root = copy(mtat, tmp_path)
    shutil.rmtree(root / "c")
    with pytest.raises(DatasetError, match=r"mp3 folder\(s\) c missing"):
        m.load_mtat(root)
    shutil.copytree(mtat / "c", root / "c")
    victim = next((root / "d").iterdir())
    victim.unlink()
    with pytest.raises(DatasetError, match=r"1 of \d+ mp3 file\(s\).*missing.*" + victim.name[:20]):
        m.load_mtat(root, "folder")
    text = (mtat / "annotations_final.csv").read_text().replace('"piano"', '"pianoforte"', 1)
    (root / "annotations_final.csv").write_text(text)
    with pytest.raises(DatasetError, match="missing top-50 tag column.*piano"):
        m.load_mtat(root, check_audio=False)
    (root / "annotations_final.csv").unlink()
    with pytest.raises(DatasetError, match="missing annotations_final.csv"):
        m.load_mtat(root)


# ---------------------------------------------------------------- Million Song Dataset
def _msd(root, ids_train, ids_test, seconds):
    root.mkdir()
    (root / "audio").mkdir()
    (root / "50tagList.txt").write_text("\n".join(f"tag{i}" for i in range(50)) + "\n")
    vec = {t: (np.arange(50) % (k + 2) == 0).astype(np.int64).reshape(50, 1)
           for k, t in enumerate(ids_train + ids_test)}
    for name, obj in (("filtered_list_train.cP", ids_train), ("filtered_list_test.cP", ids_test),
                      ("msd_id_to_tag_vector.cP", vec)):
        (root / name).write_bytes(pickle.dumps(obj, protocol=2))
    rng = np.random.default_rng(0)
    for t, s in zip(ids_train + ids_test, seconds):
        sf.write(root / "audio" / f"{t}.mp3", 0.1 * rng.standard_normal(int(s * 8000))
                 .astype(np.float32), 8000, format="MP3")
    return vec


def test_msd_split_labels_and_short_clips(tmp_path):
    msd = mod("data.msd")
    train, test = ["TRA", "TRB", "TRC"], ["TRD"]
    vec = _msd(tmp_path / "msd", train, test, [30, 30, 12, 30])
    index = msd.load_msd(tmp_path / "msd", n_train=2)
    assert [(c.key, c.split) for c in index.clips] == [("TRA", "train"), ("TRB", "train"),
                                                       ("TRC", "valid"), ("TRD", "test")]
    assert index.tags[0] == "tag0" and len(index.tags) == 50
    for c in index.clips:
        assert c.labels.tolist() == vec[c.key].reshape(-1).tolist()
    out = T.prepare(index, tmp_path / "prep", ["raw"], workers=1, progress=False)
    failed = mod("data.dataset").Prepared(out).meta["failed"]
    assert [(f["key"], f["status"]) for f in failed] == [("TRC", "short")]  # 12 s < 29.1 s


def test_msd_errors_say_what_is_missing(tmp_path):
    msd = mod("data.msd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="missing 50tagList.txt, filtered_list_train.cP, "
                       "filtered_list_test.cP, msd_id_to_tag_vector.cP, audio"):
        msd.load_msd(tmp_path / "empty")
    _msd(tmp_path / "msd", ["TRA", "TRB"], ["TRC"], [30, 30, 30])
    (tmp_path / "msd" / "audio" / "TRA.mp3").rename(tmp_path / "msd" / "audio" / "a.mp3")
    (tmp_path / "msd" / "audio_paths.tsv").write_text("TRA\ta.mp3\nTRB\tsub/TRB.mp3\n")
    with pytest.raises(DatasetError, match=r"1 of 3 audio file\(s\) missing.*TRB -> audio/sub"):
        msd.load_msd(tmp_path / "msd", n_train=1)
    # the 7digital mapping of the split repository; audio_paths.tsv takes precedence
    (tmp_path / "msd" / "audio_paths.tsv").write_text("TRA\ta.mp3\n")
    (tmp_path / "msd" / "audio" / "7" / "3").mkdir(parents=True)
    (tmp_path / "msd" / "audio" / "TRB.mp3").rename(tmp_path / "msd" / "audio/7/3/73.clip.mp3")
    for name, obj in (("MSD_id_to_7D_id.pkl", {"TRB": "73", "TRA": "1"}),
                      ("7D_id_to_path.pkl", {"73": "7/3/73.clip.mp3", "1": "x.mp3"})):
        (tmp_path / "msd" / name).write_bytes(pickle.dumps(obj, protocol=2))
    index = msd.load_msd(tmp_path / "msd", n_train=1)
    assert [c.path.relative_to(tmp_path / "msd").as_posix() for c in index.clips] == \
        ["audio/a.mp3", "audio/7/3/73.clip.mp3", "audio/TRC.mp3"]
    # a few missing previews are tolerated (listed by preparation), many are not
    (tmp_path / "msd" / "audio" / "TRC.mp3").unlink()
    assert len(msd.load_msd(tmp_path / "msd", n_train=1, max_missing=0.5).clips) == 3


# ---------------------------------------------------------------- MTG-Jamendo
def test_jamendo_tsvs_tags_and_errors(tmp_path):
    jam = mod("data.jamendo")
    splits = tmp_path / "data" / "splits" / "split-0"
    splits.mkdir(parents=True)
    audio = tmp_path / "audio" / "00"
    audio.mkdir(parents=True)
    head = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
    rows = {"train": ["track_1\ta\tb\t00/1.mp3\t200.0\tgenre---rock\tinstrument---piano"],
            "validation": ["track_2\ta\tb\t00/2.mp3\t100.0\tmood/theme---happy"],
            "test": ["track_3\ta\tb\t00/3.mp3\t100.0\tgenre---rock"]}
    for part, lines in rows.items():
        (splits / f"autotagging_top50tags-{part}.tsv").write_text(head + "\n".join(lines) + "\n")
    for i in (1, 2, 3):
        sf.write(audio / f"{i}.wav", np.zeros(800, np.float32), 8000)
        (audio / f"{i}.wav").rename(audio / f"{i}.mp3")
    index = jam.load_jamendo(tmp_path)
    assert index.tags == ["genre---rock", "instrument---piano", "mood/theme---happy"]
    assert [(c.key, c.split, c.labels.tolist()) for c in index.clips] == [
        ("track_1", "train", [1, 1, 0]), ("track_2", "valid", [0, 0, 1]),
        ("track_3", "test", [1, 0, 0])]
    (audio / "2.mp3").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 audio file\(s\) missing.*00/2.mp3"):
        jam.load_jamendo(tmp_path)
    (splits / "autotagging_top50tags-test.tsv").unlink()
    with pytest.raises(DatasetError, match="missing autotagging_top50tags-test.tsv"):
        jam.load_jamendo(tmp_path)


def test_folder_and_unknown_dataset(mtat):
    data = mod("data")
    index = data.load_dataset("folder", mtat)
    assert len(index.clips) == 24 and index.tags == []
    assert sum(c.split == "valid" for c in index.clips) == 2  # every 10th file
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'; known datasets: mtat"):
        data.load_dataset("mnist", mtat)


# ---------------------------------------------------------------- decoding
def test_load_audio_resamples_and_falls_back_to_pyav(tmp_path):
    from scipy.signal import resample_poly

    audio = mod("data.audio")
    t = np.arange(22050) / 22050
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "a.wav", np.stack([y, y], 1), 22050, subtype="FLOAT")
    got = audio.load_audio(tmp_path / "a.wav", 16000)
    ref = resample_poly(y.astype(np.float64), 320, 441)
    assert got.dtype == np.float32 and got.shape == ref.shape
    core = slice(1000, -1000)  # away from the filters' edge effects
    assert np.max(np.abs(got[core] - ref[core])) < 2e-3
    from rt_tagger.sources.decode import read_audio

    via_av, sr = read_audio(tmp_path / "a.wav", sample_rate=None, backend="pyav")
    assert sr == 22050 and np.max(np.abs(via_av - y)) < 1e-6
    from rt_tagger.errors import AudioFileError

    with pytest.raises(AudioFileError, match="no such file"):
        audio.load_audio(tmp_path / "missing.wav")


# ---------------------------------------------------------------- preparation
@pytest.fixture(scope="module")
def prepared_raw(mtat, tmp_path_factory):
    index = mod("data.mtat").load_mtat(mtat, "folder")
    out = T.prepare(index, tmp_path_factory.mktemp("p"), ["musicnn.mtat", "raw"], workers=2,
                    progress=False)
    return index, out


def test_prepare_writes_exact_features_and_lists_unreadable(prepared_raw):
    from rt_tagger.features import MUSICNN, LogMel

    index, out = prepared_raw
    data = mod("data.dataset").Prepared(out)
    failed = data.meta["failed"]
    assert len(failed) == 1 and failed[0]["status"] == "unreadable"
    assert failed[0]["message"].startswith("cannot open") and failed[0]["path"].endswith(".mp3")
    assert failed[0]["key"] in (out / "failed.tsv").read_text()
    bad = failed[0]["index"]
    mel, raw = data.features(MUSICNN), data.features(None)
    assert bad not in data.indices("train", [mel]) and bad not in data.indices("valid", [mel]) \
        and bad not in data.indices("test", [mel])
    audio = mod("data.audio")
    for i in (0, 5, len(index.clips) - 3):
        y = audio.load_audio(index.clips[i].path, 16000)
        np.testing.assert_array_equal(mel.clip(i), LogMel(MUSICNN)(y))
        assert np.max(np.abs(raw.clip(i) - y)) <= 0.5 / 32767 + 1e-7
    np.testing.assert_array_equal(data.labels, np.stack([c.labels for c in index.clips]))
    # a log-mel that was not prepared is computed from the raw audio by the same kernel
    spec = mod("data.prepare")
    from rt_tagger.features import SPEC_ATT_DB

    fly = data.features(SPEC_ATT_DB)
    assert fly.on_the_fly
    np.testing.assert_allclose(fly.clip(0), LogMel(SPEC_ATT_DB)(raw.clip(0)), atol=0)
    assert spec.feature_id(SPEC_ATT_DB) not in data.meta["features"]


def test_prepare_resumes_after_interruption(mtat, tmp_path, monkeypatch):
    prep = mod("data.prepare")
    index = mod("data.mtat").load_mtat(mtat, "refined")
    real, calls = prep._work, []

    def flaky(job):
        calls.append(job[0])
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(job)
    monkeypatch.setattr(prep, "_work", flaky)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(index, tmp_path / "a", ["musicnn.mtat"], workers=1, progress=False)
    with pytest.raises(DatasetError, match="did not finish"):
        mod("data.dataset").Prepared(tmp_path / "a")
    calls.clear()
    monkeypatch.setattr(prep, "_work", real)
    done_before = len(list((tmp_path / "a" / "shards").glob("*.done")))
    assert done_before == 5
    seen = []
    monkeypatch.setattr(prep, "_work", lambda job: seen.append(job[0]) or real(job))
    prep.prepare(index, tmp_path / "a", ["musicnn.mtat"], workers=1, progress=False)
    assert len(seen) == len(index.clips) - 5  # finished clips are not decoded again
    prep.prepare(index, tmp_path / "b", ["musicnn.mtat"], workers=1, progress=False)
    fid = prep.feature_id(prep.resolve_features(["musicnn.mtat"]).popitem()[1])
    for name in ("data.npy", "offsets.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / "features" / fid / name),
                                      np.load(tmp_path / "b" / "features" / fid / name))
    # another dataset in the same directory is refused
    other = mod("data.mtat").load_mtat(mtat, "folder")
    with pytest.raises(DatasetError, match="already holds another preparation"):
        prep.prepare(other, tmp_path / "a", ["raw"], workers=1, progress=False)


@pytest.mark.slow
def test_cli_prepares_a_raw_dataset_trains_and_exports(mtat, tmp_path, capsys):
    """``train --dataset mtat --data ROOT`` prepares the model's own log-mel first."""
    import json

    main = mod("__main__").main
    run = tmp_path / "run"
    small = {"n_mels": 24, "width": 32, "layers": 1, "heads": 2, "input_length": 32}
    assert main(["train", "--dataset", "mtat", "--data", str(mtat), "--model", "spec_att",
                 "--model-args", json.dumps(small), "--epochs", "1", "--batch-size", "4",
                 "--val-chunks", "2", "--no-export", "--quiet", "--out", str(run)]) == 0
    data = mod("data.dataset").Prepared(run / "prepared")
    from rt_tagger.features import SPEC_ATT_DB

    assert list(data.meta["features"]) == [mod("data.prepare").feature_id(
        SPEC_ATT_DB.replace(n_mels=24))]
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "m.safetensors")]) == 0
    from rt_tagger.factory import create_model

    model = create_model(tmp_path / "m.safetensors")
    assert model.input_length == 32 and model.checkpoint.provenance["epochs"] == 1
    assert "wrote" in capsys.readouterr().out


def test_augmentations_act_as_documented(prepared_raw):
    """Gain shifts a dB log-mel by exactly the drawn gain; mixing takes the label union;
    shift rolls the chunk; with all flags off the chunk is the prepared one."""
    from rt_tagger.features import SPEC_ATT_DB, LogMel

    _, out = prepared_raw
    data = mod("data.dataset").Prepared(out)
    C, Source = mod("config").TrainConfig, mod("chunks").ChunkSource
    L, hop = 48, SPEC_ATT_DB.hop_length

    def first_batch(**aug):
        src = Source(data, SPEC_ATT_DB, L, C(data="x", **aug))
        item = src.plan(src.indices("train"), epoch=0, seed=3, batch_size=4)[0]
        x, y = src.batch(item)
        return src, item, x.numpy(), y

    plain_src, item, plain, _ = first_batch()
    raw = data.features(None)
    for k, (i, s) in enumerate(zip(item["clips"], item["starts"])):
        np.testing.assert_array_equal(plain[k], plain_src.store.chunk(i, s, L))
    _, item_g, gained, _ = first_batch(aug_gain_db=6.0)
    lm = LogMel(SPEC_ATT_DB)
    for k, (i, s) in enumerate(zip(item_g["clips"], item_g["starts"])):
        ref = lm(raw.chunk(i, s * hop, (L - 1) * hop))
        np.testing.assert_allclose(gained[k] - ref, item_g["aug"]["gain_db"][k], atol=2e-3)
    assert np.ptp(item_g["aug"]["gain_db"]) > 1  # really random gains
    _, item_m, _, y = first_batch(aug_mix=1.0)
    own = data.labels[item_m["clips"]]
    assert np.all(y >= own) and np.any(y > own)
    _, item_s, shifted, _ = first_batch(aug_shift=True)
    for k, (i, s) in enumerate(zip(item_s["clips"], item_s["starts"])):
        roll = int(item_s["aug"]["shift"][k] * L)
        np.testing.assert_array_equal(shifted[k], np.roll(plain_src.store.chunk(i, s, L), roll, 0))


def test_mtat_won_split_files_equal_the_refined_split(mtat, tmp_path):
    """Won et al.'s published split files (written here the way their repository stores them)
    describe the same clips, splits and labels as the refined split derived from the CSV."""
    m = mod("data.mtat")
    refined = m.load_mtat(mtat, "refined")
    d = tmp_path / "split" / "mtat"
    d.mkdir(parents=True)
    rows = {s: [f"{k}\t{c.path.relative_to(mtat).as_posix()}"
                for k, c in enumerate(refined.clips) if c.split == s]
            for s in ("train", "valid", "test")}
    for s, entries in rows.items():
        np.save(d / f"{s}.npy", np.array(entries))
    np.save(d / "binary.npy", np.stack([c.labels for c in refined.clips]))
    np.save(d / "tags.npy", np.array(refined.tags))
    for item in mtat.iterdir():
        (tmp_path / item.name).symlink_to(item)
    won = m.load_mtat(tmp_path, "won")
    assert won.tags == refined.tags
    assert sorted((c.path.name, c.split, c.labels.tolist()) for c in won.clips) == \
        sorted((c.path.name, c.split, c.labels.tolist()) for c in refined.clips)
    (d / "binary.npy").unlink()
    with pytest.raises(DatasetError, match="missing binary.npy"):
        m.load_mtat(tmp_path, "won")
