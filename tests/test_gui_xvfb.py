"""The live window on a real X server (Xvfb) through Qt's xcb platform, not offscreen.

CI installs Xvfb and the xcb libraries (``.ci/run``); elsewhere these tests skip with the
reason. The window runs the real pipeline on a real clip, paced live, in a child process
(the test process itself is bound to the offscreen platform); the screen is read back from
the X server (``QScreen.grabWindow(0)``: the pixels Xvfb holds, not a widget render) with
the attention overlay on and off.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rt_tagger.gui_launch import display_problem

pytest.importorskip("pyqtgraph")
pytest.importorskip("PySide6")

DRUMS = str(Path(__file__).parent / "data" / "render_drums_70bpm_12s.flac")

# Runs in the child: the live window on the drum clip for 5 s of audio (at 4 s the warm
# colours filled just 5 % of the panel: a margin too thin on a slow machine), then two
# grabs of the whole X screen (overlay on / off) and the pixel boxes of the panels.
DRIVER = r"""
import json, sys, time
from rt_tagger.gui.qt import QtWidgets
from rt_tagger.gui.session import Session, Settings
from rt_tagger.gui.window import LiveWindow
from rt_tagger.tagger import DEFAULT_MODEL

out = sys.argv[1]
app = QtWidgets.QApplication([])
session = Session.open(Settings(source=sys.argv[2], model=DEFAULT_MODEL, realtime=True))
window = LiveWindow(session)
window.resize(1500, 880)
window.move(0, 0)
session.start()
window.show()

def run(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)

deadline = time.monotonic() + 60
while (window.view.track is None or window.view.track.chunks < 2
       or session.snapshot().t < 5.0) and time.monotonic() < deadline:
    run(0.05)
window.set_paused(True)
run(0.5)

def grab(name):
    app.primaryScreen().grabWindow(0).save(f"{out}/{name}.png")

def screen_box(widget, rect):
    tl = widget.mapToGlobal(rect.topLeft())
    return [tl.x(), tl.y(), tl.x() + rect.width(), tl.y() + rect.height()]

view = window.view
boxes = {name: screen_box(view, view.mapFromScene(item.vb.sceneBoundingRect()).boundingRect())
         for name, item in (("spectrogram", view.spectrogram.plot), ("heat", view.heat.plot))}
grab("on")
window.controls.overlay.setChecked(False)
run(0.5)
grab("off")
info = {"platform": app.platformName(), "boxes": boxes, "chunks": view.track.chunks,
        "t": session.snapshot().t, "errors": window.errors}
window.close()
print(json.dumps(info))
"""


def read_png(path: Path) -> np.ndarray:
    from rt_tagger.gui.qt import QtGui

    img = QtGui.QImage(str(path)).convertToFormat(QtGui.QImage.Format.Format_RGB888)
    assert not img.isNull(), path
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).astype(np.int32)


@pytest.fixture(scope="module")
def xvfb(tmp_path_factory):
    """A private Xvfb display; the environment for a child that uses it through xcb."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Xvfb and Qt's xcb platform are Linux-only")
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (Debian/Ubuntu: apt install xvfb)")
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    for n in range(91, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    log = tmp_path_factory.mktemp("xvfb") / "xvfb.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([exe, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=f)
    deadline = time.monotonic() + 15
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"Xvfb :{n} did not start: {log.read_text()[-500:]}")
        time.sleep(0.05)
    env.update(DISPLAY=f":{n}", QT_QPA_PLATFORM="xcb")
    problem = display_problem(env)
    if problem:  # a real finding on a CI machine: .ci/run installs these
        proc.kill()
        proc.wait()
        pytest.fail(problem)
    yield env
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_live_window_on_xvfb_shows_spectrogram_and_attention(xvfb, tmp_path):
    res = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), DRUMS], env=xvfb,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["platform"] == "xcb" and info["errors"] == []
    assert info["chunks"] >= 2 and info["t"] >= 5.0
    on, off = read_png(tmp_path / "on.png"), read_png(tmp_path / "off.png")
    assert on.shape == (1000, 1600, 3)

    x0, y0, x1, y1 = info["boxes"]["spectrogram"]
    spec_on, spec_off = on[y0 + 2:y1 - 2, x0 + 2:x1 - 2], off[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
    assert spec_off.std() > 20, "spectrogram area is blank"
    # Inferno's warm colours (red clearly above blue) fill much of the spectrogram.
    assert ((spec_off[..., 0] - spec_off[..., 2]) > 60).mean() > 0.05
    # The overlay turns high-attention columns cyan: green and blue up, red down.
    d = spec_on - spec_off
    cyan = (d[..., 2] > 40) & (d[..., 1] > 40) & (d[..., 0] < 0)
    cols = cyan.mean(axis=0)
    assert (cols > 0.5).sum() >= 5, "no column is clearly covered by the cyan overlay"
    assert (cols < 0.01).sum() >= 0.3 * cols.size, "the overlay covers everything"

    # The heat strip (unchanged by the toggle) shows the ramp's bright cyan somewhere.
    hx0, hy0, hx1, hy1 = info["boxes"]["heat"]
    heat = off[hy0 + (hy1 - hy0) // 3:hy1 - 3, hx0 + 2:hx1 - 2]
    assert np.array_equal(heat, on[hy0 + (hy1 - hy0) // 3:hy1 - 3, hx0 + 2:hx1 - 2])
    bright_cyan = (heat[..., 2] > 180) & (heat[..., 1] > 150) & (heat[..., 0] < 120)
    assert bright_cyan.any(axis=0).sum() >= 5


@pytest.mark.slow
def test_cli_gui_runs_on_xvfb_and_ctrl_c_closes_it(xvfb, tmp_path):
    """``rt-tagger --gui`` itself: the preflight lets a working xcb setup through, the window
    runs, Ctrl-C closes it with status 130 and the JSONL file has the updates."""
    out, log = tmp_path / "live.jsonl", tmp_path / "stderr.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "rt_tagger", "--gui", DRUMS, "--realtime",
                                 "--jsonl", str(out)], env=xvfb, stdout=subprocess.DEVNULL,
                                stderr=f)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and '"update"' in out.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = log.read_text()
    assert code == 130, err
    assert "Traceback" not in err and "could not load the Qt platform plugin" not in err
    types = [json.loads(line)["type"] for line in out.read_text().splitlines()]
    assert types[0] == "status" and "update" in types
