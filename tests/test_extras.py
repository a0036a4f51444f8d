"""A plain install (no extras) runs the main job, and each optional part names its extra.

The extras (matplotlib, python-osc, torch-tensorrt, pyqtgraph/PySide6) and onnxscript are
installed in the test environment, so their absence is simulated: the command runs in a
subprocess whose first act is to put a finder at the front of ``sys.meta_path`` that refuses
those top-level packages (``import`` and ``importlib.util.find_spec`` both raise
ModuleNotFoundError, as for a package that is not installed). Everything else is real: the
real CLI, real models, real onnxruntime. tests/test_install_bare.py does the same with a
really bare virtual environment (slow).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from signals import DATA, MUSIC_CLIPS

FILE = str(DATA / MUSIC_CLIPS[0])
TOL = 1e-4  # as tests/test_export.py: absolute, on logits and attention probabilities

# Runs the rt-tagger CLI (or, with "-c CODE", CODE) with the packages in argv[1] made absent.
ABSENT = r"""
import sys

class Absent:
    '''Simulates packages that are not installed: finding or importing them fails.'''
    def __init__(self, names):
        self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

names = set(sys.argv[1].split(","))
assert not names & set(sys.modules), "already imported"
sys.meta_path.insert(0, Absent(names))
if sys.argv[2] == "-c":
    exec(sys.argv[3])
else:
    from rt_tagger.cli import main
    sys.exit(main(sys.argv[2:]))
"""


def without(packages: str, *args: str, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ABSENT, packages, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_line(p: subprocess.CompletedProcess) -> str:
    """The single ``rt-tagger:`` line of a failed run (exit 2, nothing else on stderr)."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("rt-tagger: "), p.stderr
    return lines[0]


def test_the_simulated_absence_is_real():
    p = without("matplotlib", "-c", "import matplotlib")
    assert p.returncode == 1 and "ModuleNotFoundError: No module named 'matplotlib'" in p.stderr
    p = without("onnxscript", "-c", "from rt_tagger.export import default_exporter; "
                "print(default_exporter())")
    assert p.returncode == 0 and p.stdout.split() == ["legacy"], p.stderr


def test_explain_without_matplotlib(tmp_path):
    out = tmp_path / "x.png"
    line = one_line(without("matplotlib", "explain", FILE, "-o", str(out)))
    assert "pip install 'rt-tagger[explain]'" in line
    assert not out.exists()


def test_osc_without_python_osc():
    line = one_line(without("pythonosc", FILE, "--osc", "127.0.0.1:9000", "-q"))
    assert "pip install 'rt-tagger[osc]'" in line


def test_gui_without_qt_packages():
    """With a display to draw on (Qt's offscreen platform), a missing Qt package is the problem."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    for absent in ("PySide6", "pyqtgraph"):
        line = one_line(without(absent, FILE, "--gui", env=env))
        assert "pip install 'rt-tagger[gui]'" in line, line


def test_tensorrt_without_torch_tensorrt():
    """Asked for by name, the backend names its extra (and the GPU, when that is missing too)."""
    code = ("from rt_tagger.engines.trt_engine import trt_unavailable; "
            "print(trt_unavailable(requested=True)); print(trt_unavailable())")
    p = without("torch_tensorrt", "-c", code)
    named, auto = p.stdout.strip().splitlines()
    assert named.startswith("torch-tensorrt is not installed (pip install 'rt-tagger[tensorrt]')")
    assert ("needs a CUDA GPU" in named) == (not torch.cuda.is_available())
    assert "rt-tagger[tensorrt]" in auto or not torch.cuda.is_available()
    line = one_line(without("torch_tensorrt", FILE, "--backend", "tensorrt", "-q"))
    assert "rt-tagger[tensorrt]" in line, line


@pytest.fixture(scope="module")
def legacy_export(tmp_path_factory):
    """The default model's ONNX graph as an install without onnxscript makes it (subprocess)."""
    cache = tmp_path_factory.mktemp("cache")
    code = ("from rt_tagger.engines.ort_engine import cached_onnx; "
            "from rt_tagger.tagger import DEFAULT_MODEL; "
            f"print(cached_onnx(DEFAULT_MODEL, cache={str(cache)!r})[0])")
    p = without("onnxscript", "-c", code)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def test_fallback_exporter_matches_torch(legacy_export):
    """Without onnxscript the ONNX graph comes from the legacy exporter; it gives PyTorch's
    outputs (logits and attention maps) for the shipped default model."""
    from rt_tagger.export import default_exporter, read_onnx_metadata
    from rt_tagger.factory import create_model
    from rt_tagger.tagger import DEFAULT_MODEL

    assert default_exporter() == "dynamo"  # here onnxscript is installed ...
    assert legacy_export.endswith("-legacy.onnx")  # ... the fallback graph is cached apart
    meta, info = read_onnx_metadata(legacy_export)
    assert info["exporter"] == "legacy"
    model = create_model(DEFAULT_MODEL).eval()
    assert meta.sha256 == model.checkpoint.sha256
    sess = ort.InferenceSession(legacy_export, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch in (1, 4):
        x = rng.standard_normal((batch, meta.input_length, meta.logmel["n_mels"])).astype(np.float32)
        with torch.no_grad():
            logits, attn = model(torch.from_numpy(x), return_attention=True)
        got_logits, got_attn = sess.run(["logits", "attention"], {"features": x})
        np.testing.assert_allclose(got_logits, logits.numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(got_attn, attn.numpy(), rtol=0, atol=TOL)


def test_demo_and_file_tagging_without_onnxscript(legacy_export):
    """The main job end to end on the fallback graph (cached by the fixture): the demo,
    unpaced and cut to 8 s, and a file."""
    from pathlib import Path

    cache = Path(legacy_export).parent.parent  # <cache>/onnx/<file>
    env = dict(os.environ, RT_TAGGER_CACHE_DIR=str(cache))
    p = without("onnxscript", "demo", "--fast", "--duration", "8", "--jsonl", "-", "-q", env=env)
    assert p.returncode == 0, p.stderr
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert msgs[0]["backend"] == "onnxruntime" and msgs[-1]["type"] == "summary"
    assert msgs[-1]["duration"] >= 8.0 and msgs[-1]["chunks"] > 5
    # the graph and its two frame-reuse halves (rt_tagger.engines.reuse), nothing else
    from rt_tagger.export import frame_reuse_paths

    want = [Path(legacy_export), *frame_reuse_paths(legacy_export)]
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == sorted(p.name for p in want)
    p = without("onnxscript", FILE, "--jsonl", "-", "-q", env=env)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.splitlines()[-1])
    assert summary["type"] == "summary" and summary["chunks"] > 10
