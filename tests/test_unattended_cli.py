"""The command under unattended use (issue #16): bad values and paths end in one line before
any model loads or audio is read (items 7, 9), ``--duration`` stops where it says (item 9), and
SIGTERM / SIGHUP drain like the first Ctrl-C in every run mode (item 4). Real subprocesses."""
from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from rt_tagger.sinks import validate_message
from signals import DATA, MUSIC_CLIPS

FILE = str(DATA / MUSIC_CLIPS[2])  # 12 s at 16 kHz
NO_MODEL = "/no/such/model.onnx"  # a path error must come before this one


def run(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rt_tagger", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


def one_line(p: subprocess.CompletedProcess, fragment: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rt-tagger: ") and "Traceback" not in p.stderr, p.stderr
    assert fragment in lines[0], lines[0]


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n")  # whole lines only
    msgs = [json.loads(line) for line in text.splitlines()]
    for m in msgs:
        validate_message(m)
    return msgs


@pytest.fixture
def fifo(tmp_path):
    """An input nobody writes to: reading a single sample of it would block the run."""
    path = tmp_path / "input.fifo"
    os.mkfifo(path)
    return str(path)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may create files in: a read-only tmpfs (root), else mode 0555."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(d)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"root, but cannot mount a read-only tmpfs: {p.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


# ---- item 9: values ---------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value,fragment", [
    ("--threads", "100000", "--threads must be an integer from 1 to"),
    ("--threads", "0", "--threads must be an integer from 1 to"),
    ("--hop", "inf", "--hop must be seconds"),
    ("--hop", "nan", "--hop must be seconds"),
    ("--hop", "0", "--hop must be seconds"),
    ("--hop", "-1", "--hop must be seconds"),
    ("--horizon", "inf", "--horizon must be a finite number of seconds > 0"),
    ("--horizon", "nan", "--horizon must be a finite number of seconds > 0"),
    ("--horizon", "0", "--horizon must be a finite number of seconds > 0"),
    ("--min-duration", "nan", "--min-duration must be a finite number of seconds >= 0"),
    ("--min-duration", "-1", "--min-duration must be a finite number of seconds >= 0"),
    ("--duration", "-5", "--duration must be a finite number of seconds > 0"),
    ("--duration", "0", "--duration must be a finite number of seconds > 0"),
    ("--duration", "nan", "--duration must be a finite number of seconds > 0"),
    ("--topk", "0", "--topk must be an integer >= 1"),
    ("--topk", "-1", "--topk must be an integer >= 1"),
    ("--threshold", "nan", "thresholds must be in (0, 1)"),
    ("--threshold", "2", "thresholds must be in (0, 1)"),
])
def test_bad_values_are_one_line_before_anything_loads(flag, value, fragment, fifo):
    one_line(run(fifo, "--model", NO_MODEL, f"{flag}={value}", timeout=30), fragment)


def test_bad_values_in_a_monitor_config_too(tmp_path, fifo):
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'model = "{NO_MODEL}"\nhorizon = inf\n[sources]\na = "file:{fifo}"\n')
    one_line(run("--config", str(cfg), timeout=30), "--horizon must be a finite number")


# ---- item 7: paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["csv-dir", "csv-read-only", "jsonl-dir", "record-missing-dir",
                                  "event-log-missing-dir", "config-dir", "config-not-utf8"])
def test_bad_paths_are_one_line_before_anything_loads(case, tmp_path, fifo, request):
    if case == "csv-dir":
        args, fragment = ["--csv", str(tmp_path)], "is a directory"
    elif case == "csv-read-only":
        ro = request.getfixturevalue("read_only_dir")
        args, fragment = ["--csv", str(ro / "t.csv")], "cannot write"
    elif case == "jsonl-dir":
        args, fragment = ["--jsonl", str(tmp_path)], "is a directory"
    elif case == "record-missing-dir":
        args, fragment = ["--record", "/missing/x.wav"], "directory /missing does not exist"
    elif case == "event-log-missing-dir":
        args, fragment = ["--event-log", "/missing/events.jsonl"], "directory /missing does not exist"
    elif case == "config-dir":
        args, fragment = ["--config", str(tmp_path)], "is a directory"
    else:
        bad = tmp_path / "latin1.toml"
        bad.write_bytes('model = "musicnn.mtat"  # caf\u00e9\n'.encode("latin-1"))
        args, fragment = ["--config", str(bad)], "not UTF-8"
    p = run(fifo, "--model", NO_MODEL, *args, timeout=30)
    one_line(p, fragment)
    assert NO_MODEL not in p.stderr


