"""``rt-tagger --loopback``: tag what the computer plays, through a real PulseAudio server.

`.ci/run` starts PulseAudio with the 16 kHz float null sink ``rt_tagger_sink``
(`.ci/start_pulseaudio.sh`). ``paplay`` plays a real music file into that sink while
``rt-tagger --loopback`` captures the sink's monitor (found with ``pactl``, opened through
PortAudio's ``pulse`` device with ``PULSE_SOURCE``) in a separate process. Nothing may be lost,
the file must be in the recording intact, and the live chunk probabilities must equal offline
tagging of the recording (that end-to-end run is marked slow; a quick in-process test opens the
monitor the same way). The macOS and Windows branches cannot run here: their tests fake only
``sys.platform`` (and, once, the absence of the optional package), and say so; the Windows source
class itself runs for real through soundcard's PulseAudio backend when soundcard is installed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from pulse import (SINK, assert_clip_intact, assert_nothing_lost, capture_while_playing,
                   live_probs, private_sink, require_pulse, rt_tagger)
from signals import DATA

CLIP = DATA / "render_piano_monteverdi_12s.flac"  # not periodic: one clear lag
MONITOR = SINK + ".monitor"


@pytest.fixture(scope="module")
def pulse_env():
    return require_pulse()


def _run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    p = rt_tagger(*args, env=dict(os.environ) if env is None else env)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


@pytest.mark.parametrize("args, message", [
    (["--loopback", "--device", "pulse"], "give either --loopback or --device, not both"),
    ([str(CLIP), "--loopback"], "give either a file/URL or --loopback, not both"),
    (["--loopback", str(CLIP)], "give either a file/URL or --loopback, not both"),
    (["--loopback", "http://radio.invalid/stream"], "give either a file/URL or --loopback, not both"),
])
def test_loopback_with_another_input_is_one_line(args, message):
    code, out, err = _run(*args)
    assert code == 2 and out == ""
    assert err == f"rt-tagger: {message}\n"


def test_without_pactl_one_line_names_the_package(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # an empty PATH: no pactl (python is absolute)
    code, out, err = _run("--loopback", env=env)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("rt-tagger: --loopback needs pactl")
    assert "pulseaudio-utils" in err


def test_macos_points_to_a_virtual_device(monkeypatch):
    # Faked platform: macOS cannot exist on this CI machine.
    from rt_tagger.errors import DeviceError
    from rt_tagger.sources.loopback import loopback_source

    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(DeviceError) as exc:
        loopback_source()
    text = str(exc.value)
    assert "\n" not in text and "BlackHole" in text and "--device BlackHole" in text


def test_windows_without_the_extra_names_it(monkeypatch):
    # Faked platform and a faked missing package: Windows cannot exist on this CI machine.
    from rt_tagger.errors import DeviceError
    from rt_tagger.sources.loopback import loopback_source

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "soundcard", None)  # `import soundcard` -> ImportError
    with pytest.raises(DeviceError, match=r"pip install 'rt-tagger\[loopback\]'"):
        loopback_source()


@pytest.mark.audio_device
def test_list_devices_marks_the_sink_monitor(pulse_env):
    code, out, err = _run("--list-devices", env=pulse_env)
    assert code == 0, err
    assert "input devices" in out
    line = next(x for x in out.splitlines() if f" {SINK} " in x)
    assert line.lstrip().startswith("*") and MONITOR in line and "loopback" in line


@pytest.mark.audio_device
def test_unknown_output_lists_the_available_ones(pulse_env):
    code, out, err = _run("--loopback", "no-such-output-xyz", env=pulse_env)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("rt-tagger: no output matches 'no-such-output-xyz' for --loopback; "
                          "available: ") and SINK in err


@pytest.mark.audio_device
def test_named_output_opens_its_monitor(pulse_env, monkeypatch):
    from rt_tagger.sources import open_source

    for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):  # in this process: reach the test server
        monkeypatch.setenv(key, pulse_env[key])
    monkeypatch.setenv("PULSE_SOURCE", "rt_tagger_no_such_source")  # see the test below
    src = open_source("loopback:rt_tagger_s", name="mix")  # a part of the sink's name
    assert src.description == f"loopback {MONITOR} (output {SINK}, 16000 Hz, 1 ch)"
    states = []
    with src:
        ring = src.start(lambda state, detail: states.append(state))
        assert os.environ["PULSE_SOURCE"] == "rt_tagger_no_such_source"  # restored after the open
        assert ring.wait(8000, 10.0), "no audio from the monitor"  # 0.5 s at 16 kHz
        deadline = time.monotonic() + 5
        while src.state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert states == ["running", "stopped"]
    assert ring.overrun_total == 0 and src.callback_overflows == 0


@pytest.mark.audio_device
@pytest.mark.slow
def test_a_vanished_output_is_reopened_when_it_returns(pulse_env, monkeypatch):
    """PulseAudio would move the stream to the default source (here the other sink's monitor)
    when its monitor vanishes; the source must notice, report it and reopen the named one."""
    from rt_tagger.sources.loopback import PulseLoopbackSource

    for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):
        monkeypatch.setenv(key, pulse_env[key])
    sink = f"rt_tagger_lb{os.getpid()}"
    states: list[tuple[str, str]] = []

    def wait_for(state: str, seconds: float, text: str = "") -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if states and states[-1][0] == state and text in states[-1][1]:
                return True
            time.sleep(0.05)
        return False

    with private_sink(pulse_env, sink) as (load, unload):
        src = PulseLoopbackSource(sink, stall_timeout=30.0)  # only the watcher may notice
        with src:
            src.start(lambda state, detail: states.append((state, detail)))
            assert wait_for("running", 10), states
            unload()
            assert wait_for("reconnecting", 10), states  # noticed by the watcher ...
            assert wait_for("reconnecting", 10, f"no output matches {sink!r}"), states  # retried
            load()
            assert wait_for("running", 20), states
        assert states[-2][0] == "running" and f"{sink}.monitor" in states[-2][1]


@pytest.mark.audio_device
@pytest.mark.slow  # 8 s of real-time capture and two model loads: 21-24 s on the loaded 2-core box
def test_loopback_capture_matches_offline_tagging_and_loses_nothing(pulse_env, tmp_path):
    from rt_tagger.tagger import DEFAULT_MODEL, Tagger

    # The server's default source already is this monitor; a bogus PULSE_SOURCE in the
    # environment makes the capture fail unless --loopback itself picks the monitor.
    env = dict(pulse_env, PULSE_SOURCE="rt_tagger_no_such_source")
    clip = sf.read(CLIP, dtype="float32")[0][: 6 * 16000]  # 6 s of real music keep this quick
    played = tmp_path / "played.wav"
    sf.write(played, clip, 16000, subtype="FLOAT")
    cap = capture_while_playing(["--loopback"], played, tmp_path / "captured.wav", env,
                                extra_seconds=2.0)
    status = cap.msgs[0]
    assert status["type"] == "status" and status["model"] == DEFAULT_MODEL
    assert status["input"] == f"loopback {MONITOR} (output {SINK}, 16000 Hz, 1 ch)"
    assert_nothing_lost(cap.summary)
    assert cap.rate == 16000
    lag = assert_clip_intact(cap.recorded, clip)
    # The monitor was opened at its own rate: PulseAudio passes the samples unchanged, all but
    # the very first of the playback (measured: 10 samples read as zeros at paplay's start).
    bad = np.flatnonzero(np.abs(cap.recorded[lag : lag + clip.size] - clip) > 1e-6)
    assert bad.size == 0 or bad.max() < 64, f"{bad.size} samples differ, up to index {bad.max()}"

    # Live chunk probabilities (one chunk per update) equal offline tagging of the recording.
    tg = Tagger(DEFAULT_MODEL, hop=0.5)
    live = live_probs(cap.updates, tg.tags)
    offline = tg.tag_array(np.ascontiguousarray(cap.recorded)).taggram
    assert live.shape[0] >= 8
    np.testing.assert_allclose(live, offline[: live.shape[0]], atol=1e-4)


@pytest.mark.audio_device
@pytest.mark.slow
def test_soundcard_source_pushes_the_played_clip_intact(pulse_env, monkeypatch, tmp_path):
    """The Windows source class, run here through soundcard's PulseAudio backend: the same
    documented calls (get_speaker, all_microphones(include_loopback=True), recorder, record)."""
    for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):  # soundcard connects when imported
        monkeypatch.setenv(key, pulse_env[key])
    pytest.importorskip("soundcard", reason="soundcard not installed (pip install "
                        "'rt-tagger[loopback]'); it is the Windows loopback backend")
    from rt_tagger.sources.loopback import SoundcardLoopbackSource

    clip = sf.read(CLIP, dtype="float32")[0][: 4 * 16000]
    played = tmp_path / "played.wav"
    sf.write(played, clip, 16000, subtype="FLOAT")
    sink = f"rt_tagger_sc{os.getpid()}"  # private: nothing else plays into it
    blocks = []
    with private_sink(pulse_env, sink, description=sink):
        src = SoundcardLoopbackSource(sink, sample_rate=16000, blocksize=160)
        assert src.description == f"loopback of {sink} (soundcard, 16000 Hz, 1 ch)"
        with src:
            ring = src.start()
            assert ring.wait(1600, 10.0), "no audio from the loopback recorder"
            play = subprocess.Popen(["paplay", f"--device={sink}", str(played)], env=pulse_env)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if ring.wait(1600, 0.5):
                    blocks.append(ring.read(1600))
                if play.poll() is not None and len(blocks) * 1600 > clip.size + 16000:
                    break
            assert play.wait(10) == 0
    assert src.state == "stopped" and src.error is None
    assert ring.overrun_total == 0
    assert_clip_intact(np.concatenate(blocks), clip)


@pytest.mark.audio_device
def test_windows_branch_picks_soundcard_and_lists_speakers(pulse_env, monkeypatch):
    # Faked platform (Windows cannot exist here); soundcard itself is real, on PulseAudio.
    for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):
        monkeypatch.setenv(key, pulse_env[key])
    pytest.importorskip("soundcard", reason="soundcard not installed (pip install "
                        "'rt-tagger[loopback]'); it is the Windows loopback backend")
    from rt_tagger.sources.loopback import SoundcardLoopbackSource, format_loopback, loopback_source

    monkeypatch.setattr(sys, "platform", "win32")
    src = loopback_source()  # the default speaker
    assert isinstance(src, SoundcardLoopbackSource) and src.speaker_name == "Null Output"
    assert "       Null Output  (loopback)" in format_loopback().splitlines()
