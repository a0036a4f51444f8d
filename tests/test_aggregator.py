"""Aggregator: smoothing modes, top-k, hysteresis events, snapshots; the chunker."""
from __future__ import annotations

import numpy as np
import pytest

from rt_tagger.aggregator import Aggregator, ChunkResult
from rt_tagger.chunker import Chunker
from rt_tagger.errors import ConfigError

TAGS = ["a", "b", "c"]


def feed(agg: Aggregator, seq, hop: float = 0.5, chunk: float = 3.0):
    updates, events = [], []
    for i, p in enumerate(seq):
        t0 = i * hop
        u, ev = agg.add(ChunkResult(i, t0, t0 + chunk, np.asarray(p, np.float32)))
        updates.append(u)
        events += ev
    return updates, events


def test_mean_over_horizon_and_top():
    agg = Aggregator(TAGS, mode="mean", horizon=1.0, min_duration=0)
    ups, _ = feed(agg, [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.5, 0.0, 0.0]])
    # horizon 1 s, chunks end every 0.5 s: the last update averages the last two chunks
    assert ups[-1]["probs"] == pytest.approx({"a": 0.4, "b": 0.1, "c": 0.05})
    assert ups[-1]["top"][0] == ["a", 0.4]
    assert [t for t, _ in ups[-1]["top"]] == ["a", "b", "c"]


def test_max_and_ema_modes():
    seq = [[0.9, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]]
    mx = Aggregator(TAGS, mode="max", horizon=1.2)
    ups, _ = feed(mx, seq)
    assert ups[1]["probs"]["a"] == pytest.approx(0.9)
    assert ups[2]["probs"]["a"] == pytest.approx(0.9)  # 1.0 s back: still inside
    ema = Aggregator(TAGS, mode="ema", horizon=1.0)
    ups, _ = feed(ema, seq)
    a = 1 - np.exp(-0.5)
    expect = 0.9 + a * (0.1 - 0.9)
    assert ups[1]["probs"]["a"] == pytest.approx(expect, abs=1e-4)


def test_hysteresis_reports_a_tag_once():
    agg = Aggregator(TAGS, mode="mean", horizon=0.4, thresholds=0.5, off_ratio=0.8, min_duration=1.0)
    p = [0.6, 0.45, 0.7, 0.55, 0.6, 0.42, 0.41, 0.3, 0.2, 0.8, 0.9, 0.9]
    _, events = feed(agg, [[x, 0.0, 0.0] for x in p])
    kinds = [(e["event"], e["tag"], e["t"]) for e in events]
    # 0.6 then a dip to 0.45 restarts the minimum duration; on at t=5.0 (0.7 at 4.0 + 1 s),
    # 0.45 (>= 0.4) keeps it on; off at 0.3 (< 0.4); on again after 1 s of >= 0.5.
    assert kinds == [("tag_on", "a", 5.0), ("tag_off", "a", 6.5), ("tag_on", "a", 8.5)]
    assert agg.close_events(9.0)[0]["event"] == "tag_off"


def test_per_tag_thresholds_and_validation():
    agg = Aggregator(TAGS, thresholds=np.array([0.9, 0.2, 0.5]), min_duration=0)
    _, events = feed(agg, [[0.5, 0.3, 0.5]])
    assert sorted(e["tag"] for e in events) == ["b", "c"]
    with pytest.raises(ConfigError):
        Aggregator(TAGS, mode="median")
    with pytest.raises(ConfigError):
        Aggregator(TAGS, thresholds=1.5)
    with pytest.raises(ConfigError):
        Aggregator(TAGS, horizon=0)


def test_snapshot_is_a_consistent_copy():
    agg = Aggregator(TAGS, n_mels=4, frame_seconds=0.016, logmel_seconds=0.16)
    agg.add_frames(np.arange(40, dtype=np.float32).reshape(10, 4))
    agg.add_frames(np.arange(40, 60, dtype=np.float32).reshape(5, 4))
    attn = np.random.default_rng(0).random((2, 8, 6, 6)).astype(np.float32)
    agg.add(ChunkResult(0, 1.0, 4.0, np.array([0.1, 0.7, 0.2], np.float32), attention=attn))
    s = agg.snapshot()
    assert s.logmel.shape == (10, 4)  # capacity 0.16 s / 0.016 s = 10 frames, newest kept
    np.testing.assert_array_equal(s.logmel[-1], [56, 57, 58, 59])
    assert s.logmel_t0 == pytest.approx(5 * 0.016)
    np.testing.assert_allclose(s.attention.weights, attn[-1, :, 0, 1:].sum(0))
    assert s.attention.times[0] == 1.0 and s.attention.times[-1] == 4.0
    assert s.top[0][0] == "b"
    s.probs[:] = 0  # a copy: the aggregator is untouched
    assert agg.snapshot().probs[1] == pytest.approx(0.7)


