"""The PulseAudio server `.ci/start_pulseaudio.sh` starts, as seen from a test."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ENV_FILE = Path("/tmp/rt-tagger-pulse.env")
SKIP_REASON = ("no PulseAudio server (run .ci/start_pulseaudio.sh; needs pulseaudio, "
               "pulseaudio-utils, libasound2-plugins, libportaudio2)")


def pulse_env() -> dict[str, str] | None:
    """The environment a subprocess needs to reach the server, or None if there is none."""
    env = dict(os.environ)
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                k, v = line[len("export "):].split("=", 1)
                env.setdefault(k, v)
    if not shutil.which("pactl") or not shutil.which("paplay"):
        return None
    ok = subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0
    return env if ok else None


# --- A live capture of a clip played into the null sink (tests/test_capture.py, test_loopback.py) --

SINK = "rt_tagger_sink"


def rt_tagger(*args: str, env: dict, python: list[str] | None = None) -> subprocess.Popen:
    """``python -m rt_tagger ARGS`` (or ``python + ARGS``, e.g. ``[python, "-c", CODE]``)
    with text pipes."""
    cmd = [*(python or [sys.executable, "-m", "rt_tagger"]), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dataclass
class Capture:
    """What one ``rt-tagger ... --jsonl - --record WAV`` run produced while a clip played."""

    msgs: list[dict]
    recorded: np.ndarray
    rate: int

    @property
    def summary(self) -> dict:
        return self.msgs[-1]

    @property
    def updates(self) -> list[dict]:
        return [m for m in self.msgs if m["type"] == "update"]


def capture_while_playing(input_args: list[str], clip: Path, rec: Path, env: dict, *,
                          sink: str = SINK, extra_seconds: float = 4.0,
                          python: list[str] | None = None) -> Capture:
    """Starts rt-tagger on ``input_args`` (one chunk per update: horizon 0.01 s), waits until
    its source runs, ``paplay``s ``clip`` into ``sink`` and returns the messages and recording."""
    seconds = sf.info(str(clip)).duration + extra_seconds
    proc = rt_tagger(*input_args, "--hop", "0.5", "--horizon", "0.01", "--duration", str(seconds),
                     "--jsonl", "-", "--record", str(rec), env=env, python=python)
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if '"source_state"' in line and '"running"' in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(90), "capture never reached the running state"
        time.sleep(0.5)
        play = subprocess.run(["paplay", f"--device={sink}", str(clip)], env=env,
                              capture_output=True, timeout=60)
        assert play.returncode == 0, play.stderr
        code = proc.wait(timeout=120)
        reader.join(10)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0, err
    recorded, rate = sf.read(rec, dtype="float32")
    msgs = [json.loads(line) for line in lines]
    assert msgs[-1]["type"] == "summary"
    return Capture(msgs, recorded, rate)


def assert_nothing_lost(summary: dict) -> None:
    """Nothing lost on our side (ring overruns, dropped chunks) or PortAudio's (input overflow)."""
    assert summary["overrun_samples"] == 0
    assert summary["input_overflows"] == 0
    assert summary["dropped_chunks"] == 0


def find_lag(recording: np.ndarray, clip: np.ndarray) -> tuple[int, float]:
    """Lag of clip inside recording by FFT cross-correlation, and the normalised peak."""
    n = 1 << int(np.ceil(np.log2(recording.size + clip.size)))
    xc = np.fft.irfft(np.fft.rfft(recording, n) * np.conj(np.fft.rfft(clip, n)), n)
    lag = int(np.argmax(xc[: recording.size]))
    seg = recording[lag : lag + clip.size]
    ref = clip[: seg.size]
    peak = float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12))
    return lag, peak


def assert_clip_intact(recorded: np.ndarray, clip: np.ndarray) -> int:
    """The whole clip is in the recording at one lag (returned): a lost or repeated block would
    shift the second half against the first."""
    lag, peak = find_lag(recorded, clip)
    assert peak > 0.99, f"clip found with correlation {peak:.4f}"
    half = clip.size // 2
    lag2, peak2 = find_lag(recorded[lag + half - 1600 : lag + clip.size + 1600], clip[half:])
    assert lag2 == 1600 and peak2 > 0.99, f"second half at {lag2 - 1600:+d} samples, {peak2:.4f}"
    return lag


def live_probs(updates: list[dict], tags: list[str]) -> np.ndarray:
    """The live chunk probabilities, (n_updates, n_tags) in ``tags`` order."""
    return np.array([[u["probs"][t] for t in tags] for u in updates])


def require_pulse() -> dict[str, str]:
    """The server's environment, or a skip saying what is missing."""
    import pytest

    env = pulse_env()
    if env is None:
        pytest.skip(SKIP_REASON)
    return env


@contextmanager
def private_sink(env: dict[str, str], name: str, *, description: str | None = None):
    """A 16 kHz mono float null sink of this test alone (others may play into SINK meanwhile),
    unloaded at the end. Yields a ``(load, unload)`` pair to remove and re-add it."""
    args = ["pactl", "load-module", "module-null-sink", f"sink_name={name}", "rate=16000",
            "channels=1", "format=float32le"]
    if description:
        args.append(f"sink_properties=device.description={description}")
    module = [""]

    def load() -> None:
        module[0] = subprocess.run(args, env=env, capture_output=True, text=True,
                                   check=True).stdout.strip()

    def unload() -> None:
        if module[0]:
            subprocess.run(["pactl", "unload-module", module[0]], env=env, check=True)
            module[0] = ""

    load()
    try:
        yield load, unload
    finally:
        unload()
