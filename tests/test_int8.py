"""``precision="int8"``: the shipped int8 graph of the default model against fp32 on real clips,
the one-line errors (stale or missing graph, int8 anywhere but onnxruntime on a CPU), the
quantize command, and the int8 runtime without torch.

Bounds, measured with the shipped graph (onnxruntime 1.32, 19 chunks per clip at a 31-frame
hop): mean |Δp| 0.0016-0.0026 per clip (bound 0.005), largest |Δp| of a chunk 0.030 (bound
0.06), chunk top-5 overlap 0.94-0.98 (bound 0.9), clip top-5 overlap 0.8 / 0.8 / 1.0 (bound
0.8: one near-tied fifth tag may swap).
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from signals import DATA, MUSIC_CLIPS, load_music

from rt_tagger.engines import create_engine
from rt_tagger.errors import BackendError, ModelError
from rt_tagger.factory import DEFAULT_MODEL, pretrained_path

MODEL = "musicnn_att.mtat"
SHIPPED = pretrained_path(MODEL).with_name("musicnn_att_mtat.int8.onnx")
HOP = 31  # frames, ~0.5 s


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


def top5(p: np.ndarray) -> set[int]:
    return set(np.argsort(-p)[:5].tolist())


@pytest.fixture(scope="module")
def engines():
    fp32 = create_engine(MODEL, "onnxruntime", device="cpu", precision="fp32", threads=1)
    int8 = create_engine(MODEL, "onnxruntime", device="cpu", precision="int8", threads=1)
    yield fp32, int8
    fp32.close()
    int8.close()


def chunks(engine, clip: str) -> np.ndarray:
    from rt_tagger.features import LogMel, LogMelConfig

    m = LogMel(LogMelConfig.from_dict(engine.checkpoint.logmel))(np.array(load_music(clip)))
    L = engine.input_length
    return np.stack([m[s:s + L] for s in range(0, m.shape[0] - L + 1, HOP)])


def test_default_model_ships_an_int8_graph(engines):
    _, int8 = engines
    assert MODEL == DEFAULT_MODEL and SHIPPED.is_file()
    assert SHIPPED.stat().st_size < 4_000_000
    assert int8.precision == "int8" and int8.device == "cpu" and int8.name == "onnxruntime"
    assert int8.onnx_path == SHIPPED
    assert int8.frame_reuse is None  # the whole model per chunk
    assert "int8" in int8.selection_reason
    info = int8.int8_info
    assert info["checkpoint_sha256"] == int8.checkpoint.sha256
    assert "train split" in info["calibration"]["set"] and info["calibration"]["chunks"] >= 256
    assert info["command"].startswith("python -m rt_tagger.training quantize")


@pytest.mark.parametrize("clip", MUSIC_CLIPS)
def test_int8_follows_fp32_on_real_clips(engines, clip):
    fp32, int8 = engines
    x = chunks(fp32, clip)
    a = fp32.run(x, attention=False).probs
    b = int8.run(x, attention=False).probs
    d = np.abs(a - b)
    assert d.mean() < 0.005, d.mean()
    assert d.max() < 0.06, d.max()
    chunk_overlap = np.mean([len(top5(u) & top5(v)) / 5 for u, v in zip(a, b)])
    assert chunk_overlap >= 0.9, chunk_overlap
    assert len(top5(a.mean(0)) & top5(b.mean(0))) >= 4
    assert np.argmax(a.mean(0)) == np.argmax(b.mean(0))


def test_int8_runs_attention_and_batches(engines):
    fp32, int8 = engines
    x = chunks(fp32, MUSIC_CLIPS[0])[:3]
    out = int8.run(x)
    assert out.probs.shape == (3, fp32.n_tags) and out.attention is not None
    one = int8.run(x[1:2], attention=False).logits
    np.testing.assert_allclose(out.logits[1:2], one, atol=1e-5)


def test_int8_graph_is_opened_once(opened_sessions):
    """The staleness check reads the engine's own session: the graph is loaded once."""
    engine = create_engine(MODEL, "onnxruntime", device="cpu", precision="int8", threads=1)
    try:
        assert opened_sessions == [str(SHIPPED)]
    finally:
        engine.close()


