"""``rt-tagger --gui --device NAME`` on a real PortAudio device (PulseAudio null sink).

The window runs offscreen in a subprocess; the clip is played into the sink, the live view
tags it, Ctrl-C closes the window and stops capture (exit status 130, JSONL complete).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pulse import pulse_env

pytestmark = pytest.mark.audio_device
DATA = Path(__file__).parent / "data"
CLIP = DATA / "render_drums_70bpm_12s.flac"


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_gui_on_a_live_device_tags_what_is_played(tmp_path):
    pytest.importorskip("pyqtgraph")
    env = pulse_env()
    if env is None:
        pytest.skip("no PulseAudio server (run .ci/start_pulseaudio.sh)")
    env["QT_QPA_PLATFORM"] = "offscreen"
    probe = subprocess.run([sys.executable, "-c", "import rt_tagger.gui_launch"], env=env,
                           capture_output=True)
    if probe.returncode != 0:  # subprocesses import the installed package (see conftest)
        pytest.skip("the installed rt_tagger predates the GUI: reinstall it (pip install .)")
    out = tmp_path / "live.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rt_tagger", "--gui", "--device", "pulse",
                             "--jsonl", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        running = wait_for(lambda: any(m.get("state") == "running" for m in read_jsonl(out)), 90)
        assert running, "capture never reached the running state"
        play = subprocess.run(["paplay", "--device=rt_tagger_sink", str(CLIP)], env=env,
                              capture_output=True, timeout=60)
        assert play.returncode == 0, play.stderr
        wait_for(lambda: sum(m["type"] == "update" for m in read_jsonl(out)) >= 26, 20)
        proc.send_signal(signal.SIGINT)  # the window closes, capture stops
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    msgs = read_jsonl(out)
    assert msgs[0]["type"] == "status" and msgs[0]["input"].startswith("device")
    updates = [m for m in msgs if m["type"] == "update"]
    assert len(updates) >= 20
    assert any(m["top"][0][0] == "drums" for m in updates), "the drums were never the top tag"
