"""The onnxruntime runtime does not import torch: ``rt-tagger FILE``, ``demo``, the monitor
(``--source``) and ``--device`` run with torch made unimportable, once the model's ONNX export
is cached, and give the messages a normal run gives. A model not cached yet is one clear line.

torch is installed here; each subprocess hides it with an import hook that raises
ImportError for ``torch`` and ``torch.*`` (what a user without torch gets), and reports at exit
whether anything imported it anyway.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pulse import capture_while_playing, require_pulse
from signals import DATA

from rt_tagger.engines.ort_engine import cached_onnx, onnx_cache_path
from rt_tagger.factory import DEFAULT_MODEL, describe_model

CLIP = DATA / "render_drums_70bpm_12s.flac"
CLIP2 = DATA / "render_piano_monteverdi_12s.flac"

# Runs the rt-tagger command (rt_tagger.cli.run) with torch unimportable; exits with its status.
NO_TORCH = """
import atexit, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r} (hidden by the test)")
sys.meta_path.insert(0, NoTorch())
atexit.register(lambda: sys.stderr.write("torch imported\\n") if "torch" in sys.modules else None)
from rt_tagger.cli import run
run()
"""

#: Fields that differ between two runs of the same input (clock, timing).
VOLATILE = {"time", "latency_ms", "wall", "elapsed", "seconds", "rtf", "cpu", "pid", "started"}


def run(args: list[str], *, torch_hidden: bool, env: dict | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", NO_TORCH, *args] if torch_hidden else \
        [sys.executable, "-m", "rt_tagger", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def stable(path) -> list[dict]:
    msgs = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in m.items() if k not in VOLATILE} for m in msgs]


def assert_same_messages(got: list[dict], ref: list[dict]) -> None:
    assert [m["type"] for m in got] == [m["type"] for m in ref]
    ups = [(g, r) for g, r in zip(got, ref) if r["type"] == "update"]
    assert len(ups) >= 10
    for g, r in ups:
        assert g["t"] == r["t"] and g["top"] == r["top"]
        np.testing.assert_allclose([g["probs"][k] for k in r["probs"]], list(r["probs"].values()),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(g["attention"], r["attention"], rtol=0, atol=1e-4)  # 4 decimals


@pytest.fixture(scope="module")
def cached():
    """The default model's export in the cache (made here, with torch, if missing)."""
    return cached_onnx(DEFAULT_MODEL)[0]


def test_cache_key_needs_no_torch(cached):
    # The key computed from the checkpoint's header alone names the file the export made.
    assert onnx_cache_path(describe_model(DEFAULT_MODEL)) == cached
    code = ("import sys; sys.modules['torch'] = None; "
            "from rt_tagger.engines.ort_engine import onnx_cache_path; "
            "from rt_tagger.factory import describe_model; "
            "print(onnx_cache_path(describe_model('musicnn_att.mtat')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(cached)


@pytest.mark.parametrize("model", [DEFAULT_MODEL, "spec_att.w256"])
def test_attention_is_placed_from_the_exports_time_map(model):
    """The time map an export records places a chunk's attention exactly where the model's
    own ``time_steps_to_frames`` does (the runtime uses the former, explain the latter)."""
    from rt_tagger.engines import create_engine
    from rt_tagger.factory import create_model
    from rt_tagger.stream.attention import AttentionAxis

    with create_engine(model, "onnxruntime") as eng:
        assert "time_map" in eng.export_info
        x = np.random.default_rng(1).standard_normal((1, eng.input_length, 96)).astype(np.float32)
        attn = eng.run(x).attention[0]
        from_export = AttentionAxis(eng.checkpoint, time_map=eng.export_info["time_map"])
        from_model = AttentionAxis(eng.checkpoint, create_model(model))
        a, b = from_export.overlay(attn, 3.25), from_model.overlay(attn, 3.25)
    assert a.kind == b.kind == "cls"
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.times[0] >= 3.25 - 0.05 and len(a.times) == a.weights.shape[-1] + 1


def test_file_without_torch_equals_a_normal_run(cached, tmp_path):
    ref, got = tmp_path / "ref.jsonl", tmp_path / "got.jsonl"
    assert run([str(CLIP), "-q", "--jsonl", str(ref)], torch_hidden=False).returncode == 0
    res = run([str(CLIP), "-q", "--jsonl", str(got)], torch_hidden=True)
    assert res.returncode == 0, res.stderr
    assert "torch imported" not in res.stderr
    assert_same_messages(stable(got), stable(ref))


def test_demo_and_monitor_without_torch(cached, tmp_path):
    out = tmp_path / "demo.jsonl"
    res = run(["demo", "--fast", "-q", "--jsonl", str(out)], torch_hidden=True)
    assert res.returncode == 0 and "torch imported" not in res.stderr, res.stderr
    msgs = stable(out)
    assert sum(m["type"] == "update" for m in msgs) >= 10 and msgs[-1]["type"] == "summary"

    ref, got = tmp_path / "ref.jsonl", tmp_path / "got.jsonl"
    sources = ["--source", f"a=file:{CLIP}", "--source", f"b=file:{CLIP2}", "-q"]
    assert run([*sources, "--jsonl", str(ref)], torch_hidden=False).returncode == 0
    res = run([*sources, "--jsonl", str(got)], torch_hidden=True)
    assert res.returncode == 0 and "torch imported" not in res.stderr, res.stderr
    for name in ("a", "b"):
        per = lambda msgs: [m for m in msgs if m.get("source") == name]  # noqa: E731
        assert_same_messages(per(stable(got)), per(stable(ref)))


@pytest.mark.audio_device
def test_device_without_torch(cached, tmp_path):
    env = require_pulse()
    cap = capture_while_playing(["--device", "pulse"], CLIP, tmp_path / "rec.wav", env,
                                python=[sys.executable, "-c", NO_TORCH])
    assert sum(m["type"] == "update" for m in cap.msgs) >= 10
    assert cap.summary["type"] == "summary"


def test_uncached_model_without_torch_is_one_line(tmp_path):
    env = {**__import__("os").environ, "RT_TAGGER_CACHE_DIR": str(tmp_path / "empty-cache")}
    res = run([str(CLIP), "-q"], torch_hidden=True, env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("rt-tagger: ") and "not in the ONNX cache" in lines[0]
    assert "exporting it needs PyTorch" in lines[0]


def test_the_cache_key_reads_versions_as_importlib_metadata_does():
    """The ONNX cache key's versions come from metadata folder names (no metadata scan)."""
    from importlib.metadata import version

    from rt_tagger.engines.ort_engine import _dist_version

    for dist in ("numpy", "onnxruntime", "onnx", "typing-extensions", "typing_extensions"):
        assert _dist_version(dist) == version(dist)
    assert _dist_version("no-such-distribution-here") == "none"