def test_stale_int8_graph_is_one_line(tmp_path):
    # Another checkpoint (musicnn.mtat) with the default model's int8 graph beside it.
    ckpt = tmp_path / "other.safetensors"
    shutil.copy(pretrained_path("musicnn.mtat"), ckpt)
    shutil.copy(SHIPPED, tmp_path / "other.int8.onnx")
    with pytest.raises(ModelError) as e:
        create_engine(ckpt, "onnxruntime", device="cpu", precision="int8", cache=tmp_path)
    msg = one_line(e.value)
    assert "stale" in msg and "python -m rt_tagger.training quantize" in msg


def test_missing_int8_graph_says_how_to_make_one(tmp_path):
    ckpt = tmp_path / "plain.safetensors"
    shutil.copy(pretrained_path("musicnn.mtat"), ckpt)
    with pytest.raises(ModelError) as e:
        create_engine(ckpt, precision="int8", cache=tmp_path)
    msg = one_line(e.value)
    assert "no int8 graph" in msg
    assert f"python -m rt_tagger.training quantize {ckpt} --calibration" in msg


def test_float_graph_is_not_int8(engines):
    fp32, _ = engines
    with pytest.raises(ModelError) as e:
        create_engine(fp32.onnx_path, "onnxruntime", device="cpu", precision="int8")
    assert "not an int8 one" in one_line(e.value)


@pytest.mark.parametrize("backend,device", [("torch", None), ("tensorrt", None),
                                            ("onnxruntime", "cuda"), ("auto", "cuda:0"),
                                            ("triton://localhost:8000", None)])
def test_int8_elsewhere_is_one_line(backend, device):
    with pytest.raises(BackendError) as e:
        create_engine(MODEL, backend, device=device, precision="int8")
    msg = one_line(e.value)
    assert "int8 runs only on onnxruntime on a CPU" in msg


def test_torch_engine_refuses_int8():
    from rt_tagger.engines.torch_engine import TorchEngine
    from rt_tagger.factory import resolve_model

    model, ckpt = resolve_model(MODEL)
    with pytest.raises(BackendError, match="int8 runs only on onnxruntime"):
        TorchEngine(model, ckpt, device="cpu", precision="int8")


def test_int8_runtime_does_not_import_torch():
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import numpy as np\n"
            "from rt_tagger.engines import create_engine\n"
            f"e = create_engine({MODEL!r}, precision='int8')\n"
            "p = e.run(np.zeros((1, *e.input_shape), np.float32)).probs\n"
            "print(e.precision, p.shape, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["int8", "(1,", "50)", "False"]


def test_quantize_command_writes_a_graph_that_runs(tmp_path, capsys):
    from training.__main__ import main

    out = tmp_path / "tiny.int8.onnx"
    assert main(["quantize", MODEL, "--calibration", str(DATA), "--chunks-per-file", "2",
                 "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with create_engine(out, "onnxruntime", device="cpu", precision="int8") as e:
        assert e.precision == "int8"
        assert e.int8_info["calibration"]["chunks"] == 2 * len(MUSIC_CLIPS)
        assert e.int8_info["calibration"]["set"] == f"audio files under {DATA}"
        p = e.run(np.zeros((2, *e.input_shape), np.float32), attention=False).probs
    assert p.shape == (2, e.n_tags) and np.isfinite(p).all()


def test_quantize_command_bad_calibration_is_one_line(tmp_path):
    from training.__main__ import main

    proc = subprocess.run([sys.executable, "-m", "rt_tagger.training", "quantize", MODEL,
                           "--calibration", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and main is not None
    assert proc.stderr.strip().count("\n") == 0 and "no audio files found" in proc.stderr
