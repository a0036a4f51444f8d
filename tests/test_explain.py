"""The explain figure: read the written PNG back and check what is drawn where."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rt_tagger.checkpoint import load_checkpoint, save_checkpoint
from rt_tagger.errors import AudioFileError, ConfigError, ModelError
from rt_tagger.explain import BOUNDARY_COLOR, explain_file
from rt_tagger.factory import create_model, pretrained_path
from rt_tagger.features import SPEC_ATT_DB

pytest.importorskip("matplotlib")
torch.set_num_threads(1)

DATA = Path(__file__).parent / "data"
PIANO = DATA / "render_piano_monteverdi_12s.flac"
DRUMS = DATA / "render_drums_70bpm_12s.flac"
MTAT_TAGS = load_checkpoint(pretrained_path("musicnn.mtat")).tags


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    img = imread(path)
    assert img.dtype == np.float32 and img.ndim == 3
    return img[..., :3]


def is_marker(rgb: np.ndarray) -> np.ndarray:
    return np.abs(rgb - np.asarray(BOUNDARY_COLOR, np.float32)).max(axis=-1) < 0.1


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def reached(n_frames, length, hop, samples_per_frame=None):
    """Frames the live tagger's chunks reach: all up to the end of its last whole chunk of
    ``length`` units every ``hop`` (units: frames, or samples for a waveform model)."""
    from rt_tagger.chunker import chunk_starts

    n_units = n_frames if samples_per_frame is None else (n_frames - 1) * samples_per_frame
    end = chunk_starts(n_units, length, hop)[-1] + length
    if samples_per_frame is not None:  # sample s lies at frame coordinate s / hop + 0.5
        end = end / samples_per_frame + 0.5
    return np.arange(n_frames) < end


def assert_drawn_like_live(values, seen):
    """A figure row is finite wherever a live chunk reaches and NaN (blank) after the last one."""
    assert seen.any() and np.isfinite(values[seen]).all()
    assert np.isnan(values[~seen]).all()


def columns_vs_values(img, box, values, t_range, layout, rows=slice(None)):
    """Mean luminance of each pixel column in ``box`` and the plotted per-frame values
    averaged over the frames that column shows (marker columns and blank frames left out)."""
    x0, y0, x1, y1 = box
    fs = (t_range[1] - t_range[0]) / values.shape[0]
    lum, val = [], []
    for x in range(x0 + 2, x1 - 2):
        t = layout.t_range[0] + (x + 0.5 - x0) / (x1 - x0) * (t_range[1] - t_range[0])
        if any(abs(layout.x_of(b) - x) < 4 for b in layout.boundaries):
            continue
        j = int((t - t_range[0]) / fs)
        if not np.isfinite(values[j]):
            continue
        lum.append(luminance(img[y0 + 2:y1 - 2, x])[rows].mean())
        val.append(values[j])
    return np.asarray(lum), np.asarray(val)


def check_common(layout, img, n_rows):
    h, w = img.shape[:2]
    assert (w, h) == layout.size
    assert len(layout.order) == n_rows and layout.order[0] == "spectrogram"
    boxes = [layout.panels[name] for name in layout.order]
    for (x0, y0, x1, y1), nxt in zip(boxes, boxes[1:] + [None]):
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        if nxt is not None:
            assert y1 <= nxt[1]  # panels stacked top to bottom without overlap
    # The spectrogram panel shows the plotted log-mel: not blank, and the column brightness
    # follows the plotted frames' mean level (viridis brightens monotonically).
    spec = layout.rows["spectrogram"]
    x0, y0, x1, y1 = layout.panels["spectrogram"]
    panel = img[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
    assert panel.std() > 0.05
    lum, val = columns_vs_values(img, layout.panels["spectrogram"], spec.mean(axis=1),
                                 layout.t_range, layout)
    assert np.corrcoef(lum, val)[0, 1] > 0.8
    # The clip boundary (12 s) is a magenta line through every panel, and nowhere else.
    xb = int(round(layout.x_of(12.0)))
    for name, (x0, y0, x1, y1) in layout.panels.items():
        band = is_marker(img[y0 + 1:y1 - 1, xb - 2:xb + 3]).any(axis=1)
        assert band.mean() > 0.95, name
        others = is_marker(img[y0:y1, x0:x1])
        others[:, xb - 4 - x0:xb + 5 - x0] = False
        assert not others.any(), name
    # Nothing magenta outside the marker band at all (e.g. in the colour maps).
    everywhere = is_marker(img)
    everywhere[:, xb - 4:xb + 5] = False
    assert not everywhere.any()


def test_musicnn_piano_plus_drums_figure(tmp_path):
    out = tmp_path / "musicnn.png"
    layout = explain_file([PIANO, DRUMS], out, model="musicnn.mtat", concat=True, topk=3,
                          backend="numpy")
    img = read_png(out)
    check_common(layout, img, 1 + 3)  # musicnn has no attention: spectrogram + 3 tag rows
    assert "drums" in layout.tags and len(set(layout.tags)) == 3
    assert all(name.startswith("probability: ") for name in layout.order[1:])
    # The drums row is brighter right of the join than left of it (pixels, not arrays).
    x0, y0, x1, y1 = layout.panels["probability: drums"]
    xb = int(round(layout.x_of(12.0)))
    row = luminance(img[y0 + 3:y1 - 3])
    assert row[:, xb + 20:x1 - 3].mean() > row[:, x0 + 3:xb - 20].mean() + 0.2


@pytest.fixture(scope="module")
def spec_att_checkpoint(tmp_path_factory):
    """A randomly initialised (seeded) small spec_att saved with the MTAT tag names."""
    torch.manual_seed(0)
    args = {"width": 64, "heads": 4, "layers": 2}
    model = create_model("spec_att", **args).eval()
    path = tmp_path_factory.mktemp("ckpt") / "spec_att_random.safetensors"
    save_checkpoint(path, model, arch="spec_att", arch_args=args, tags=list(MTAT_TAGS),
                    sample_rate=16000, input_kind="logmel", input_length=256,
                    logmel=SPEC_ATT_DB, provenance={"note": "random init, seed 0, tests only"})
    return path


def test_spec_att_figure_has_attention_and_contribution_rows(tmp_path, spec_att_checkpoint):
    out = tmp_path / "spec_att.png"
    layout = explain_file([PIANO, DRUMS], out, model=spec_att_checkpoint, concat=True,
                          tags=["piano", "Drums"], backend="numpy")
    img = read_png(out)
    check_common(layout, img, 4)
    assert layout.order[1:] == ["attention", "contribution: piano", "contribution: drums"]
    # Each heat-map row shows its plotted values: colour brightness per column follows them
    # (contribution rows: own min..max through viridis; attention: log2 of the ratio to its
    # mean through the attention ramp; both brighten monotonically).
    n_frames = layout.rows["spectrogram"].shape[0]
    for name in layout.order[1:]:
        values = layout.rows[name]
        assert values.shape == (n_frames,)
        assert_drawn_like_live(values, reached(n_frames, 256, 128))  # default hop: half a chunk
        assert np.nanmax(values) > np.nanmin(values)
        lum, val = columns_vs_values(img, layout.panels[name], values, layout.t_range, layout)
        assert np.corrcoef(lum, val)[0, 1] > 0.9, name
    # The attention row really is the model's: recompute it from the first chunk.
    from rt_tagger import interpret as I
    from rt_tagger.features import logmel
    from rt_tagger.sources.decode import read_audio

    model = create_model(spec_att_checkpoint)
    spec = logmel(read_audio(PIANO, sample_rate=16000)[0], SPEC_ATT_DB, backend="numpy")
    first = I.attention_map(model, spec[:256]).values
    # Frames 0..127 are seen only by the first chunk (hop 128).
    np.testing.assert_allclose(layout.rows["attention"][:128], first[:128], atol=1e-5)


def test_explain_errors(tmp_path, spec_att_checkpoint):
    out = tmp_path / "x.png"
    with pytest.raises(ConfigError, match="unknown tag 'banjo'; valid tags: guitar, classical"):
        explain_file(PIANO, out, model=spec_att_checkpoint, tags=["banjo"])
    with pytest.raises(AudioFileError, match="no such file"):
        explain_file(tmp_path / "missing.wav", out, model=spec_att_checkpoint)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioFileError, match="cannot open"):
        explain_file(bad, out, model=spec_att_checkpoint)
    with pytest.raises(ConfigError, match="concat=True"):
        explain_file([PIANO, DRUMS], out, model=spec_att_checkpoint)
    with pytest.raises(ConfigError, match="at least two files"):
        explain_file([PIANO], out, model=spec_att_checkpoint, concat=True)
    with pytest.raises(ModelError, match="no pretrained weights"):
        explain_file(PIANO, out, model="raw_att")
    with pytest.raises(ConfigError, match="does not exist"):
        explain_file(PIANO, tmp_path / "no" / "dir.png", model="musicnn.mtat", tags=["piano"])
    assert not out.exists()


def test_import_is_light():
    """matplotlib and torch are imported only when a figure/map is made (fast CLI start)."""
    import subprocess
    import sys

    code = ("import sys, rt_tagger.explain, rt_tagger.interpret; "
            "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("arch", ["q2l", "raw_att"])
def test_q2l_and_waveform_models_get_their_rows(tmp_path, arch):
    from rt_tagger.models.short_res import SHORT_RES_LOGMEL

    torch.manual_seed(0)
    if arch == "q2l":
        args, kind, length, mel = {"width": 32, "heads": 4, "ffn_dim": 64}, "logmel", 231, \
            SHORT_RES_LOGMEL
    else:
        args, kind, length, mel = {"width": 32, "heads": 4, "input_length": 243 * 60}, \
            "waveform", 243 * 60, None
    model = create_model(arch, **args).eval()
    ckpt = save_checkpoint(tmp_path / f"{arch}.safetensors", model, arch=arch, arch_args=args,
                           tags=list(MTAT_TAGS), sample_rate=16000, input_kind=kind,
                           input_length=length, logmel=mel)
    layout = explain_file(DRUMS, tmp_path / "f.png", model=ckpt, tags=["drums", "piano"],
                          backend="numpy")
    want = (["cross-attention: drums", "cross-attention: piano"] if arch == "q2l" else
            ["attention", "contribution: drums", "contribution: piano"])
    assert layout.order == ["spectrogram", *want] and layout.boundaries == []
    n_frames = 1 + 12 * 16000 // 256
    assert layout.rows["spectrogram"].shape[0] == n_frames
    seen = reached(n_frames, length, length // 2, None if kind == "logmel" else 256)
    assert seen[:-60].all()  # the live chunks reach all but the tail
    for name in want:
        assert layout.rows[name].shape == (n_frames,)
        assert_drawn_like_live(layout.rows[name], seen)
    img = read_png(layout.path)
    assert not is_marker(img).any()


def test_attention_row_uses_the_shared_log_scale(tmp_path):
    """The default model on the drum clip: each pixel column of the attention row has the
    ramp colour of log2(attention / its mean) from 1/8x to 16x (computed here, not by the
    product's scale code), read back from the PNG; the colour bar beside it runs from the
    ramp's darkest colour (bottom) to its lightest (top)."""
    from rt_tagger.factory import DEFAULT_MODEL, model_cfg
    from rt_tagger.interpret.display import ramp

    out = tmp_path / "drums.png"
    layout = explain_file(DRUMS, out, tags=["drums"], backend="numpy")
    img = np.round(read_png(out) * 255).astype(np.int32)
    v = layout.rows["attention"]
    n = model_cfg(DEFAULT_MODEL).input_length  # the default model's chunk, half a chunk apart
    assert_drawn_like_live(v, reached(v.size, n, n // 2))
    with np.errstate(invalid="ignore"):  # NaN after the last live chunk: left blank
        want = np.clip((np.log2(v / np.nanmean(v)) + 3.0) / 7.0, 0, 1) * 255
    x0, y0, x1, y1 = layout.panels["attention"]
    t0, t1 = layout.t_range
    per_px = v.size / (x1 - x0)
    cols = np.arange(x0 + 2, x1 - 2)
    a = np.floor((cols - x0) * per_px).astype(int)
    b = np.floor((cols + 1 - x0) * per_px - 1e-9).astype(int)
    frames = np.clip(np.stack([a - 1, a, b, b + 1], axis=1), 0, v.size - 1)  # +-1: edge rounding
    drawn = np.isfinite(v[frames]).all(axis=1)  # the blank tail's columns are not in the ramp
    cols, frames = cols[drawn], frames[drawn]
    lut = ramp(256).astype(np.int32)
    colour = np.median(img[y0 + 3:y1 - 3, cols], axis=0)
    dist = np.abs(colour[:, None, :] - lut[None]).sum(axis=2)
    assert np.median(dist.min(axis=1)) <= 6, "the attention row is not drawn in the ramp"
    index = dist.argmin(axis=1)

    def ok(f: np.ndarray) -> np.ndarray:
        return (np.abs(want[f] - index[:, None]) <= 6).any(axis=1)

    assert ok(frames).mean() >= 0.97
    assert ok(np.clip(frames + 6, 0, v.size - 1)).mean() < 0.8  # 6 frames off would show
    assert np.nanmax(want) - np.nanmin(want) > 120  # spans most of the scale (> 3.3 octaves)
    # Colour bar: ramp colours, dark at the bottom, light at the top.
    cx0, cy0, cx1, cy1 = layout.colorbar
    assert x1 < cx0 and y0 - 2 <= cy0 < cy1 <= y1 + 2
    strip = img[cy0 + 2:cy1 - 2, (cx0 + cx1) // 2]
    bar = np.abs(strip[:, None, :] - lut[None]).sum(axis=2)
    assert bar.min(axis=1).max() <= 12  # every pixel down the bar is a ramp colour
    index = bar.argmin(axis=1)
    assert index[0] >= 235 and index[-1] <= 20 and (np.diff(index) <= 0).all()
