"""ONNX / TorchScript export against the PyTorch model itself, for every registry architecture.

Reference: the eager PyTorch forward of the very checkpoint that was exported. Tolerance: 1e-4
absolute on logits and on attention probabilities (float32 graphs; observed ~1e-6).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from checkpoints import make_checkpoint as _make_checkpoint
from rt_tagger.checkpoint import load_checkpoint
from rt_tagger.errors import ConfigError, ModelError
from rt_tagger.export import (
    export_model,
    export_onnx,
    export_torchscript,
    load_torchscript,
    read_onnx_metadata,
    supports_attention,
)
from rt_tagger.factory import pretrained_path
from rt_tagger.models import list_models

TOL = 1e-4
BATCHES = (1, 3)  # plus 16 for the streaming model (spec_att width 256); see batches()

# case id -> (architecture, arch_args). Every registered architecture must appear (see below).
# spec_att (both widths) and musicnn run at full size; the others, which the streaming app does
# not ship, are the same code with fewer channels/samples so the file stays fast on 2 cores.
CASES = {
    "spec_att_w256": ("spec_att", {"width": 256}),
    "spec_att_w512": ("spec_att", {"width": 512}),
    "raw_att": ("raw_att", {"width": 64, "input_length": 3 ** 5 * 40}),
    "raw_cnn_l": ("raw_cnn_l", {}),
    "q2l": ("q2l", {"channels": [16, 16, 32, 32, 32], "width": 64, "ffn_dim": 128}),
    "short_res": ("short_res", {"channels": [16, 16, 32, 32, 32, 32, 64]}),
    "musicnn": ("musicnn", {}),  # the converted MTAT weights when shipped
    "musicnn_vgg": ("musicnn_vgg", {}),  # the converted MTT_vgg weights when shipped
    "musicnn_att": ("musicnn_att", {"width": 64, "heads": 4, "layers": 1}),  # musicnn's body
}


pytestmark = pytest.mark.usefixtures("torch_two_threads")


def make_checkpoint(path, arch: str, args: dict, seed: int = 0):
    """A random-weight checkpoint of ``arch`` saved to ``path`` and loaded back."""
    return _make_checkpoint(path, arch, args, seed, provenance={"source": "tests/test_export.py random init"})


def case_checkpoint(tmp_path_factory, case: str):
    arch, args = CASES[case]
    shipped = {"musicnn": "musicnn.mtat", "musicnn_vgg": "musicnn_vgg.mtat"}.get(arch)
    if shipped and pretrained_path(shipped).is_file():
        return load_checkpoint(pretrained_path(shipped))
    return make_checkpoint(tmp_path_factory.mktemp(case) / f"{case}.safetensors", arch, args)


def features(ckpt, batch: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, ckpt.input_length)
    if ckpt.input_kind == "logmel":
        shape += (ckpt.logmel["n_mels"],)
    return rng.standard_normal(shape).astype(np.float32)


def batches(ckpt) -> tuple[int, ...]:
    """Batch sizes to compare: 1 and 3 everywhere, 16 too for the streaming model (CPU time)."""
    streaming = ckpt.arch == "spec_att" and ckpt.arch_args.get("width") == 256
    return (*BATCHES, 16) if streaming else BATCHES


def torch_reference(model, x: np.ndarray):
    with torch.no_grad():
        if supports_attention(model):
            logits, attn = model(torch.from_numpy(x), return_attention=True)
            return logits.numpy(), attn.numpy()
        return model(torch.from_numpy(x)).numpy(), None


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    """(checkpoint, model, .onnx path) with a dynamic batch axis, once per case."""
    ckpt = case_checkpoint(tmp_path_factory, request.param)
    path = export_onnx(ckpt, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx")
    return ckpt, ckpt.build_model(), path


def test_every_architecture_is_covered():
    assert set(list_models(pretrained=False)) <= {arch for arch, _ in CASES.values()}


def test_export_leaves_one_self_contained_file(exported):
    """No side files (the torch.export-based exporter may write "<file>.data" next to it)."""
    _, _, path = exported
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_onnx_matches_torch(exported):
    ckpt, model, path = exported
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in sess.get_outputs()]
    assert [i.name for i in sess.get_inputs()] == ["features"]
    assert outputs == (["logits", "attention"] if supports_attention(model) else ["logits"])
    for batch in batches(ckpt):
        x = features(ckpt, batch, seed=batch)
        ref_logits, ref_attn = torch_reference(model, x)
        got = sess.run(None, {"features": x})
        assert got[0].shape == (batch, len(ckpt.tags))
        np.testing.assert_allclose(got[0], ref_logits, rtol=0, atol=TOL)
        if ref_attn is not None:
            assert got[1].shape == ref_attn.shape and got[1].shape[0] == batch
            np.testing.assert_allclose(got[1], ref_attn, rtol=0, atol=TOL)
            check_attention_layout(ckpt, model, got[1])


def check_attention_layout(ckpt, model, attn: np.ndarray) -> None:
    """The documented layout, and rows that are softmax distributions."""
    if ckpt.arch == "q2l":  # (batch, layers, heads, n_tags, T)
        assert attn.shape[1] == len(model.decoder) and attn.shape[3] == len(ckpt.tags)
    else:  # (batch, layers, heads, T+1, T+1): [CLS] plus the time steps
        assert attn.ndim == 5 and attn.shape[3] == attn.shape[4]
    np.testing.assert_allclose(attn.sum(-1), np.ones(attn.shape[:-1]), atol=1e-4)


def test_metadata_round_trip(exported):
    ckpt, _, path = exported
    meta, info = read_onnx_metadata(path)
    for field in ("arch", "arch_args", "tags", "sample_rate", "input_kind", "input_length",
                  "logmel", "thresholds", "sha256"):
        assert getattr(meta, field) == getattr(ckpt, field), field
    assert meta.sha256 and len(meta.sha256) == 64
    assert info["batch"] is None and info["exporter"] == "dynamo"
    assert info["torch"] == torch.__version__
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["rt_tagger"])["tags"] == ckpt.tags


TORCHSCRIPT_CASES = ("spec_att_w256", "q2l", "musicnn")  # CLS attention, cross-attention, CNN


@pytest.mark.parametrize("case", TORCHSCRIPT_CASES)
def test_torchscript_matches_torch(case, tmp_path_factory, tmp_path):
    ckpt = case_checkpoint(tmp_path_factory, case)
    model = ckpt.build_model()
    path = export_torchscript(ckpt, tmp_path / "model.pt")
    module, meta = load_torchscript(path)
    assert meta.sha256 == ckpt.sha256 and meta.tags == ckpt.tags
    for batch in (1, 2):
        x = features(ckpt, batch, seed=10 + batch)
        ref_logits, ref_attn = torch_reference(model, x)
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        logits = out[0] if ref_attn is not None else out
        np.testing.assert_allclose(logits.numpy(), ref_logits, rtol=0, atol=TOL)
        if ref_attn is not None:
            np.testing.assert_allclose(out[1].numpy(), ref_attn, rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def small_spec_att(tmp_path_factory):
    args = {"width": 64, "layers": 1, "heads": 4, "input_length": 32}
    return make_checkpoint(tmp_path_factory.mktemp("small") / "s.safetensors", "spec_att", args)


def test_static_batch_and_no_attention(small_spec_att, tmp_path):
    ckpt = small_spec_att
    path = export_onnx(ckpt, tmp_path / "b2.onnx", batch=2, with_attention=False)
    sess = ort.InferenceSession(str(path))
    assert sess.get_inputs()[0].shape == [2, 32, 96]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    x = features(ckpt, 2)
    np.testing.assert_allclose(sess.run(None, {"features": x})[0],
                               torch_reference(ckpt.build_model(), x)[0], rtol=0, atol=TOL)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        sess.run(None, {"features": features(ckpt, 3)})
    assert read_onnx_metadata(path)[1]["batch"] == 2


def test_legacy_exporter_matches(small_spec_att, tmp_path):
    ckpt = small_spec_att
    path = export_onnx(ckpt, tmp_path / "legacy.onnx", exporter="legacy", opset=17)
    assert read_onnx_metadata(path)[1]["exporter"] == "legacy"
    sess = ort.InferenceSession(str(path))
    x = features(ckpt, 3)
    ref_logits, ref_attn = torch_reference(ckpt.build_model(), x)
    got = sess.run(None, {"features": x})
    np.testing.assert_allclose(got[0], ref_logits, rtol=0, atol=TOL)
    np.testing.assert_allclose(got[1], ref_attn, rtol=0, atol=TOL)


def test_export_model_cli_entry(small_spec_att, tmp_path):
    path = export_model(small_spec_att.path, None, tmp_path / "m.pt", with_attention=False)
    module, meta = load_torchscript(path)
    x = features(small_spec_att, 2)
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    np.testing.assert_allclose(out.numpy(), torch_reference(small_spec_att.build_model(), x)[0],
                               rtol=0, atol=TOL)


@pytest.mark.parametrize("call, error, match", [
    (lambda p, out: export_model(p, "tflite", out), ConfigError, "unknown export format"),
    (lambda p, out: export_model(p, None, out.with_suffix(".bin")), ConfigError, "'bin'"),
    (lambda p, out: export_model(p, "onnx", out, bogus=1), ConfigError, "unknown option"),
    (lambda p, out: export_model(p, "onnx", out, batch=0), ConfigError, "batch must be"),
    (lambda p, out: export_model(p, "onnx", out, exporter="x"), ConfigError, "exporter"),
    (lambda p, out: export_model(p, "onnx", out, opset=7), ConfigError, "opset"),
    (lambda p, out: export_model("no_such_model", "onnx", out), ModelError, "unknown model"),
    (lambda p, out: export_model("raw_att", "onnx", out), ModelError, "no pretrained"),
    (lambda p, out: export_model("x.onnx", "onnx", out), ModelError, "ONNX file"),
    (lambda p, out: export_model(p, "onnx", out.parent / "nodir" / "m.onnx"), ConfigError,
     "does not exist"),
])
def test_export_errors(small_spec_att, tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(small_spec_att.path, tmp_path / "m.onnx")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


def test_read_metadata_rejects_foreign_onnx(tmp_path):
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    with pytest.raises(ModelError, match="no rt-tagger metadata"):
        read_onnx_metadata(tmp_path / "foreign.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable ONNX"):
        read_onnx_metadata(tmp_path / "junk.onnx")
