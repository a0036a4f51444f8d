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

from rt_tagger.errors import ConfigError
from rt_tagger.monitor.config import load_config
from rt_tagger.monitor.spec import SourceSpec
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


@pytest.mark.slow
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


@pytest.mark.slow
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
@pytest.mark.slow
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


# ---- issue #16: restart_delay and the event-log rotation are validated and honoured --
@pytest.mark.parametrize("line, text", [
    ("restart_delay = -1", "restart_delay must be between 0 and 86400"),
    ("restart_delay = nan", "restart_delay must be between"),
    ("restart_delay = true", "restart_delay must not be true/false"),
    ('restart_delay = "2"', "restart_delay has the wrong type"),
    ("event_log_max_bytes = 100", "event_log_max_bytes must be between 256"),
    ("event_log_max_bytes = 1.5e3", "event_log_max_bytes has the wrong type"),
    ("event_log_backups = -1", "event_log_backups must be between 0 and 1000"),
    ("event_log_backups = 5000", "event_log_backups must be between 0 and 1000"),
    ('[sources]\n"a\\n" = "file:x.wav"', "source name 'a\\n' must be"),
])
def test_monitor_options_are_validated(tmp_path, line, text):
    cfg = tmp_path / "m.toml"
    cfg.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_source_name_may_not_end_in_a_newline():
    with pytest.raises(ConfigError, match="must be 1-64"):
        SourceSpec("studio\n", "file:x.wav")
    assert SourceSpec("studio-2.b_", "file:x.wav").name == "studio-2.b_"


def test_config_only_options_reach_the_monitor(tmp_path):
    from rt_tagger.cli import build_parser
    from rt_tagger.monitor.cli import settings

    cfg = tmp_path / "m.toml"
    cfg.write_text('restart_delay = 2\nevent_log_max_bytes = 4096\nevent_log_backups = 2\n'
                   '[sources]\na = "file:x.wav"\n')
    parser = build_parser()
    _, o = settings(parser.parse_args(["--config", str(cfg)]))
    assert (o.restart_delay, o.event_log_max_bytes, o.event_log_backups) == (2, 4096, 2)


def test_event_log_rotates_at_max_bytes_keeping_n_backups(clips, tmp_path):
    log = tmp_path / "events.jsonl"
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'event_log = "{log}"\nevent_log_max_bytes = 300\nevent_log_backups = 2\n'
                   f'hop = 1\nquiet = true\n[sources.a]\ninput = "file:{clips / "a.wav"}"\n'
                   f'realtime = false\n[sources.b]\ninput = "file:{clips / "b.wav"}"\n'
                   f'realtime = false\n')
    p = subprocess.run([sys.executable, "-m", "rt_tagger", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr
    names = sorted(x.name for x in tmp_path.iterdir() if x.name.startswith("events"))
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"], names
    for name in names:  # each file: whole JSON lines, over max_bytes only by a single line
        lines = (tmp_path / name).read_text().splitlines()
        assert lines and all(json.loads(x)["type"] in ("status", "event", "summary") for x in lines)
        assert len(lines) == 1 or (tmp_path / name).stat().st_size <= 300
