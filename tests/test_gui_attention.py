"""The attention track behind the live heat strip and overlay (no window needed).

Checked against a direct per-frame computation (each chunk divided by its mean, averaged
over the chunks that cover a frame), and against the explain figure's own map of a real
clip with the default model: the strip and the figure put the same attention on the same
frames.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pyqtgraph")

from rt_tagger.stream.attention import AttentionAxis, AttentionOverlay  # noqa: E402
from rt_tagger.gui.attention import AttentionTrack, overlay_rgba, strip_rgba, widen  # noqa: E402
from rt_tagger.interpret import display  # noqa: E402

DRUMS = Path(__file__).parent / "data" / "render_drums_70bpm_12s.flac"
FS = 0.016  # spec_att frame hop (256 / 16000 s)


def chunk(start: int, weights: np.ndarray, kind: str = "cls") -> AttentionOverlay:
    """A spec_att-like chunk overlay as the stream builds it: step t on frame start+t, whose
    span in seconds is [(start+t-0.5) FS, (start+t+0.5) FS) (centred frames, interpret's axis)."""
    n = weights.shape[-1]
    return AttentionOverlay((np.arange(n + 1) + start - 0.5) * FS, weights.astype(np.float32), kind)


def reference(chunks: list[tuple[int, np.ndarray]], n_frames: int) -> np.ndarray:
    """Per frame: mean over covering chunks of weight / chunk mean (NaN if none)."""
    total, count = np.zeros(n_frames), np.zeros(n_frames)
    for start, w in chunks:
        w = w.astype(np.float32).astype(np.float64)
        for t, v in enumerate(w / w.mean()):
            if 0 <= start + t < n_frames:
                total[start + t] += v
                count[start + t] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def test_track_averages_each_chunk_relative_to_its_mean():
    rng = np.random.default_rng(3)
    chunks = [(s, rng.gamma(0.3, size=64) * rng.uniform(0.5, 5)) for s in (0, 16, 32, 48, 130)]
    track = AttentionTrack(FS, keep=10.0)
    for start, w in chunks:
        assert track.add(chunk(start, w))
    assert not track.add(chunk(130, chunks[-1][1]))  # the same chunk again: counted once
    t0, ratio = track.values()
    assert t0 == 0.0 and track.chunks == 5
    want = reference(chunks, ratio.shape[0])
    np.testing.assert_allclose(ratio, want, rtol=1e-6, atol=1e-12, equal_nan=True)
    assert not np.isnan(ratio[:112]).any() and not np.isnan(ratio[130:194]).any()
    assert np.isnan(ratio[112:130]).all() and np.isnan(ratio[194:]).all()  # no chunk there


def test_track_scrolls_with_bounded_memory_and_keeps_rows():
    rng = np.random.default_rng(4)
    track = AttentionTrack(FS, keep=2.0)  # 125 cells
    chunks = [(s, rng.gamma(0.5, size=(3, 32))) for s in range(0, 2000, 8)]
    for start, w in chunks:
        track.add(chunk(start, w, kind="per_tag"))
    assert track.sums.shape == (3, track.size) and track.size == 125
    t0, ratio = track.values(row=2)
    first = int(round(t0 / FS))
    assert first == 2000 - 8 + 32 - track.size
    want = reference([(s - first, w[2]) for s, w in chunks], track.size)
    # The oldest kept cells lost chunks that started before the window: compare the rest.
    np.testing.assert_allclose(ratio[32:], want[32:], rtol=1e-6, atol=1e-12)


def test_rgba_follow_the_shared_scale():
    ratio = np.array([np.nan, 1 / 16, 1 / 8, 1.0, 4.0, 16.0, 64.0])
    rgba = strip_rgba(ratio)
    lut = display.ramp(256)
    assert rgba[0, 0, 3] == 0 and (rgba[1:, 0, 3] == 255).all()
    idx = [0, 0, int(round(3 / 7 * 255)), int(round(5 / 7 * 255)), 255, 255]
    np.testing.assert_array_equal(rgba[1:, 0, :3], lut[idx])
    over = overlay_rgba(ratio, (0, 235, 255), 200)[:, 0, 3]
    # Clear at or below the mean; widened by +-2 cells, so the 16x peak reaches its neighbours.
    np.testing.assert_array_equal(widen(np.array([0, 0, 0, 1.0, 0, 0, 0])), [0, 1, 1, 1, 1, 1, 0])
    assert over[0] == 0 and over[-1] == 200 and over[3] == 200  # cell 3 is 2 from the 16x cell


def test_strip_and_explain_figure_agree_on_a_real_clip():
    """The live track fed with the engine-style overlays of explain's own chunks equals the
    explain figure's attention row over the same frames: same placement, same values up to
    the normalisation (each chunk by its own mean live, the whole row by its mean in the
    figure: within 5 %)."""
    torch = pytest.importorskip("torch")
    from rt_tagger.explain import _load_model, _read_audio
    from rt_tagger.features import LogMel
    from rt_tagger.interpret import chunk_starts, explain_array, time_base
    from rt_tagger.interpret.maps import forward
    from rt_tagger.tagger import DEFAULT_MODEL

    torch.set_num_threads(1)
    model = _load_model(DEFAULT_MODEL)
    base = time_base(model)
    spec = LogMel(base.logmel, backend="numpy")(_read_audio(DRUMS, base.sample_rate))
    maps = explain_array(model, spec, contribution=False)
    fs = base.frame_seconds
    track = AttentionTrack(fs, keep=60.0)
    length = int(model.input_length)
    axis = AttentionAxis(model.checkpoint, model)  # what the live stream uses
    for a in chunk_starts(spec.shape[0], length, length // 2):
        x = torch.from_numpy(np.ascontiguousarray(spec[a:a + length]))[None]
        _, attn = forward(model, x, return_attention=True)
        track.add(axis.overlay(attn.numpy()[0], a * fs))
    t0, ratio = track.values()
    assert t0 == 0.0
    live = ratio[:spec.shape[0]]
    figure = maps.attention / np.nanmean(maps.attention)
    np.testing.assert_allclose(live, figure, rtol=0.05)  # measured: 2.9 %
    # A shift by one attention step (frames per step) would break it: the map is peaky.
    k = model.time_steps_to_frames().hop
    both = ~np.isnan(live) & ~np.isnan(figure)  # frames some chunk covers (NaN in both else)
    np.testing.assert_array_equal(np.isnan(live), np.isnan(figure))
    shifted = both[k:] & both[:-k]
    assert (np.corrcoef(live[k:][shifted], figure[:-k][shifted])[0, 1] < 0.9
            < np.corrcoef(live[both], figure[both])[0, 1])
