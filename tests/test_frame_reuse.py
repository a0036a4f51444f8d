"""Frame reuse (rt_tagger.engines.reuse): overlapping chunks of a stream share the frame stage
(musicnn's timbral front-end) and still give what the whole model gives on each chunk.

Reference: the whole model, chunk by chunk (PyTorch, and the plain onnxruntime graph). The
reuse path is the same arithmetic on the same frames, so the tolerance is tight: 1e-6 on
logits, probabilities and attention (measured: 0, bit for bit)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rt_tagger.engines import create_engine
from rt_tagger.factory import create_model
from rt_tagger.tagger import Tagger
from signals import DATA, MUSIC_CLIPS

ATOL = 1e-6


def logmel(frames: int, seed: int = 0) -> np.ndarray:
    """A stream's log-mel at the scale musicnn's input batch norm saw (log10(1 + 10^4 mel))."""
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(1.0, 1.0, (frames, 96))).astype(np.float32)


@pytest.mark.parametrize("name", ["musicnn_att.mtat", "musicnn.mtat"])
def test_model_from_frame_stage_equals_forward(name):
    """A chunk's rows cut from the stage of a longer stretch give the chunk's forward."""
    model = create_model(name).eval()
    x = torch.from_numpy(logmel(420))[None]
    with torch.no_grad():
        rows = model.frame_stage(x)  # frames 3 .. 416
        assert rows.shape == (1, 420 - 6, 408)
        for start in (0, 31, 62, 233):
            chunk = x[:, start:start + 187]
            inner = rows[:, start:start + 181]  # frames start+3 .. start+183
            if name == "musicnn_att.mtat":
                ref_logits, ref_attn = model(chunk, return_attention=True)
                logits, attn = model.from_frame_stage(chunk, inner, return_attention=True)
                torch.testing.assert_close(attn, ref_attn, rtol=0, atol=ATOL)
            else:
                ref_logits, logits = model(chunk), model.from_frame_stage(chunk, inner)
            torch.testing.assert_close(logits, ref_logits, rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx-cache")
    with create_engine("musicnn_att.mtat", "onnxruntime", device="cpu", threads=1,
                       cache=cache) as e:
        yield e


def test_onnxruntime_engine_reuses_frames_and_matches_the_whole_model(engine):
    """Two interleaved streams, hop 31 frames, one with gaps (dropped chunks): run with
    positions equals run without, and the stage ran only on the frames no chunk had before."""
    assert engine.frame_reuse is not None, "the default model's halves were not exported"
    streams = {"a": logmel(650, 1), "b": logmel(300, 2)}
    # a: 124 and 155 dropped (shares 124 frames with 93: partly reused), then past all it had
    starts = {"a": [0, 31, 62, 93, 186, 400, 431], "b": [0, 31, 62]}
    order = [("a", 0), ("b", 0), ("a", 31), ("b", 31), ("a", 62), ("a", 93), ("b", 62),
             ("a", 186), ("a", 400), ("a", 431)]
    before = engine.frame_reuse.stage_frames
    for key, start in order:
        chunk = streams[key][start:start + 187][None]
        got = engine.run(chunk, positions=[(key, start)])
        ref = engine.run(chunk)
        np.testing.assert_allclose(got.logits, ref.logits, rtol=0, atol=ATOL)
        np.testing.assert_allclose(got.attention, ref.attention, rtol=0, atol=ATOL)
    # a fresh chunk runs the stage on its 187 frames, a follower on its 31 new ones + 6 context,
    # a@186 on the 93 frames after a@93's last row (frame 276) + 6
    fresh = 3  # a@0, b@0, a@400
    assert engine.frame_reuse.stage_frames - before == fresh * 187 + 99 + (len(order) - fresh - 1) * 37
    assert sum(len(v) for v in starts.values()) == len(order)


def test_the_whole_graph_opens_only_for_chunks_without_positions(tmp_path, opened_sessions):
    """With the halves beside it, the whole graph's session waits until a chunk comes without
    its stream position (a stream never needs it); the description is read from the file,
    the same as the session says, and the results are the same either way."""
    import onnxruntime as ort

    from rt_tagger.engines.ort_engine import cached_onnx, onnx_metadata_props

    path, _ = cached_onnx("musicnn_att.mtat", cache=tmp_path)
    opened = opened_sessions
    with create_engine("musicnn_att.mtat", "onnxruntime", device="cpu", threads=1,
                       cache=tmp_path) as e:
        assert str(path) not in opened and len(opened) == 2  # the two halves only
        assert e.checkpoint.sha256 == create_model("musicnn_att.mtat").checkpoint.sha256
        assert e.supports_attention and e.export_info.get("time_map")
        x = logmel(187, 3)[None]
        got = e.run(x, positions=[("s", 0)])
        assert str(path) not in opened
        ref = e.run(x)
        assert opened.count(str(path)) == 1
        e.run(x)
        assert opened.count(str(path)) == 1
        np.testing.assert_allclose(got.logits, ref.logits, rtol=0, atol=ATOL)
        np.testing.assert_allclose(got.attention, ref.attention, rtol=0, atol=ATOL)
        assert onnx_metadata_props(path) == ort.InferenceSession(str(path)).get_modelmeta() \
            .custom_metadata_map
    assert onnx_metadata_props(tmp_path / "missing.onnx") is None


def test_a_batch_of_one_streams_chunks_reuses_within_the_batch(engine):
    x = logmel(400, 3)
    starts = [0, 31, 62, 93]
    batch = np.stack([x[s:s + 187] for s in starts])
    got = engine.run(batch, positions=[("c", s) for s in starts])
    np.testing.assert_allclose(got.probs, engine.run(batch).probs, rtol=0, atol=ATOL)
    engine.frame_reuse.forget("c")
    with pytest.raises(Exception, match="positions"):
        engine.run(batch, positions=[("c", 0)])


def test_rows_made_ahead_of_the_chunks_are_used_and_equal(engine):
    """extend() as a feature thread calls it (frames as they come, in blocks): the chunks then
    find their rows made and run only the rest of the model; outputs equal the whole model's."""
    reuse = engine.frame_reuse
    x = logmel(500, 4)
    for end in range(40, 260, 40):  # blocks of 40 frames; the window from frame 0
        reuse.extend("d", x[:end], 0)
    before = reuse.stage_frames
    got = engine.run(x[None, 31:218], positions=[("d", 31)])  # rows 34..214 all made already
    assert reuse.stage_frames == before
    np.testing.assert_allclose(got.probs, engine.run(x[None, 31:218]).probs, rtol=0, atol=ATOL)
    # a window starting past the kept rows' end leaves them (a queued chunk may need them)
    reuse.extend("d", x[300:400], 300)
    assert reuse.stage_frames == before
    got = engine.run(x[None, 62:249], positions=[("d", 62)])
    np.testing.assert_allclose(got.probs, engine.run(x[None, 62:249]).probs, rtol=0, atol=ATOL)
    reuse.forget("d")


