"""Every option on every path (issue #13): one run loop serves ``rt-tagger FILE``, one file
with monitoring outputs, a live ``--device`` (the PulseAudio server of .ci/start_pulseaudio.sh)
and several ``--source``; each option is honoured there (its effect is checked) or refused in
one ``rt-tagger:`` line before anything is created. Real subprocesses."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import soundfile as sf

from rt_tagger.sinks import validate_message
from pulse import SKIP_REASON, pulse_env
from signals import DATA, MUSIC_CLIPS

A, B = str(DATA / MUSIC_CLIPS[0]), str(DATA / MUSIC_CLIPS[2])
MODES = {
    "file": [A],
    "file+http": [A, "--http", "0"],  # monitoring outputs: the run used to go another way
    "sources": ["--source", f"a=file:{A}", "--source", f"b=file:{B}"],
    "device": ["--device", "pulse"],  # a live input: ends by --duration (or a signal)
}
ENV: dict = {}


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    if "--device" in args and "--duration" not in args:
        args = (*args, "--duration", "12")
    return subprocess.run([sys.executable, "-m", "rt_tagger", *args, "--threads", "1", "-q",
                           "--hop", "1"], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env=ENV.get("env"))


def refused(p: subprocess.CompletedProcess, flag: str, tmp_path) -> None:
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("rt-tagger: ") and flag in p.stderr
    assert not any(tmp_path.iterdir())  # nothing created, no audio read


def jsonl(path) -> list[dict]:
    msgs = [json.loads(x) for x in path.read_text().splitlines()]
    for m in msgs:
        validate_message(m)
    return msgs




@pytest.mark.slow
@pytest.mark.parametrize("mode", [pytest.param(m, marks=pytest.mark.audio_device) if m == "device"
                                  else m for m in MODES])
@pytest.mark.parametrize("option", ["--jsonl", "--csv", "--record", "--event-log", "--duration",
                                    "--config", "--osc", "--gui"])
def test_option_is_honoured_or_refused_in_one_line(tmp_path, mode, option):
    if mode == "device":
        env = pulse_env()
        if env is None:
            pytest.skip(SKIP_REASON)
        ENV["env"] = env
    else:
        ENV.pop("env", None)
    several = mode == "sources"
    base = list(MODES[mode])
    if several:  # read the files as fast as they decode
        cfg = tmp_path.parent / f"{tmp_path.name}-fast.toml"
        cfg.write_text(f'[sources.a]\ninput = "file:{A}"\nrealtime = false\n'
                       f'[sources.b]\ninput = "file:{B}"\nrealtime = false\n')
        base = ["--config", str(cfg)]
    out = tmp_path / "out.jsonl"
    if option == "--jsonl":
        p = run(tmp_path, *base, "--jsonl", str(out))
        assert p.returncode == 0, p.stderr
        msgs = jsonl(out)
        assert {m["source"] for m in msgs if m["type"] == "summary"} == ({"a", "b"} if several else {"main"})
        if mode == "device":
            assert "device" in msgs[0]["input"] and any(m["type"] == "update" for m in msgs)
    elif option in ("--csv", "--record"):
        target = tmp_path / ("t.csv" if option == "--csv" else "r.wav")
        p = run(tmp_path, *base, option, str(target))
        if several:
            return refused(p, option, tmp_path)
        assert p.returncode == 0, p.stderr
        if option == "--csv":
            assert len(target.read_text().splitlines()) > 5  # header + one row per chunk
        else:
            assert sf.info(str(target)).duration > 10  # the 12 s clip (12 s of the device), as tagged
    elif option == "--event-log":
        log = tmp_path / "events.jsonl"
        p = run(tmp_path, *base, "--event-log", str(log))
        assert p.returncode == 0, p.stderr
        assert {m["type"] for m in jsonl(log)} <= {"status", "event", "summary"}
        assert any(m["type"] == "summary" for m in jsonl(log))
    elif option == "--duration":
        p = run(tmp_path, *base, "--duration", "4", "--jsonl", str(out))
        assert p.returncode == 0, p.stderr
        msgs = jsonl(out)
        for m in msgs:
            if m["type"] == "summary":
                assert 3.5 <= m["duration"] <= 4.0 + 1e-3, m  # stops at S, not the buffered rest
            if m["type"] == "update":
                assert m["t"] <= 4.0 + 0.02  # the last frame (centred window) ends there
    elif option == "--config":
        cfg = tmp_path.parent / f"{tmp_path.name}.toml"
        cfg.write_text("topk = 2\nhop = 3\n")  # and --hop 1 on the command line wins
        args = base if several else [*base, "--config", str(cfg)]
        if several:  # the sources' file: add the stream keys to it
            text = base[1]
            with open(text) as f:
                body = f.read()
            with open(text, "w") as f:
                f.write("topk = 2\nhop = 3\n" + body)
        p = run(tmp_path, *args, "--jsonl", str(out))
        assert p.returncode == 0, p.stderr
        msgs = jsonl(out)
        assert all(m["hop"] == pytest.approx(1.0, abs=0.02) for m in msgs if m["type"] == "status")
        assert all(len(m["top"]) == 2 for m in msgs if m["type"] == "update")
    elif option == "--osc":
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
            rx.bind(("127.0.0.1", 0))
            rx.settimeout(0.5)
            p = run(tmp_path, *base, "--osc", f"127.0.0.1:{rx.getsockname()[1]}")
            assert p.returncode == 0, p.stderr
            assert rx.recv(65536)  # tags arrived as OSC datagrams
    elif option == "--gui":
        import os

        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        if mode == "file+http":
            p = subprocess.run([sys.executable, "-m", "rt_tagger", *base, "--gui"], capture_output=True,
                               text=True, timeout=60, cwd=tmp_path, env=env)
            return refused(p, "--http", tmp_path)
        pytest.skip("the windows themselves: tests/test_gui*.py (one behaviour: tests/test_gui_multi.py)")


def test_an_explicit_flag_equal_to_its_default_wins_over_the_file(tmp_path):
    """--topk 5 (the default) given on the command line beats topk = 2 in the file."""
    from rt_tagger.cli import build_parser
    from rt_tagger.monitor.cli import settings

    cfg = tmp_path / "m.toml"
    cfg.write_text(f'topk = 2\naggregation = "max"\nhop = "chunk"\n[sources]\na = "file:{A}"\n')
    parser = build_parser()
    _, o = settings(parser.parse_args(["--config", str(cfg), "--topk", "5", "--hop", "0.5"]))
    assert (o.config.topk, o.config.hop, o.config.aggregation) == (5, 0.5, "max")
    _, o = settings(parser.parse_args(["--config", str(cfg)]))
    assert (o.config.topk, o.config.hop) == (2, "chunk")


def test_stream_config_checks_once_and_names_the_flag(tmp_path):
    from rt_tagger.config import StreamConfig
    from rt_tagger.errors import ConfigError

    with pytest.raises(ConfigError, match="--hop must be seconds"):
        StreamConfig(hop="fast")
    with pytest.raises(ConfigError, match="--inference-workers"):
        StreamConfig().replace(workers=0)
    bad = tmp_path / "bad.toml"
    bad.write_text("horizon = -1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: --horizon must be"):
        StreamConfig.from_toml(bad)
    assert StreamConfig.from_toml({"silence_gate": "off"}).silence_gate is None


def test_configs_name_every_unknown_key_in_one_error():
    """The stream settings, the log-mel parameters and the training options share one check
    (``rt_tagger.config.reject_unknown``): every unknown key, sorted, in one line."""
    from rt_tagger.config import StreamConfig
    from rt_tagger.errors import ConfigError
    from rt_tagger.features import MUSICNN, LogMelConfig
    from rt_tagger.training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"^unknown stream setting\(s\): hopp, top_k$"):
        StreamConfig().replace(top_k=3, hopp=1.0)
    with pytest.raises(ConfigError, match=r"^unknown log-mel parameter\(s\): mels$"):
        LogMelConfig.from_dict({**MUSICNN.to_dict(), "mels": 64})
    with pytest.raises(ConfigError, match=r"^unknown training option\(s\): lr$"):
        TrainConfig.from_dict({"data": "x", "lr": 0.1})
    assert LogMelConfig.from_dict(MUSICNN.to_dict()) == MUSICNN
    train = TrainConfig(data="x", drop_epochs=[5, 9])
    assert TrainConfig.from_dict(train.to_dict()) == train


def test_a_failed_run_leaves_no_empty_jsonl_file(tmp_path):
    """A run that fails after the model loaded (the device does not exist) leaves no FILE."""
    out = tmp_path / "out.jsonl"
    p = subprocess.run([sys.executable, "-m", "rt_tagger", "--device", "no-such-device-xyz",
                        "--jsonl", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("rt-tagger: "), p.stderr
    assert not out.exists()
