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
    agg = Aggregator(TAGS)
    agg.add(ChunkResult(0, 1.0, 4.0, np.array([0.1, 0.7, 0.2], np.float32)))
    s = agg.snapshot()
    assert s.top[0][0] == "b"
    s.probs[:] = 0  # a copy: the aggregator is untouched
    assert agg.snapshot().probs[1] == pytest.approx(0.7)


def test_spectrogram_history_keeps_the_newest_frames():
    from rt_tagger.stream.health import SpectrogramHistory

    h = SpectrogramHistory(4, 0.016, seconds=0.16)
    h.add(np.arange(40, dtype=np.float32).reshape(10, 4))
    h.add(np.arange(40, 60, dtype=np.float32).reshape(5, 4))
    mel, t0 = h.read()
    assert mel.shape == (10, 4)  # capacity 0.16 s / 0.016 s = 10 frames, newest kept
    np.testing.assert_array_equal(mel[-1], [56, 57, 58, 59])
    assert t0 == pytest.approx(5 * 0.016)


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


def _axis():
    from rt_tagger.checkpoint import load_checkpoint
    from rt_tagger.factory import pretrained_path
    from rt_tagger.stream.attention import AttentionAxis

    return AttentionAxis(load_checkpoint(pretrained_path("spec_att.w256")).without_weights())


def test_attention_is_placed_by_the_interpret_time_axis():
    """The overlay's cells are the model's steps as rt_tagger.interpret (and explain) place
    them: step_times of the model, not an even split of [t_start, t_end]."""
    from rt_tagger.interpret import step_times

    axis = _axis()
    T = 256
    attn = np.random.default_rng(0).random((2, 8, T + 1, T + 1)).astype(np.float32)
    ov = axis.overlay(attn, 1.0, chunk=np.zeros((T, 96), np.float32))
    np.testing.assert_allclose(ov.weights, attn[-1, :, 0, 1:].sum(0), rtol=1e-5)
    sec = step_times(axis.model(), T, start=1.0).seconds
    np.testing.assert_allclose(ov.times, np.append(sec[:, 0], sec[-1, 1]))
    assert ov.kind == "cls" and ov.chunk.shape == (T, 96) and ov.start == 1.0


def test_updates_carry_cls_attention_and_the_terminal_draws_it():
    """[CLS] attention reaches the JSON update (contract-checked) and the terminal sparkline
    peaks where the weights peak."""
    import io

    from rt_tagger.sinks.jsonl import validate_message
    from rt_tagger.sinks.terminal import TerminalView, sparkline
    from rt_tagger.stream.attention import ATTENTION_CELLS, pool_cells

    agg = Aggregator(TAGS)
    w = np.zeros(32)
    w[24:28] = 1.0
    u, _ = agg.add(ChunkResult(0, 1.0, 4.0, np.array([0.1, 0.7, 0.2], np.float32),
                               attention=[round(float(x), 4) for x in pool_cells(w)]))
    validate_message(u)
    np.testing.assert_allclose(u["attention"], w, atol=1e-4)
    line = sparkline(u["attention"], 8)
    assert len(line) == 8 and line[6] == "█" and set(line) - {"█"} == {"▁"}
    out = io.StringIO()
    TerminalView(out, tty=False).handle(u)
    assert out.getvalue().rstrip().endswith("attention " + sparkline(u["attention"], 16))
    with pytest.raises(ValueError, match="attention"):
        validate_message({**u, "source": "main", "attention": [0.1, -1.0]})
    big = np.random.default_rng(1).random(256)
    cells = pool_cells(big)
    assert len(cells) == ATTENTION_CELLS == 64
    np.testing.assert_allclose(cells, big.reshape(64, 4).sum(1), atol=1e-9)
    np.testing.assert_allclose(pool_cells(np.arange(3.0), 2), [0.5, 2.5])  # split weight 1
