"""The rt-tagger command as a user runs it (real subprocesses)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rt_tagger.sinks import validate_message
from signals import DATA, MUSIC_CLIPS

FILE = str(DATA / MUSIC_CLIPS[2])


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rt_tagger", *args], capture_output=True,
                          text=True, timeout=timeout)


def read_jsonl(text: str) -> list[dict]:
    msgs = [json.loads(line) for line in text.splitlines() if line.strip()]
    for m in msgs:
        validate_message(m)
    return msgs


def test_demo_runs_the_main_job_on_the_embedded_default(tmp_path):
    out = tmp_path / "demo.jsonl"
    p = run("demo", "--fast", "--jsonl", str(out), "--min-duration", "0.5")
    assert p.returncode == 0, p.stderr
    assert "summary over" in p.stdout  # the terminal view ...
    assert "| attention " in p.stdout  # ... with the model's attention over each chunk
    msgs = read_jsonl(out.read_text())
    # the embedded default is the shipped musicnn_att student (attention maps in every update)
    from rt_tagger.factory import create_model
    from rt_tagger.tagger import DEFAULT_MODEL

    assert msgs[0]["type"] == "status" and msgs[0]["model"] == DEFAULT_MODEL
    assert create_model(DEFAULT_MODEL).checkpoint.arch == "musicnn_att"
    assert all(len(m["attention"]) > 1 for m in msgs if m["type"] == "update")
    assert msgs[-1]["type"] == "summary" and msgs[-1]["duration"] == pytest.approx(24.0, abs=0.1)
    updates = [m for m in msgs if m["type"] == "update"]
    assert len(updates) == msgs[-1]["chunks"] > 30
    # The clip has three sections (plucked melody, drums, both): the tags must move.
    def at(t):
        u = min(updates, key=lambda m: abs(m["t"] - t))
        return np.array(list(u["probs"].values()))
    assert np.abs(at(7.5) - at(15.5)).max() > 0.1
    assert np.abs(at(15.5) - at(23.5)).max() > 0.1


def test_file_with_jsonl_to_stdout_and_csv(tmp_path):
    table = tmp_path / "taggram.csv"
    p = run(FILE, "--model", "musicnn.mtat", "--hop", "chunk", "--jsonl", "-",
            "--csv", str(table))
    assert p.returncode == 0, p.stderr
    msgs = read_jsonl(p.stdout)  # stdout carries JSON only; the view went to stderr
    assert "summary over 4 chunks" in p.stderr
    with table.open() as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["start", "end", "guitar"] and len(rows[0]) == 52
    assert len(rows) == 1 + msgs[-1]["chunks"] == 5
    gram = np.array([[float(x) for x in r[2:]] for r in rows[1:]])
    song = np.array(list(msgs[-1]["probs"].values()))
    np.testing.assert_allclose(gram.mean(axis=0), song, atol=1e-4)


@pytest.mark.parametrize(
    "args,message",
    [
        (["/no/such/file.mp3"], "rt-tagger: no such file: /no/such/file.mp3"),
        (["--model", "nosuch", FILE], "rt-tagger: unknown model 'nosuch'"),
        (["--hop", "fast", FILE], "rt-tagger: --hop must be seconds"),
        (["--threshold", "2", FILE], "rt-tagger: thresholds must be in (0, 1)"),
        (["--device", "1", FILE], "rt-tagger: give either a file/URL or --device"),
        (["export", "nosuch"], "rt-tagger: unknown model 'nosuch'"),
    ],
)
def test_user_mistakes_end_in_one_clean_line(args, message):
    p = run(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith(message), p.stderr
    assert "Traceback" not in p.stderr


def test_corrupt_file_is_one_clean_line(tmp_path):
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC" + os.urandom(3000))
    p = run(str(bad))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("rt-tagger: ") and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_flushes(tmp_path):
    out = tmp_path / "live.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rt_tagger", FILE, "--realtime", "--jsonl", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline:  # wait until it is really tagging
        if out.exists() and '"update"' in out.read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopping" in err and "Traceback" not in err
    msgs = read_jsonl(out.read_text())
    assert msgs[-1]["type"] == "summary" and msgs[-1]["duration"] < 11.0  # stopped early


def test_the_command_ends_with_atexit_handlers_run_and_its_output_whole():
    """rt_tagger.cli.run (the console script) ends the process with os._exit after main: the
    atexit handlers still run, piped stdout is whole, and the status is main's."""
    code = ("import atexit, sys; atexit.register(lambda: print('atexit ran')); "
            "from rt_tagger.cli import run; sys.argv = ['rt-tagger', *sys.argv[1:]]; run()")
    p = subprocess.run([sys.executable, "-c", code, FILE, "--jsonl", "-", "-q"],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    *jsonl, last = p.stdout.splitlines()
    assert last == "atexit ran"
    msgs = read_jsonl("\n".join(jsonl))
    assert msgs[-1]["type"] == "summary" and sum(m["type"] == "update" for m in msgs) >= 10
    p = subprocess.run([sys.executable, "-c", code, "/no/such/file.wav"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("rt-tagger: ") and "atexit ran" in p.stdout


def test_models_and_help_are_quick():
    p = run("models")
    assert p.returncode == 0
    names = p.stdout.split()
    assert "spec_att" in names and "musicnn.mtat" in names
    t = time.perf_counter()
    p = run("--help")
    assert p.returncode == 0 and "--device" in p.stdout and "--list-devices" in p.stdout
    assert time.perf_counter() - t < 20  # heavy backends load lazily


@pytest.mark.slow
def test_explain_writes_the_figure(tmp_path):
    out = tmp_path / "fig.png"
    p = run("explain", str(DATA / MUSIC_CLIPS[0]), str(DATA / MUSIC_CLIPS[2]), "--concat",
            "--tag", "piano", "--tag", "drums", "-o", str(out))
    assert p.returncode == 0, p.stderr
    # the default (musicnn_att) has attention: the paper's attention and contribution rows
    assert "(spectrogram, attention, contribution: piano, contribution: drums)" in p.stdout
    # a model without attention gets its probability over time instead
    p = run("explain", str(DATA / MUSIC_CLIPS[0]), "--model", "musicnn.mtat", "--tag", "piano",
            "-o", str(tmp_path / "cnn.png"))
    assert p.returncode == 0, p.stderr
    assert "probability: piano" in p.stdout and "attention" not in p.stdout
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[0] > 200 and img.shape[1] > 600 and img[..., :3].std() > 0.05
    bad = run("explain", str(DATA / MUSIC_CLIPS[0]), "--tag", "kazoo", "-o", str(out))
    assert bad.returncode == 2 and bad.stderr.startswith("rt-tagger: unknown tag 'kazoo'")