@pytest.mark.parametrize("mode", ["single", "monitor"])
def test_a_failed_run_leaves_no_empty_jsonl_behind(tmp_path, mode):
    """The input fails after the model loaded (a missing file; a stream that refuses)."""
    out = tmp_path / "new.jsonl"
    if mode == "single":
        p = run(str(tmp_path / "missing.wav"), "--jsonl", str(out))
        one_line(p, "missing.wav")
    else:
        p = run("--source", "a=url:http://127.0.0.1:9/x.mp3", "--jsonl", str(out), "-q")
        one_line(p, "Connection refused")
    assert not out.exists()


# ---- item 9: --duration on an unpaced file ----------------------------------------------------
def test_duration_stops_an_unpaced_file_where_it_says(tmp_path):
    table = tmp_path / "t.csv"
    p = run(FILE, "--duration", "5", "--jsonl", "-", "-q", "--csv", str(table))
    assert p.returncode == 0, p.stderr
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    status, summary = msgs[0], msgs[-1]
    assert summary["type"] == "summary"
    hop = status["hop"]
    assert 5.0 - hop <= summary["duration"] <= 5.0 + hop  # not the whole 12 s file
    assert summary["samples_in"] <= (5.0 + hop) * status["input_rate"]
    with table.open() as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == summary["chunks"] and max(float(r[1]) for r in rows) <= 5.0 + hop


# ---- item 4: signals --------------------------------------------------------------------------
def start(args, out, *, sigint_ignored: bool = False, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rt_tagger", *args]
    if sigint_ignored:  # as a script's `cmd &` starts it: SIGINT ignored, inherited through exec
        cmd = ["sh", "-c", "trap '' INT; exec " + " ".join(shlex.quote(a) for a in cmd)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:  # until it is really tagging
        if out.exists() and '"update"' in out.read_text():
            return proc
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"never started tagging: {proc.communicate()[1]}")


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
@pytest.mark.slow
def test_sigterm_and_sighup_drain_like_ctrl_c(tmp_path, sig, status):
    out, table = tmp_path / "live.jsonl", tmp_path / "t.csv"
    proc = start([FILE, "--realtime", "--jsonl", str(out), "--csv", str(table), "-q"], out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "stopping" in err and "Traceback" not in err
    msgs = read_jsonl(out)
    assert msgs[-1]["type"] == "summary" and msgs[-1]["duration"] < 11.0  # stopped early, drained
    with table.open() as f:
        assert len(list(csv.reader(f))) == 1 + msgs[-1]["chunks"]


@pytest.mark.slow
def test_monitor_sighup_writes_the_event_log_summary(tmp_path):
    log, out = tmp_path / "events.jsonl", tmp_path / "all.jsonl"
    proc = start(["--source", f"a=file:{FILE}", "--event-log", str(log), "--jsonl", str(out), "-q"], out)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 129 and "Traceback" not in err, err
    assert read_jsonl(log)[-1]["type"] == "summary" and read_jsonl(out)[-1]["type"] == "summary"


@pytest.mark.slow
def test_sigint_ignored_still_stops_cleanly_on_sigterm(tmp_path):
    """``rt-tagger ... &`` from a script starts with SIGINT ignored: it stays ignored."""
    out = tmp_path / "bg.jsonl"
    proc = start([FILE, "--realtime", "--jsonl", str(out), "-q"], out, sigint_ignored=True)
    proc.send_signal(signal.SIGINT)
    n = len(read_jsonl(out))
    time.sleep(1.5)
    assert proc.poll() is None and len(read_jsonl(out)) > n  # still tagging
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert read_jsonl(out)[-1]["type"] == "summary"


@pytest.mark.slow
def test_a_second_signal_aborts(tmp_path):
    out = tmp_path / "x.jsonl"
    proc = start([FILE, "--realtime", "--jsonl", str(out), "-q"], out)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    read_jsonl(out)  # whatever was written is whole lines


@pytest.mark.slow
def test_gui_sigterm_closes_the_window_and_flushes(tmp_path):
    pytest.importorskip("PySide6")
    out = tmp_path / "gui.jsonl"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = start([FILE, "--realtime", "--gui", "--jsonl", str(out)], out, env=env)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert read_jsonl(out)[0]["type"] == "status"


def test_monitor_duration_stops_an_unpaced_source_at_s(tmp_path):
    """--duration in the monitor with a source read as fast as it decodes (realtime = false):
    no audio beyond S is read, so the summary covers S, not the buffered rest of the file."""
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[sources.a]\ninput = "file:{FILE}"\nrealtime = false\n')
    p = run("--config", str(cfg), "--duration", "5", "--jsonl", "-", "-q")
    assert p.returncode == 0, p.stderr
    summary = [json.loads(line) for line in p.stdout.splitlines() if '"summary"' in line]
    assert len(summary) == 1 and 4.5 <= summary[0]["duration"] <= 5.0 + 0.5
