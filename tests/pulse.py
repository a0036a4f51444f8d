"""The PulseAudio server `.ci/start_pulseaudio.sh` starts, as seen from a test."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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
