"""End-to-end live capture through a real PortAudio device: a PulseAudio null sink.

`.ci/run` starts PulseAudio with a 16 kHz float null sink (`.ci/start_pulseaudio.sh`) before
the tests. Here `paplay` plays a real music file into the sink while `rt-tagger --device pulse`
captures its monitor through PortAudio/ALSA, in a separate process (PortAudio enumerates devices
at start-up). We check that no sample was lost (the ring's and PortAudio's own counters, and the
file found intact, at one constant lag, in the recording of what was tagged), and that the live
chunk probabilities equal offline tagging of the same file placed at that lag.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from pulse import (assert_clip_intact, assert_nothing_lost, capture_while_playing, live_probs,
                   require_pulse, rt_tagger)
from signals import DATA

pytestmark = pytest.mark.audio_device
CLIP = DATA / "render_piano_monteverdi_12s.flac"  # not periodic: one clear lag


@pytest.fixture(scope="module")
def pulse_env():
    return require_pulse()


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


@pytest.mark.slow
def test_live_capture_matches_offline_tagging_and_loses_nothing(pulse_env, tmp_path):
    from rt_tagger.tagger import DEFAULT_MODEL, Tagger

    clip = sf.read(CLIP, dtype="float32")[0]
    cap = capture_while_playing(["--device", "pulse"], CLIP, tmp_path / "captured.wav", pulse_env)
    msgs, recorded = cap.msgs, cap.recorded
    assert_nothing_lost(cap.summary)
    assert cap.rate == 16000
    lag = assert_clip_intact(recorded, clip)

    # The live path runs the embedded default, a musicnn_att model: every update carries its
    # [CLS] attention over the chunk.
    tg = Tagger(DEFAULT_MODEL, hop=0.5)
    assert msgs[0]["type"] == "status" and msgs[0]["model"] == DEFAULT_MODEL
    assert tg.engine.checkpoint.arch == "musicnn_att"
    updates = cap.updates
    assert all(len(u["attention"]) == len(updates[0]["attention"]) > 1 for u in updates)
    # Live chunk probabilities (horizon 0.01 s: each update is one chunk) ...
    live = live_probs(updates, tg.tags)
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
    # Same leading tag and at least two of the top 3 (the 3rd can be a near tie that the
    # resamplers' softening reorders).
    top_live = np.argsort(-live[inside].mean(0))[:3]
    top_off = np.argsort(-offline_file[inside].mean(0))[:3]
    assert top_live[0] == top_off[0] and len(set(top_live) & set(top_off)) >= 2


def test_one_lost_device_stream_does_not_interrupt_another(pulse_env, monkeypatch):
    """Two device sources in one process; the first one's stream dies (as when its device goes
    away). It reconnects by reopening its own stream; PortAudio is not re-initialised (which
    would close the second one's stream), and the second keeps delivering throughout."""
    from rt_tagger.sources.device import DeviceSource

    for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):
        monkeypatch.setenv(key, pulse_env[key])
    states = {"a": [], "b": []}
    a, b = DeviceSource("pulse", name="a"), DeviceSource("pulse", name="b")

    def wait(name: str, state: str, seconds: float, after: int = 0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if state in states[name][after:]:
                return True
            time.sleep(0.02)
        return False

    with a, b:
        a.start(lambda s, d: states["a"].append(s))
        b.start(lambda s, d: states["b"].append(s))
        assert wait("a", "running", 10) and wait("b", "running", 10), states
        mark = len(states["a"])
        b_calls, gaps, last = b.callbacks, [], time.monotonic()
        a._stream.abort()  # a's stream is gone: its finished callback marks it lost
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "running" not in states["a"][mark:]:
            time.sleep(0.05)
            if b.callbacks != b_calls:
                b_calls, now = b.callbacks, time.monotonic()
                gaps.append(now - last)
                last = now
        assert "reconnecting" in states["a"][mark:] and "running" in states["a"][mark:], states
        assert a.rescans == 0 and b.rescans == 0
        assert states["b"] == ["starting", "running"] or states["b"] == ["running"], states
        assert gaps and max(gaps) < 0.5, f"b stalled for {max(gaps):.2f} s while a reconnected"


def test_a_device_rescan_works_on_the_installed_sounddevice(pulse_env, monkeypatch):
    """sounddevice has no public re-scan; ``rescan_devices`` uses its private re-initialisation.
    On the installed sounddevice it is there and works: PortAudio is initialised as often as
    before (its exit handler terminates it once), lists the devices again, and a device source
    opens and delivers audio afterwards."""
    import sounddevice as sd

    from rt_tagger.sources.device import DeviceSource, input_devices, rescan_devices

    for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):
        monkeypatch.setenv(key, pulse_env[key])
    level = sd._initialized
    assert rescan_devices()
    assert sd._initialized == level
    assert "pulse" in [d["name"] for d in input_devices()]
    states = []
    with DeviceSource("pulse", name="rescanned") as source:
        source.start(lambda s, d: states.append(s))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "running" not in states:
            time.sleep(0.02)
        assert "running" in states and source.callbacks > 0, states


def test_without_a_device_rescan_a_reconnect_looks_the_device_up_by_name(monkeypatch):
    """Where sounddevice lacks the private calls, ``rescan_devices`` does nothing and says so,
    and a reconnect that would re-scan finds its device by name in the list it has."""
    import types

    import rt_tagger.sources.device as dev

    devices = [{"index": 4, "name": "USB Audio CODEC", "channels": 2, "sample_rate": 48000}]
    monkeypatch.setattr(dev, "_sd", lambda: types.SimpleNamespace())
    monkeypatch.setattr(dev, "input_devices", lambda: devices)
    assert dev.rescan_devices() is False
    source = dev.DeviceSource("usb")
    opened = []
    monkeypatch.setattr(source, "_open", lambda: opened.append(source.device_index))
    source._reopen(rescan=True)
    assert opened == [4] and source.rescans == 0


def test_an_ambiguous_device_name_is_one_line_listing_the_matches(monkeypatch):
    """Two devices matching one substring: never take the first silently. The device list is
    substituted here (a CI machine has no two USB interfaces); the check itself is the real one."""
    import rt_tagger.sources.device as dev

    devices = [{"index": 3, "name": "USB Audio CODEC A", "channels": 2, "sample_rate": 48000},
               {"index": 7, "name": "USB Audio CODEC B", "channels": 2, "sample_rate": 44100},
               {"index": 9, "name": "pulse", "channels": 32, "sample_rate": 44100}]
    monkeypatch.setattr(dev, "input_devices", lambda: devices)
    with pytest.raises(dev.DeviceError) as err:
        dev.resolve_device("usb")
    text = str(err.value)
    assert "\n" not in text and "matches 2 input devices" in text
    assert "3: USB Audio CODEC A" in text and "7: USB Audio CODEC B" in text
    assert dev.resolve_device("codec b")["index"] == 7 and dev.resolve_device("9")["name"] == "pulse"
