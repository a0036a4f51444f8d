"""A fresh virtual environment with the bare package (no extras) runs the main job.

This is what a user gets from ``pip install torch==X rt-tagger`` (here: ``pip install SRC``,
the checkout's tracked and new files copied, so the build never touches the developer's own
``build/``). It installs torch at the version this test runs under (first, as the README says,
so pip keeps the CPU build), then the package, building the native extension. It then runs the
demo as fast as possible and tags a file, and checks that each optional part names its extra
for real (those packages are absent from this environment, not simulated).

Slow: minutes (pip, the C++ build); `pytest -m slow tests/test_install_bare.py`. Needs pip to
reach the packages (an index or local wheels, as pip is configured) and a C++ compiler.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

from signals import DATA, MUSIC_CLIPS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FILE = str(DATA / MUSIC_CLIPS[2])
EXTRAS = ("matplotlib", "pythonosc", "PySide6", "pyqtgraph", "torch_tensorrt", "pytest")


def _source_copy(dest: Path) -> Path:
    """The checkout's tracked and untracked-but-not-ignored files, tests and docs left out."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files make up the source")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if name.startswith(("tests/", "bench/", "docs/", ".ci/")) or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """``(env, bin directory)`` of a fresh venv with torch and the bare package installed."""
    base = tmp_path_factory.mktemp("bare")
    src = _source_copy(base / "src")
    venv.create(base / "venv", with_pip=True, clear=True)
    bindir = base / "venv" / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
               RT_TAGGER_CACHE_DIR=str(base / "cache"), PYTHONNOUSERSITE="1")
    pip = [str(bindir / "python"), "-m", "pip", "install", "-q"]
    for args in (["torch==" + torch.__version__.split("+")[0]], [str(src)]):
        p = subprocess.run(pip + args, env=env, capture_output=True, text=True, timeout=1800)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return env, bindir


def test_no_extras_were_installed(bare):
    env, bindir = bare
    code = ("import importlib.util as u, sys; "
            f"print([m for m in {EXTRAS!r} if u.find_spec(m)])")
    p = subprocess.run([str(bindir / "python"), "-c", code], env=env, capture_output=True,
                       text=True, timeout=120, cwd=bindir)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_demo_and_file_tagging_in_a_bare_install(bare, tmp_path):
    env, bindir = bare
    exe = str(bindir / "rt-tagger")
    p = subprocess.run([exe, "demo", "--fast", "--jsonl", str(tmp_path / "demo.jsonl")], env=env,
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    from rt_tagger.demo import describe

    assert p.stdout.splitlines()[0] == describe()
    assert "summary over" in p.stdout
    msgs = [json.loads(line) for line in (tmp_path / "demo.jsonl").read_text().splitlines()]
    assert msgs[0]["backend"] == "onnxruntime" and msgs[-1]["type"] == "summary"
    assert msgs[-1]["duration"] == pytest.approx(24.0, abs=0.1) and msgs[-1]["chunks"] > 30

    p = subprocess.run([exe, FILE, "--jsonl", "-", "-q"], env=env, capture_output=True, text=True,
                       timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.splitlines()[-1])
    assert summary["type"] == "summary"
    # the same tags as this (developer) install gives the same file
    from rt_tagger.tagger import Tagger

    ref = Tagger().tag_file(FILE)
    got = np.array([summary["probs"][t] for t in ref.tags])
    np.testing.assert_allclose(got, ref.probs, atol=1e-3)


@pytest.mark.parametrize("args, extra", [
    (["explain", FILE, "-o", "x.png"], "explain"),
    ([FILE, "--osc", "127.0.0.1:9000", "-q"], "osc"),
    ([FILE, "--gui"], "gui"),
])
def test_optional_parts_name_their_extra(bare, tmp_path, args, extra):
    env, bindir = bare
    env = dict(env, QT_QPA_PLATFORM="offscreen")  # a display is there; the Qt packages are not
    p = subprocess.run([str(bindir / "rt-tagger"), *args], env=env, capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("rt-tagger: ") and f"pip install 'rt-tagger[{extra}]'" in lines[0]
