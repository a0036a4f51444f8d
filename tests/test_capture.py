"""End-to-end live capture through a real PortAudio device: a PulseAudio null sink.

`.ci/run` starts PulseAudio with a 16 kHz float null sink (`.ci/start_pulseaudio.sh`) before
the tests. Here `paplay` plays a real music file into the sink while `rt-tagger --device pulse`
captures its monitor through PortAudio/ALSA, in a separate process (PortAudio enumerates devices
at start-up). We check that no sample was lost (the ring's and PortAudio's own counters, and the
file found intact, at one constant lag, in the recording of what was tagged), and that the live
chunk probabilities equal offline tagging of the same file placed at that lag.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from pulse import SKIP_REASON, pulse_env as find_pulse
from signals import DATA

pytestmark = pytest.mark.audio_device
CLIP = DATA / "render_piano_monteverdi_12s.flac"  # not periodic: one clear lag


@pytest.fixture(scope="module")
def pulse_env():
    env = find_pulse()
    if env is None:
        pytest.skip(SKIP_REASON)
    return env


def rt_tagger(*args: str, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rt_tagger", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_list_devices_shows_pulse(pulse_env):
    p = rt_tagger("--list-devices", env=pulse_env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "pulse" in out and "input devices" in out


def test_missing_device_lists_what_exists(pulse_env):
    p = rt_tagger("--device", "no-such-device-xyz", env=pulse_env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    assert err.startswith("rt-tagger: no input device matches 'no-such-device-xyz'")
    assert "pulse" in err and "Traceback" not in err


def _lag(recording: np.ndarray, clip: np.ndarray) -> tuple[int, float]:
    """Lag of clip inside recording by FFT cross-correlation, and the normalised peak."""
    n = 1 << int(np.ceil(np.log2(recording.size + clip.size)))
    xc = np.fft.irfft(np.fft.rfft(recording, n) * np.conj(np.fft.rfft(clip, n)), n)
    lag = int(np.argmax(xc[: recording.size]))
    seg = recording[lag : lag + clip.size]
    peak = float(np.dot(seg, clip[: seg.size]) / (np.linalg.norm(seg) * np.linalg.norm(clip[: seg.size]) + 1e-12))
    return lag, peak


def test_live_capture_matches_offline_tagging_and_loses_nothing(pulse_env, tmp_path):
    from rt_tagger.tagger import DEFAULT_MODEL, Tagger

    clip, sr = sf.read(CLIP, dtype="float32")
    rec = tmp_path / "captured.wav"
    proc = rt_tagger("--device", "pulse", "--hop", "0.5", "--horizon", "0.01",
                     "--duration", str(clip.size / sr + 4.0), "--jsonl", "-", "--record", str(rec),
                     env=pulse_env)
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if '"source_state"' in line and '"running"' in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert running.wait(90), "capture never reached the running state"
    time.sleep(0.5)
    play = subprocess.run(["paplay", "--device=rt_tagger_sink", str(CLIP)], env=pulse_env,
                          capture_output=True, timeout=60)
    assert play.returncode == 0, play.stderr
    code = proc.wait(timeout=120)
    reader.join(10)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert code == 0, err
    msgs = [json.loads(line) for line in lines]
    summary = msgs[-1]
    assert summary["type"] == "summary"
    # Nothing lost on our side (ring overruns, dropped chunks) or PortAudio's (input overflow).
    assert summary["overrun_samples"] == 0
    assert summary["input_overflows"] == 0
    assert summary["dropped_chunks"] == 0

    recorded, rate = sf.read(rec, dtype="float32")
    assert rate == 16000
    # The whole file is in the recording at one lag: a lost or repeated block would shift the
    # second half against the first.
    lag, peak = _lag(recorded, clip)
    assert peak > 0.99, f"clip found with correlation {peak:.4f}"
    half = clip.size // 2
    lag2, peak2 = _lag(recorded[lag + half - 1600 : lag + clip.size + 1600], clip[half:])
    assert lag2 == 1600 and peak2 > 0.99

    # The live path runs the embedded default, a spec_att model: every update carries its
    # [CLS] attention over the chunk.
    tg = Tagger(DEFAULT_MODEL, hop=0.5)
    assert msgs[0]["type"] == "status" and msgs[0]["model"] == DEFAULT_MODEL
    assert tg.engine.checkpoint.arch == "spec_att"
    updates = [m for m in msgs if m["type"] == "update"]
    assert all(len(u["attention"]) == len(updates[0]["attention"]) > 1 for u in updates)
    # Live chunk probabilities (horizon 0.01 s: each update is one chunk) ...
    live = np.array([[u["probs"][t] for t in tg.tags] for u in updates])
    # ... equal offline tagging of the recording (streaming == batch through a real device) ...
    offline_rec = tg.tag_array(np.ascontiguousarray(recorded)).taggram
    np.testing.assert_allclose(live, offline_rec[: live.shape[0]], atol=1e-4)
    # ... and offline tagging of the original file placed at the same lag, for every chunk that
    # lies inside the music (PulseAudio resamples 16 kHz -> 44.1 kHz -> 16 kHz on the way).
    placed = np.zeros_like(recorded)
    placed[lag : lag + clip.size] = clip[: recorded.size - lag]
    offline_file = tg.tag_array(placed).taggram[: live.shape[0]]
    chunk = tg.chunk_units * 256
    starts = np.array([u["t_start"] for u in updates]) * 16000
    inside = (starts >= lag) & (starts + chunk <= lag + clip.size)
    assert inside.sum() >= 10
    diff = np.abs(live[inside] - offline_file[inside])
    # Tolerance: two resamplers in PulseAudio soften the top mel bands (measured: max ~0.07).
    assert diff.max() < 0.1 and diff.mean() < 0.01, f"max {diff.max():.3f}, mean {diff.mean():.4f}"
    top_live = np.argsort(-live[inside].mean(0))[:3]
    top_off = np.argsort(-offline_file[inside].mean(0))[:3]
    assert top_live[0] == top_off[0] and set(top_live) == set(top_off)