def test_tagging_a_file_with_frame_reuse_equals_without(tmp_path):
    """The whole streaming path (hop 0.5 s: 6 chunks share each frame): the same updates."""
    tagger = Tagger(None, hop=0.5, threads=1, backend="onnxruntime")
    assert tagger.engine.frame_reuse is not None
    path = DATA / MUSIC_CLIPS[0]
    with_reuse = [m for m in tagger.stream(path) if m["type"] == "update"]
    stage_frames = tagger.engine.frame_reuse.stage_frames
    tagger.engine.frame_reuse = None
    plain = [m for m in tagger.stream(path) if m["type"] == "update"]
    assert len(with_reuse) == len(plain) > 5
    for a, b in zip(with_reuse, plain):
        assert a["t"] == b["t"]
        for tag, p in b["probs"].items():
            assert abs(a["probs"][tag] - p) <= ATOL
    assert stage_frames < 0.3 * len(plain) * 187  # ~37 of 187 frames per chunk after the first


def test_two_workers_run_one_files_chunks_at_once_and_fold_them_in_order():
    """The default on two cores: two inference workers take one file's chunks at once (the
    first engine call waits until a second one has started, or fails the test after 10 s);
    each update still comes in order and equals one worker's (frame reuse: exact)."""
    import threading

    from rt_tagger.sources import open_source

    tagger = Tagger(None, hop=0.5, threads=1, backend="onnxruntime")
    engine, run = tagger.engine, tagger.engine.run
    both = threading.Barrier(2, timeout=10)
    overlap = []

    def spy(batch, **kw):
        if not overlap:
            try:
                both.wait()  # returns once two calls are inside at the same time
                overlap.append(True)
            except threading.BrokenBarrierError:
                pass
        return run(batch, **kw)

    def updates(workers):
        session = tagger.session(workers=workers)
        session.add(open_source(DATA / MUSIC_CLIPS[1], name="f"))
        with session:
            session.start()
            assert len(session.scheduler.threads) == workers
            return [m for m in session.messages() if m["type"] == "update"]

    one = updates(1)
    engine.run = spy
    two = updates(2)
    engine.run = run
    assert overlap, "the two workers never ran chunks of the file at once"
    assert [m["t"] for m in two] == sorted(m["t"] for m in two) == [m["t"] for m in one]
    for a, b in zip(two, one):
        assert a["chunk"] == b["chunk"]
        for tag, p in b["probs"].items():
            assert abs(a["probs"][tag] - p) <= ATOL
        assert a["attention"] == b["attention"]
