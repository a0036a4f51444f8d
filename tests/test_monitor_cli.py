"""The monitoring command as a user types it: several --source options or a TOML config, with
JSONL, event log and HTTP outputs; the PulseAudio null-sink device as one of the sources."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from rt_tagger.sinks import validate_message
from signals import MUSIC_CLIPS, SR, load_music
from pulse import pulse_env as _pulse_env


def strings(seconds: float) -> np.ndarray:
    return np.tile(load_music(MUSIC_CLIPS[1]), 2)[: int(seconds * SR)].astype(np.float32)


def run(*args: str, env=None, timeout: float = 120) -> tuple[int, list[dict], str]:
    p = subprocess.run([sys.executable, "-m", "rt_tagger", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    msgs = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    for m in msgs:
        validate_message(m)
    return p.returncode, msgs, p.stderr


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    sf.write(d / "a.wav", strings(4), SR)
    sf.write(d / "b.wav", np.concatenate([strings(1.5), np.zeros(2 * SR, np.float32), strings(1)]), SR)
    return d


def test_two_sources_from_the_command_line(clips, tmp_path):
    log = tmp_path / "events.jsonl"
    code, msgs, err = run("--source", f"a=file:{clips / 'a.wav'}", "--source", f"b=file:{clips / 'b.wav'}",
                          "--silence-seconds", "1", "--hop", "1", "--jsonl", "-", "--event-log", str(log),
                          "--http", "0", "-q")
    assert code == 0, err
    assert "status at http://127.0.0.1:" in err
    assert [m["source"] for m in msgs if m["type"] == "summary"].count("a") == 1
    assert {m["source"] for m in msgs if m["type"] == "summary"} == {"a", "b"}
    (on,) = [m for m in msgs if m["type"] == "event" and m["event"] == "silence_start"]
    assert on["source"] == "b" and 2.5 <= on["t"] <= 3.0  # gap 1.5-3.5 s, level empty by 1.9 s
    logged = [json.loads(x) for x in log.read_text().splitlines()]
    assert {m["type"] for m in logged} == {"status", "event", "summary"}  # no per-chunk updates
    assert any(m["event"] == "silence_end" for m in logged if m["type"] == "event")
    assert all("T" in m["time"] for m in logged)


def test_config_file_and_clean_errors(clips, tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'hop = "chunk"\n[alarms]\nsilence_seconds = 1\n[sources]\n'
                   f'a = "file:{clips / "a.wav"}"\n[sources.b]\ninput = "file:{clips / "b.wav"}"\n'
                   f'realtime = false\n')
    code, msgs, err = run("--config", str(cfg), "--jsonl", "-", "-q")
    assert code == 0, err
    assert msgs[0]["type"] == "status" and msgs[0]["hop"] == msgs[0]["chunk"]
    assert {m["source"] for m in msgs if m["type"] == "summary"} == {"a", "b"}
    for args, text in ((["--config", str(tmp_path / "none.toml")], "no such config file"),
                       (["--source", "a"], "--source must look like NAME=device:DEV"),
                       (["--source", f"a=file:{clips / 'a.wav'}", "--source", f"a=file:{clips / 'b.wav'}"],
                        "source names must be unique"),
                       (["--source", "a=file:/no/such.wav"], "no such file"),
                       (["--source", f"a=file:{clips / 'a.wav'}", "--osc", "x:y"], r"expected \[HOST:\]PORT")):
        code, _, err = run(*args)
        assert code == 2 and err.startswith("rt-tagger: ") and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and __import__("re").search(text, err), err


@pytest.mark.audio_device
def test_pulseaudio_device_next_to_a_file(clips, tmp_path):
    env = _pulse_env()
    if env is None:
        pytest.skip("no PulseAudio server (run .ci/start_pulseaudio.sh; needs pulseaudio, "
                    "pulseaudio-utils, libasound2-plugins, libportaudio2)")
    sf.write(tmp_path / "long.wav", strings(9), SR)
    sf.write(tmp_path / "play.wav", strings(2.5), SR)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rt_tagger", "--source", "studio=device:pulse",
         "--source", f"backup=file:{tmp_path / 'long.wav'}", "--silence-seconds", "1.5",
         "--duration", "7", "--jsonl", "-", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[tuple[float, dict]] = []
    silent = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            m = json.loads(line)
            lines.append((time.perf_counter(), m))
            if m["type"] == "event" and m["event"] == "silence_start" and m["source"] == "studio":
                silent.set()

    th = threading.Thread(target=read, daemon=True)
    th.start()
    assert silent.wait(60), "no silence_start from the idle device"
    play = subprocess.run(["paplay", "--device=rt_tagger_sink", str(tmp_path / "play.wav")], env=env,
                          capture_output=True, timeout=30)
    assert play.returncode == 0, play.stderr
    code = proc.wait(timeout=60)
    th.join(10)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert code == 0, err
    msgs = [m for _, m in lines]
    for m in msgs:
        validate_message(m)
    studio = [m for m in msgs if m["source"] == "studio"]
    assert any(m["type"] == "event" and m["event"] == "silence_end" for m in studio)
    ups = [m for m in studio if m["type"] == "update"]
    loud = [u["loudness"]["momentary"] for u in ups if u["loudness"]["momentary"] is not None]
    assert loud and max(loud) > -30  # the played strings were measured (about -17 LUFS)
    assert any(m["type"] == "update" and m["source"] == "backup" for m in msgs)
    assert not any(m["type"] == "event" and m["event"] == "overrun" for m in msgs)
