"""The live window under real Qt (offscreen), on real clips, real models, real threads.

Assertions are on pixels of the grabbed PNG where it matters (spectrogram not blank, the
attention heat strip's colour and the overlay's alpha follow the attention per pixel column,
the top tag's bar is the longest) and on the
pipeline's threads (pause, restart and close never leak capture threads).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from gui_env import rt_threads  # first: Qt offscreen, rt_tagger.gui importable
from rt_tagger.gui import views
from rt_tagger.gui.qt import QtCore, QtGui
from rt_tagger.gui.session import Session, Settings
from rt_tagger.gui.window import LiveWindow
from rt_tagger.tagger import DEFAULT_MODEL

DATA = Path(__file__).parent / "data"
DRUMS = str(DATA / "render_drums_70bpm_12s.flac")
PIANO = str(DATA / "render_piano_monteverdi_12s.flac")


# ---- helpers ---------------------------------------------------------------------------------
@pytest.fixture
def open_window(qtbot):
    """``open_window(settings) -> (window, session)``, started and shown; every window is
    closed (pipeline stopped, threads joined) at teardown even if the test fails. A strong
    reference is kept: a window destroyed without closing would skip its shutdown."""
    opened: list[LiveWindow] = []

    def open_(settings: Settings) -> tuple[LiveWindow, Session]:
        session = Session.open(settings)
        window = LiveWindow(session)
        opened.append(window)
        session.start()
        window.show()
        return window, session

    yield open_
    for window in opened:
        window.close()


def settle(qtbot, window: LiveWindow, session: Session, timeout: int = 30_000) -> None:
    """Waits until the clip is tagged, the last snapshot drawn and the strip computed."""
    qtbot.waitUntil(lambda: session.finished, timeout=timeout)
    for _ in range(2):
        n = window.frames
        qtbot.waitUntil(lambda: window.frames >= n + 3, timeout=5000)
        qtbot.waitUntil(lambda: window.worker.idle, timeout=timeout)


def pixels(window: LiveWindow, path: Path) -> np.ndarray:
    """The window saved as PNG and read back: (height, width, 3) uint8."""
    window.save_png(str(path))
    img = QtGui.QImage(str(path)).convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def to_px(window: LiveWindow, plot, x: float, y: float) -> tuple[float, float]:
    """Data coordinates of ``plot`` -> window pixel coordinates."""
    scene = plot.vb.mapViewToScene(QtCore.QPointF(x, y))
    vp = window.view.mapFromScene(scene)
    p = window.view.viewport().mapTo(window, vp)
    return p.x(), p.y()


def box(window: LiveWindow, plot) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of a plot's view box in the window."""
    r = window.view.mapFromScene(plot.vb.sceneBoundingRect()).boundingRect()
    tl = window.view.viewport().mapTo(window, r.topLeft())
    return tl.x(), tl.y(), tl.x() + r.width(), tl.y() + r.height()


