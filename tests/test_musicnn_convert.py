"""Re-running the musicnn conversion from the PyPI wheel reproduces the committed weights.

The wheel (29 MB) is taken from ``$RT_TAGGER_MUSICNN_WHEEL`` if set, else from pytest's cache,
else downloaded there once with pip; without it these tests are skipped, saying why.
"""
from __future__ import annotations

import ast
import os
import subprocess
import zipfile
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from rt_tagger.checkpoint import load_checkpoint
from rt_tagger.convert.musicnn_tf import WHEEL_NAME, WHEEL_VERSION, convert, main
from rt_tagger.convert.tf_checkpoint import list_tf_checkpoint, read_tf_checkpoint
from rt_tagger.factory import pretrained_path


@pytest.fixture(scope="module")
def wheel(request) -> Path:
    env = os.environ.get("RT_TAGGER_MUSICNN_WHEEL")
    if env:
        if not Path(env).is_file():
            pytest.fail(f"RT_TAGGER_MUSICNN_WHEEL={env} does not exist")
        return Path(env)
    cache = Path(request.config.cache.mkdir("musicnn_wheel"))
    path = cache / WHEEL_NAME
    if not path.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL_VERSION, "-d", str(cache)]
        try:
            subprocess.run(cmd, capture_output=True, timeout=180, check=True)
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"{WHEEL_VERSION} wheel not available (set RT_TAGGER_MUSICNN_WHEEL): {e}")
    return path


def test_reconversion_is_byte_identical(wheel, tmp_path):
    written = convert(wheel, tmp_path)
    assert [p.name for p in written] == ["musicnn_mtat.safetensors", "musicnn_msd.safetensors"]
    for path, name in zip(written, ("musicnn.mtat", "musicnn.msd")):
        committed = pretrained_path(name)
        new, old = load_file(path), load_file(committed)
        assert sorted(new) == sorted(old)
        for k in old:
            assert new[k].dtype == old[k].dtype and new[k].shape == old[k].shape, k
            assert new[k].tobytes() == old[k].tobytes(), k
        a, b = load_checkpoint(path), load_checkpoint(committed)
        assert a.sha256 == b.sha256 and a.tags == b.tags and a.arch_args == b.arch_args
        strip = lambda p: {k: v for k, v in p.items() if k != "date"}  # noqa: E731
        assert strip(a.provenance) == strip(b.provenance)


def test_wheel_checkpoint_contents(wheel):
    # what TensorFlow's own reader lists (tools/musicnn_ref/vars_*.txt): 150 variables, of which
    # 64 kernels/biases/BN parameters and statistics with 792,079 values; the rest is Adam state
    for model in ("MTT_musicnn", "MSD_musicnn"):
        entries = list_tf_checkpoint(f"musicnn/{model}/", archive=wheel)
        assert len(entries) == 150
        real = read_tf_checkpoint(f"musicnn/{model}/", archive=wheel,
                                  include=lambda n: not n.endswith(("/Adam", "/Adam_1", "_power")))
        assert len(real) == 64 and sum(v.size for v in real.values()) == 792_079
        assert real["conv2d_5/kernel"].shape == (7, 561, 1, 64)
        assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in real.values())


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["--wheel", str(tmp_path / "missing.whl"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("musicnn_tf: wheel not found") and "\n" not in err
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    assert main(["--wheel", str(tmp_path / "bad.whl"), "--out", str(tmp_path)]) == 1
    assert "cannot open archive" in capsys.readouterr().err


def test_tags_are_the_wheels_labels(wheel):
    with zipfile.ZipFile(wheel) as z:
        tree = ast.parse(z.read("musicnn/configuration.py"))
    labels = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if t.id.endswith("_LABELS")}
    assert load_checkpoint(pretrained_path("musicnn.mtat")).tags == labels["MTT_LABELS"]
    assert load_checkpoint(pretrained_path("musicnn.msd")).tags == labels["MSD_LABELS"]