def test_chunker_emits_exact_windows_in_any_block_sizes():
    frames = np.arange(1000 * 2, dtype=np.float32).reshape(1000, 2)
    ref = Chunker(256, 31)
    ref_chunks = ref.push(frames)
    assert [c.start for c in ref_chunks] == list(range(0, 1000 - 256 + 1, 31))
    ch = Chunker(256, 31)
    rng = np.random.default_rng(0)
    got, i = [], 0
    while i < 1000:
        n = int(rng.integers(0, 90))
        got += ch.push(frames[i : i + n])
        i += n
    assert [c.start for c in got] == [c.start for c in ref_chunks]
    for a, b in zip(got, ref_chunks):
        np.testing.assert_array_equal(a.data, b.data)
    assert ch.finish(0.0) == []  # trailing frames after the last chunk are dropped


def test_chunker_pads_a_stream_shorter_than_one_chunk():
    ch = Chunker(100, 100)
    assert ch.push(np.ones((30, 3), np.float32)) == []
    (c,) = ch.finish(-7.0)
    assert c.padded == 70 and c.data.shape == (100, 3)
    assert (c.data[30:] == -7.0).all() and (c.data[:30] == 1).all()


def test_updates_carry_cls_attention_and_the_terminal_draws_it():
    """[CLS] attention reaches the JSON update (contract-checked) and the terminal sparkline
    peaks where the weights peak; per-tag (Q2L) attention stays out of the update."""
    import io

    from rt_tagger.sinks.jsonl import validate_message
    from rt_tagger.sinks.terminal import TerminalView, sparkline

    agg = Aggregator(TAGS)
    attn = np.full((2, 8, 9, 9), 0.01, np.float32)
    attn[-1, :, 0, 1 + 6] = 0.5  # every head of the last layer looks at step 6 of 8
    u, _ = agg.add(ChunkResult(0, 1.0, 4.0, np.array([0.1, 0.7, 0.2], np.float32),
                               attention=attn))
    validate_message({**u, "source": "main"})
    np.testing.assert_allclose(u["attention"], attn[-1, :, 0, 1:].sum(0), atol=1e-4)
    line = sparkline(u["attention"], 8)
    assert len(line) == 8 and line[6] == "█" and set(line) - {"█"} == {"▁"}
    assert sparkline(np.ones(5), 10) == "█" * 10 and sparkline(np.zeros(3), 4) == "▁" * 4
    out = io.StringIO()
    TerminalView(out, tty=False).handle({**u, "source": "main"})
    assert out.getvalue().rstrip().endswith("attention " + sparkline(u["attention"], 16))
    with pytest.raises(ValueError, match="attention"):
        validate_message({**u, "source": "main", "attention": [0.1, -1.0]})

    # spec_att attends per frame (256 steps): the update pools them into 64 cells, same total
    from rt_tagger.aggregator import ATTENTION_CELLS, pool_cells

    big = np.random.default_rng(1).random((2, 8, 257, 257)).astype(np.float32)
    u, _ = agg.add(ChunkResult(1, 1.5, 5.6, np.array([0.1, 0.7, 0.2], np.float32),
                               attention=big))
    want = big[-1, :, 0, 1:].sum(0)
    assert len(u["attention"]) == ATTENTION_CELLS == 64
    np.testing.assert_allclose(u["attention"], want.reshape(64, 4).sum(1), atol=1e-3)
    np.testing.assert_allclose(pool_cells(np.arange(3.0), 2), [0.5, 2.5])  # split weight 1

    q2l = np.random.default_rng(0).random((1, 4, 3, 8)).astype(np.float32)
    u, _ = agg.add(ChunkResult(1, 1.5, 4.5, np.array([0.1, 0.7, 0.2], np.float32),
                               attention=q2l))
    assert "attention" not in u and agg.snapshot().attention.kind == "per_tag"