def columns_and_cells(window: LiveWindow, plot, t0: float, cell: float,
                      n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel columns inside a track image drawn from ``t0`` (``n`` cells of ``cell`` s) and,
    per column, the cells it overlaps: ``(columns, (columns, 3))`` indices, the first and
    last repeated where it overlaps fewer (Qt's nearest-pixel scaling draws one of them)."""
    x0, _, x1, _ = box(window, plot)
    p0 = to_px(window, plot, t0, 0)[0]
    p1 = to_px(window, plot, t0 + n * cell, 0)[0]
    cols = np.arange(max(int(np.ceil(p0)) + 1, x0 + 2), min(int(np.floor(p1)) - 1, x1 - 2))
    per_px = n / (p1 - p0)
    assert per_px < 2.5, "more than 3 cells per column: widen the window"
    a = np.floor((cols - p0) * per_px).astype(int)
    b = np.floor((cols + 1 - p0) * per_px - 1e-9).astype(int)
    cells = np.stack([a, np.minimum(a + 1, b), b], axis=1)
    return cols, np.clip(cells, 0, n - 1)


def matches(measured: np.ndarray, expected_per_cell: np.ndarray, cells: np.ndarray,
            tol: float) -> np.ndarray:
    """Per column: the measured value equals the expected value of one of its cells."""
    return (np.abs(expected_per_cell[cells] - measured[:, None]) <= tol).any(axis=1)


def check_heat_strip(window: LiveWindow, tmp_path: Path, ratio: np.ndarray) -> None:
    """The heat strip's pixels: each column's colour is the ramp colour of log2(ratio) of a
    cell drawn there (1/8x..16x), read back by nearest colour in the ramp."""
    from rt_tagger.interpret.display import ramp

    heat = window.view.heat
    np.testing.assert_array_equal(heat.ratio, ratio)
    img = pixels(window, tmp_path / "heat.png").astype(np.int32)
    x0, y0, x1, y1 = box(window, heat.plot)
    mid = slice(y0 + (y1 - y0) // 3, y1 - 3)  # below the newest-chunk bar along the top
    cols, cells = columns_and_cells(window, heat.plot, heat.t0, heat.cell, ratio.shape[0])
    colour = np.median(img[mid][:, cols], axis=0)  # (columns, 3)
    lut = ramp(256).astype(np.int32)
    dist = np.abs(colour[:, None, :] - lut[None]).sum(axis=2)
    index = dist.argmin(axis=1).astype(np.float64)
    assert np.median(dist.min(axis=1)) <= 6, "the strip's colours are not the ramp's"
    # Independent of the product's scale code: log2 of the ratio, 1/8x..16x onto 0..255.
    want = np.clip((np.log2(ratio) + 3.0) / 7.0, 0, 1) * 255
    known = ~np.isnan(want[cells]).any(axis=1)
    ok = matches(index[known], want, cells[known], 6)
    assert known.sum() > 100 and ok.mean() >= 0.97, \
        f"strip colour off in {np.count_nonzero(~ok)} of {ok.size} columns"
    assert np.ptp(want[cells[known]]) > 120  # the row spans most of the scale (> 3.3 octaves)
    shifted = matches(index[known], want, np.clip(cells[known] + 4, 0, ratio.size - 1), 6)
    assert shifted.mean() < 0.8  # 4 cells (64 ms) off would be seen


def bar_lengths(img: np.ndarray, window: LiveWindow) -> np.ndarray:
    """Length in pixels of each bar row, read from the image along the row's centre line."""
    bars = window.view.bars
    x0, _, x1, _ = box(window, bars.plot)
    colours = np.array([views.BAR, views.TOPK], np.int16)
    out = []
    for row in range(len(bars.order)):
        _, y = to_px(window, bars.plot, 0.0, row + 0.5)
        line = img[int(round(y)), x0:x1].astype(np.int16)
        hit = (np.abs(line[:, None, :] - colours[None]).max(axis=2) <= 12).any(axis=1)
        out.append(int(hit.sum()))
    return np.array(out)


# ---- tests -------------------------------------------------------------------------------------
def test_musicnn_live_view_pixels(qtbot, open_window, tmp_path, monkeypatch):
    """musicnn (no attention) on the drum clip: the spectrogram is drawn, the 'drums' bar is
    the longest in the item and in the pixels, no overlay, the strip says why."""
    window, session = open_window(Settings(source=DRUMS, model="musicnn.mtat"))
    settle(qtbot, window, session)
    snap = session.snapshot()
    img = pixels(window, tmp_path / "live.png")

    x0, y0, x1, y1 = box(window, window.view.spectrogram.plot)
    spec = img[y0 + 2:y1 - 2, x0 + 2:x1 - 2].astype(np.float64)
    assert spec.std() > 20, "spectrogram region is blank"
    # Drum hits: the time profile (column brightness) varies, not just a flat fill.
    assert spec.mean(axis=(0, 2)).std() > 3

    bars = window.view.bars
    row_tags = [snap.tags[i] for i in bars.order]
    assert snap.top[0][0] == "drums"  # the clip's known top tag
    np.testing.assert_allclose(bars.widths, snap.probs[bars.order], atol=1e-6)
    assert row_tags[int(np.argmax(bars.widths))] == "drums"
    lengths = bar_lengths(img, window)
    assert row_tags[int(np.argmax(lengths))] == "drums"
    px_per_unit = to_px(window, bars.plot, 1.0, 0)[0] - to_px(window, bars.plot, 0.0, 0)[0]
    big = bars.widths > 0.05  # thin bars may vanish under the threshold marks
    np.testing.assert_allclose(lengths[big], bars.widths[big] * px_per_unit, atol=3)

    # The snapshot button writes the window as PNG into the working directory.
    monkeypatch.chdir(tmp_path)
    qtbot.mouseClick(window.controls.snapshot, QtCore.Qt.MouseButton.LeftButton)
    saved = QtGui.QImage(window.snapshot_path)
    assert Path(window.snapshot_path).parent == Path(".") and not saved.isNull()
    assert (saved.width(), saved.height()) == (img.shape[1], img.shape[0])

    assert not window.view.spectrogram.overlay.isVisible()
    assert "model has no attention" in window.view.strip.title
    status = window.status.text()
    assert f"backend {session.tagger.engine.name}" in status and "overruns 0" in status


def test_default_model_shows_its_attention(qtbot, open_window):
    """The embedded default is a musicnn_att: its [CLS] attention overlay is on screen over the
    latest chunk, and the strip shows the top tag's contribution map."""
    window, session = open_window(Settings(source=DRUMS, model=DEFAULT_MODEL))
    settle(qtbot, window, session)
    snap = session.snapshot()
    assert session.tagger.engine.checkpoint.arch == "musicnn_att"
    assert snap.attention is not None and snap.attention.kind == "cls"
    assert window.view.spectrogram.overlay.isVisible()
    qtbot.waitUntil(lambda: "contribution" in window.view.strip.title, timeout=30000)
    assert snap.top[0][0] in window.view.strip.title


def test_attention_overlay_and_contribution_strip(qtbot, open_window, tmp_path):
    """The default musicnn_att in PyTorch: the heat strip's colour and the overlay's alpha in
    the pixels follow the attention per column; the strip is the contribution map of
    exactly the chunk the engine saw; clicking a bar selects its tag and the strip follows."""
    from rt_tagger.factory import create_model
    from rt_tagger.interpret import contribution_map

    window, session = open_window(Settings(source=DRUMS, model=DEFAULT_MODEL, backend="torch"))
    settle(qtbot, window, session)
    snap = session.snapshot()
    att = snap.attention
    assert att is not None and att.kind == "cls"

    # The strip's chunk is the engine's chunk: Eq. 4 attention of a fresh torch pass on it
    # equals the attention the pipeline got from the engine.
    req = window.last_request
    assert req.start == pytest.approx(att.start) and req.tag == snap.top[0][0]
    np.testing.assert_array_equal(req.chunk, att.chunk)  # handed over, not re-cut
    model = create_model(DEFAULT_MODEL)
    ref = contribution_map(model, req.chunk, tags=[req.tag], start=req.start)
    # One time axis: the overlay's edges are the contribution map's (interpret's) steps.
    sec = ref.steps.seconds
    np.testing.assert_allclose(att.times, np.append(sec[:, 0], sec[-1, 1]), atol=1e-9)
    eq4 = ref.extra["attn"][0, -1, :, 0, 1:].sum(axis=0)
    np.testing.assert_allclose(eq4, att.weights, atol=1e-5)
    np.testing.assert_allclose(window.view.strip.values, ref.values[0], atol=1e-6)

    # The track holds the engine's attention of the last chunk, at its time span.
    track = window.view.track
    assert track.last == (round(float(att.times[0]), 6), round(float(att.times[-1]), 6))
    _, ratio = track.values()
    check_heat_strip(window, tmp_path, ratio)

    # Overlay pixels: alpha estimated from the grab with and without the overlay.
    window.set_paused(True)
    spec = window.view.spectrogram
    np.testing.assert_array_equal(spec.overlay_ratio, ratio)
    with_overlay = pixels(window, tmp_path / "overlay_on.png").astype(np.float64)
    window.controls.overlay.setChecked(False)
    qtbot.wait(100)
    assert not spec.overlay.isVisible() and window.view.heat.image.isVisible()
    without = pixels(window, tmp_path / "overlay_off.png").astype(np.float64)
    plot = spec.plot
    x0, y0, x1, y1 = box(window, plot)
    a, b = with_overlay[y0 + 2:y1 - 2], without[y0 + 2:y1 - 2]
    cyan = np.array(views.OVERLAY, np.float64)
    ch = np.abs(cyan - b).argmax(axis=2)[..., None]  # the channel that shows the blend best
    den = np.take_along_axis(cyan - b, ch, 2)[..., 0]
    alpha = np.take_along_axis(a - b, ch, 2)[..., 0] / np.where(np.abs(den) < 40, np.nan, den)
    cols, cells = columns_and_cells(window, plot, spec.overlay_t0, track.cell, ratio.shape[0])
    # Opacity: 0 at or below the chunk mean, OVERLAY_ALPHA at 16x (log2), widened +-2 cells
    # (independent reference: scipy's sliding maximum).
    from scipy.ndimage import maximum_filter1d

    lv = np.nan_to_num(np.clip(np.log2(ratio) / 4.0, 0, 1), nan=0.0)
    expected = maximum_filter1d(lv, 5, mode="constant") * views.OVERLAY_ALPHA / 255
    measured = np.nanmedian(alpha[:, cols], axis=0)
    ok = matches(measured, expected, cells, 0.05)
    assert ok.mean() >= 0.95, f"overlay alpha off in {np.count_nonzero(~ok)} of {ok.size} columns"
    # High attention is visibly covered (as far as this model's peaks reach), low attention is not.
    assert expected.max() > 0.2 and np.nanmax(measured) > 0.8 * expected.max()
    assert np.nanmin(measured) < 0.02

    # Click another bar: the tag is selected and the strip shows that tag's contribution.
    window.set_paused(False)
    bars = window.view.bars
    row = 7
    target = int(bars.order[row])
    x, y = to_px(window, bars.plot, 0.02, row + 0.5)
    vp = window.view.viewport().mapFrom(window, QtCore.QPoint(int(x), int(round(y))))
    qtbot.mouseClick(window.view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=vp)
    name = snap.tags[target]
    qtbot.waitUntil(lambda: window.selected == target, timeout=3000)
    qtbot.waitUntil(lambda: window.view.strip.tag == name and window.worker.idle, timeout=20_000)
    ref = contribution_map(model, req.chunk, tags=[name], start=req.start)
    np.testing.assert_allclose(window.view.strip.values, ref.values[0], atol=1e-6)
    assert name in window.view.strip.title


@pytest.mark.slow
def test_pause_restart_and_close_stop_every_thread(qtbot, open_window):
    """Realtime drum clip: pause freezes the drawing while the pipeline goes on; a hop change
    restarts on a new pipeline with the old threads joined; closing ends every thread."""
    window, session = open_window(Settings(source=DRUMS, model=DEFAULT_MODEL, backend="torch",
                                                  realtime=True))
    qtbot.waitUntil(lambda: window.view.bars.order is not None, timeout=15_000)
    qtbot.mouseClick(window.controls.pause, QtCore.Qt.MouseButton.LeftButton)
    assert window.paused and window.controls.pause.text() == "Resume"
    frames, image = window.frames, window.view.spectrogram.image.image
    t_paused = session.snapshot().t
    qtbot.waitUntil(lambda: session.snapshot().t >= t_paused + 0.9, timeout=5000)
    assert window.frames == frames and window.view.spectrogram.image.image is image
    qtbot.mouseClick(window.controls.pause, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.frames > frames + 2, timeout=3000)
    assert window.view.spectrogram.image.image is not image
    # While a live-paced source is tagged, the window keeps its frame rate (>= 20 fps asked;
    # measured over the last whole second, tolerance 2 fps).
    assert window.timer.interval() <= 50
    qtbot.wait(2200)
    if os.getloadavg()[0] <= 1.5 * (os.cpu_count() or 1):  # meaningless on an oversubscribed box
        assert window.fps >= 18, f"drew {window.fps:.1f} fps"

    old = session
    old_threads = old.threads() + [old.pipe.source._thread]
    assert all(t.is_alive() for t in old_threads[:2])
    window.controls.hop.setValue(1.0)
    window.controls.flush()
    qtbot.waitUntil(lambda: window.session is not old, timeout=15_000)
    new = window.session
    assert not any(t.is_alive() for t in old_threads)
    assert new.tagger.hop_seconds == pytest.approx(1.0, abs=new.tagger.unit_seconds)
    assert new.settings.source == DRUMS and new.settings.realtime
    qtbot.waitUntil(lambda: new.snapshot().history_t.shape[0] >= 1, timeout=10_000)
    alive = set(rt_threads())
    assert alive <= set(new.threads()) | {new.pipe.source._thread, window.worker._thread}

    # A switch that cannot work says why and keeps the running session.
    window.apply_settings({"source": str(DATA / "no_such_clip.flac")})
    assert window.session is new and all(t.is_alive() for t in new.threads())
    assert window.notice.startswith("cannot switch: ") and "no_such_clip.flac" in window.notice
    assert window.errors == []
    qtbot.waitUntil(lambda: window.notice in window.status.text(), timeout=2000)

    # Another model from the picker: a new tagger, the bars show its tags.
    combo = window.controls.model
    idx = combo.findData("musicnn.msd")
    combo.setCurrentIndex(idx)
    combo.activated.emit(idx)
    qtbot.waitUntil(lambda: window.session.tagger.model == "musicnn.msd", timeout=15_000)
    assert not any(t.is_alive() for t in new.threads() + [new.pipe.source._thread])
    new = window.session
    assert new.settings.hop == pytest.approx(1.0, abs=0.02)  # the other settings carry over
    qtbot.waitUntil(lambda: window.view.bars.order is not None and window.frames > 0
                    and new.snapshot().history_t.shape[0] >= 1, timeout=15_000)
    qtbot.wait(200)
    ticks = [label for _, label in window.view.bars.plot.getAxis("left")._tickLevels[0]]
    assert sorted(ticks) == sorted(new.tagger.tags) != sorted(old.tagger.tags)

    window.close()
    assert not any(t.is_alive() for t in new.threads() + [new.pipe.source._thread])
    assert not window.worker.alive
    assert rt_threads() == []


@pytest.fixture(scope="module")
def q2l_checkpoint(tmp_path_factory):
    """A seeded random small q2l (per-tag cross-attention) with the MTAT tag names."""
    import torch

    from rt_tagger.checkpoint import load_checkpoint, save_checkpoint
    from rt_tagger.factory import create_model, pretrained_path
    from rt_tagger.models.short_res import SHORT_RES_LOGMEL

    torch.manual_seed(0)
    args = {"channels": [16, 16, 32, 32, 32], "width": 32, "heads": 2, "ffn_dim": 64}
    model = create_model("q2l", **args).eval()
    path = tmp_path_factory.mktemp("ckpt") / "q2l_random.safetensors"
    save_checkpoint(path, model, arch="q2l", arch_args=args,
                    tags=list(load_checkpoint(pretrained_path(DEFAULT_MODEL)).tags),
                    sample_rate=SHORT_RES_LOGMEL.sample_rate, input_kind="logmel",
                    input_length=231, logmel=SHORT_RES_LOGMEL,
                    provenance={"note": "random init, seed 0, tests only"})
    return str(path)


def test_q2l_overlay_and_strip_follow_the_selected_tag(qtbot, open_window, q2l_checkpoint):
    """q2l has one cross-attention map per tag: the overlay and the strip show the map of
    the shown tag (the top tag, then the selected one)."""
    window, session = open_window(Settings(source=DRUMS, model=q2l_checkpoint, backend="torch"))
    settle(qtbot, window, session)
    snap = session.snapshot()
    att = snap.attention
    assert att.kind == "per_tag" and att.weights.shape[0] == len(snap.tags)

    spec, strip, heat = window.view.spectrogram, window.view.strip, window.view.heat
    track = window.view.track
    top = window.shown_tag(snap)
    assert snap.tags[top] == snap.top[0][0]
    # The newest chunk's own cells (after the previous chunk's end) hold its map / its mean.
    t_b, hop = float(att.times[-1]), session.tagger.hop_seconds

    def check_newest(row: int) -> None:
        t0, ratio = track.values(row)
        lo = t0 + np.arange(ratio.size) * track.cell  # cell [lo, lo + cell)
        own = (lo >= t_b - hop) & (lo + track.cell <= t_b)
        edges_in = (np.searchsorted(att.times, lo + track.cell, "left")
                    - np.searchsorted(att.times, lo, "right"))
        sel = own & (edges_in == 0)  # cells inside one step (no step edge within)
        w = att.weights[row].astype(np.float64)
        step = np.searchsorted(att.times, lo[sel], "right") - 1
        assert sel.sum() > 10
        np.testing.assert_allclose(ratio[sel], (w / w.mean())[step], rtol=1e-5)

    check_newest(top)
    check_newest(int(window.view.bars.order[3]))
    np.testing.assert_array_equal(spec.overlay_ratio, track.values(top)[1])
    np.testing.assert_array_equal(heat.ratio, track.values(top)[1])
    assert heat.title.startswith(f"cross-attention of '{snap.tags[top]}'")
    assert strip.title.startswith(f"cross-attention of '{snap.tags[top]}'")
    other = int(window.view.bars.order[3])
    window.select_tag(other)
    qtbot.waitUntil(lambda: strip.tag == snap.tags[other], timeout=3000)
    np.testing.assert_array_equal(spec.overlay_ratio, track.values(other)[1])
    np.testing.assert_array_equal(heat.ratio, track.values(other)[1])
    np.testing.assert_allclose(strip.values, att.weights[other], atol=1e-7)

    # A click on a taggram row selects that row's tag too (rows are the bars' rows).
    gram = window.view.taggram.plot
    row = 5
    t_mid = float(np.mean(gram.vb.viewRange()[0]))
    x, y = to_px(window, gram, t_mid, row + 0.5)
    vp = window.view.viewport().mapFrom(window, QtCore.QPoint(int(x), int(round(y))))
    qtbot.mouseClick(window.view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=vp)
    qtbot.waitUntil(lambda: window.selected == int(window.view.bars.order[row]), timeout=3000)
