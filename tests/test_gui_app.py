"""The application around the live window: Qt stays out of the CLI import, the
PySide6 long-run failure mode (>= 3000 image updates), ``run_gui`` end to end (the entry point
of ``rt-tagger --gui``), and the screenshot script that renders the README image."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gui_env import rt_threads  # first: Qt offscreen, rt_tagger.gui importable
from rt_tagger.gui.qt import QtCore, QtGui
from rt_tagger.gui.session import Session, Settings
from rt_tagger.gui.window import LiveWindow
from rt_tagger.tagger import DEFAULT_MODEL

DATA = Path(__file__).parent / "data"
PIANO = str(DATA / "render_piano_monteverdi_12s.flac")


def test_importing_the_cli_does_not_import_qt():
    code = ("import sys, rt_tagger.cli, rt_tagger.gui_launch; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt6', 'pyqtgraph')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


@pytest.mark.slow
def test_long_run_3000_image_updates(qtbot):
    """The PySide6 6.12 failure mode: >= 3000 image updates in one process. The process
    survives, memory stays bounded and the refcount of False does not drift."""
    from rt_tagger.aggregator import Snapshot
    from rt_tagger.stream.attention import AttentionOverlay

    session = Session.open(Settings(source=PIANO, model=DEFAULT_MODEL))
    window = LiveWindow(session)
    window.timer.stop()  # only synthetic snapshots are drawn
    window.resize(640, 400)
    window.show()
    tags, n = session.tagger.tags, 3000
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((1875 + n, 96)).astype(np.float32)
    hist = rng.random((60 + n, 50)).astype(np.float32)

    def snap(i: int) -> Snapshot:
        t = 3.0 + 0.04 * i
        p = rng.random(50).astype(np.float32)
        top = [(tags[j], float(p[j])) for j in np.argsort(-p)[:5]]
        att = AttentionOverlay(np.linspace(t - 3, t, 188), rng.random(187).astype(np.float32), "cls")
        return Snapshot(t=t, tags=tags, probs=p, latest=p, top=top, active=[],
                        history_t=(np.arange(60) * 0.5 + t - 30).astype(np.float32),
                        history=hist[i:i + 60], attention=att, logmel=mel[i:i + 1875],
                        logmel_t0=0.016 * i, frame_seconds=0.016,
                        thresholds=np.full(50, 0.5, np.float32), status={})

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    app = QtCore.QCoreApplication.instance()
    images = 0
    for i in range(n):
        window.show_snapshot(snap(i))
        images += 1
        if i % 5 == 0:
            app.processEvents()  # paints
        if i == 300:
            base_rss, base_false = rss_mb(), sys.getrefcount(False)
    app.processEvents()
    assert images == window.frames - 0 >= 3000
    growth = rss_mb() - base_rss
    assert growth < 40, f"RSS grew {growth:.0f} MB over {n - 300} updates"
    assert abs(sys.getrefcount(False) - base_false) < 500
    assert window.view.spectrogram.image.image.shape == (1875, 96)
    window.close()
    assert rt_threads() == []


def test_run_gui_end_to_end(qtbot, tmp_path):
    """The CLI's entry point: starts the pipeline, writes every message to JSONL, returns 0
    after the window is closed, leaves no thread behind."""
    from rt_tagger.gui_launch import run_gui
    from rt_tagger.sinks import JsonlWriter
    from rt_tagger.sinks.jsonl import validate_message
    from rt_tagger.tagger import Tagger

    tagger = Tagger(None)
    status, pipe = tagger.open_stream(PIANO)
    out = tmp_path / "gui.jsonl"
    seen = {}

    def close_when_done() -> None:
        from rt_tagger.gui.qt import QtWidgets

        wins = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, LiveWindow)]
        if wins and wins[0].session.finished and wins[0].frames > 5:
            seen["window"] = wins[0]
            wins[0].close()
        else:
            QtCore.QTimer.singleShot(50, close_when_done)

    QtCore.QTimer.singleShot(50, close_when_done)
    code = run_gui(tagger, pipe, status, jsonl=JsonlWriter(str(out)))
    assert code == 0
    msgs = [json.loads(line) for line in out.read_text().splitlines()]
    for m in msgs:
        validate_message(m)
    assert msgs[0]["type"] == "status" and msgs[-1]["type"] == "summary"
    assert sum(m["type"] == "update" for m in msgs) == msgs[-1]["chunks"]
    assert rt_threads() == []
    seen["window"].deleteLater()


def test_screenshot_script_renders_the_real_window(tmp_path):
    from rt_tagger.gui.screenshot import render

    path = render(PIANO, tmp_path / "gui.png", size=(1200, 700), realtime=False)
    img = QtGui.QImage(str(path))
    assert (img.width(), img.height()) == (1200, 700)
    assert rt_threads() == []


def test_pyside6_6_12_is_refused_with_one_clear_line(monkeypatch):
    import PySide6

    from rt_tagger.errors import RtTaggerError
    from rt_tagger.gui import qt

    monkeypatch.delenv("PYQTGRAPH_QT_LIB", raising=False)
    assert qt._binding() == "PySide6"  # the pinned version here (< 6.12) is accepted
    monkeypatch.setattr(PySide6, "__version_info__", (6, 12, 0, "", ""))
    monkeypatch.setattr(PySide6, "__version__", "6.12.0")
    with pytest.raises(RtTaggerError, match=r"PySide6 6\.12\.0 leaks .*PySide6-Essentials<6\.12") as e:
        qt._binding()
    assert "\n" not in str(e.value)
