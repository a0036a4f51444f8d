"""musicnn's VGG baseline (``musicnn_vgg.mtat``) against the original TensorFlow MTT_vgg.

Reference: ``tests/data/musicnn_vgg_ref.npz``, outputs of musicnn 0.1.0's own graph
(``models.define_model(..., 'MTT_vgg', ...)``) on tensorflow-cpu 2.15.1 for 4 clips x 2 patches
(see its ``source`` key and tests/data/README.md). Fed the stored log-mel, the port must give
the same logits to 1e-4 and the same sigmoid outputs to 1e-5 on every backend, and the same
pooled maps layer by layer; the converter must be deterministic and reproduce the committed file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from rt_tagger.checkpoint import load_checkpoint
from rt_tagger.convert.musicnn_vgg_tf import N_VALUES, convert_vgg
from rt_tagger.convert.tf_checkpoint import list_tf_checkpoint
from rt_tagger.engines import available_backends, create_engine
from rt_tagger.errors import ConfigError
from rt_tagger.factory import create_model, pretrained_path
from rt_tagger.features.config import MUSICNN
from rt_tagger.models.musicnn_vgg import MusicnnVGG
from test_musicnn_convert import wheel  # noqa: F401 - the cached musicnn wheel fixture

REF = Path(__file__).parent / "data" / "musicnn_vgg_ref.npz"
LOGIT_TOL, TAGGRAM_TOL = 1e-4, 1e-5  # as tests/test_musicnn_port.py (TF's graph rewrites move taggrams ~3e-6)


@pytest.fixture(scope="module")
def ref():
    torch.set_num_threads(1)
    return dict(np.load(REF))


@pytest.fixture(scope="module")
def net():
    return create_model("musicnn_vgg.mtat")


def patches(logmel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(logmel.reshape(-1, 187, 96))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_backend_matches_tensorflow(ref, backend, tmp_path_factory):
    missing = available_backends()[backend]
    if missing:
        pytest.skip(f"{backend} unavailable: {missing}")
    with create_engine("musicnn_vgg.mtat", backend=backend, device="cpu", threads=1,
                       cache=tmp_path_factory.mktemp("engine_cache")) as engine:
        assert engine.tags == list(ref["tags"]) and engine.input_shape == (187, 96)
        out = engine.run(patches(ref["logmel"]))  # all clips' patches in one batch
    want = ref["logits"].reshape(-1, 50)
    err_logits = np.abs(out.logits - want).max()
    err_probs = np.abs(out.probs - ref["taggram"].reshape(-1, 50)).max()
    print(f"{backend}: max |logit error| {err_logits:.2e}, max |taggram error| {err_probs:.2e}")
    assert err_logits < LOGIT_TOL and err_probs < TAGGRAM_TOL
    # the comparison is meaningful: outputs vary a lot between patches and clips
    assert want.std(axis=0).mean() > 100 * LOGIT_TOL


def test_top_tags_match(ref, net):
    tags = list(ref["tags"])
    top = lambda p: [tags[i] for i in np.argsort(-p)[:5]]  # noqa: E731
    for clip, logmel, want in zip(ref["clips"], ref["logmel"], ref["taggram"]):
        with torch.no_grad():
            got = torch.sigmoid(net(torch.from_numpy(patches(logmel)))).mean(0).numpy()
        assert top(got) == top(want.mean(0)), clip
    # and the renders are heard as what they are
    assert tags[int(ref["taggram"][0].mean(0).argmax())] == "piano"
    assert tags[int(ref["taggram"][1].mean(0).argmax())] == "drums"


def test_features_match_layer_by_layer(ref, net):
    x = torch.from_numpy(patches(ref["logmel"][1])[:1])  # clip 1 (drums), patch 0
    with torch.no_grad():
        feats = net.features(x)
    assert feats["pool1"].shape == (1, 92, 48, 128)
    for name in ("pool4", "pool5"):
        got, want = feats[name][0].numpy(), ref[f"feat_{name}"]
        assert got.shape == want.shape, name
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 2e-5, f"{name}: relative error {err:.1e}"


def test_random_init_differs(ref):
    # guards against a test that would pass whatever the weights: a fresh model must fail parity
    with torch.no_grad():
        got = MusicnnVGG().eval()(torch.from_numpy(patches(ref["logmel"][0]))).numpy()
    assert np.abs(got - ref["logits"][0]).max() > 100 * LOGIT_TOL


def test_model_contract(net):
    assert not net.training and net.input_kind == "logmel" and net.n_tags == 50 and net.input_length == 187
    n_params = sum(p.numel() for p in net.parameters())
    n_stats = sum(b.numel() for n, b in net.named_buffers() if "running" in n)
    assert (n_params, n_params + n_stats) == (605_748, N_VALUES)  # TF's 36 real variables
    for bad in ((1, 186, 96), (1, 187, 80), (187, 96)):  # the dense layer fixes the length
        with pytest.raises(ConfigError, match=r"\(batch, 187, 96\)"):
            net(torch.zeros(bad))
    x = torch.randn(3, 187, 96)
    with torch.no_grad():
        assert torch.allclose(net(x)[1:2], net(x[1:2]), atol=1e-5)
    with pytest.raises(ConfigError, match="at least 31 frames"):
        MusicnnVGG(input_length=20)


def test_checkpoint_describes_itself():
    ckpt = load_checkpoint(pretrained_path("musicnn_vgg.mtat"))
    assert ckpt.arch == "musicnn_vgg" and ckpt.input_kind == "logmel" and ckpt.input_length == 187
    assert ckpt.sample_rate == 16000 and ckpt.logmel_config == MUSICNN
    assert ckpt.tags == load_checkpoint(pretrained_path("musicnn.mtat")).tags
    prov = ckpt.provenance
    assert prov["licence"] == "ISC" and "Pompeu Fabra" in prov["copyright"]
    assert "musicnn/MTT_vgg/" in prov["source"] and len(prov["source_sha256"]) == 64
    assert round(prov["metrics"]["roc_auc"], 4) == 0.9030 and round(prov["metrics"]["pr_auc"], 4) == 0.3823
    json.dumps(prov)
    assert create_model("musicnn_vgg", pretrained=True).checkpoint.sha256 == ckpt.sha256  # the arch's default
    assert {p.dtype for p in ckpt.state_dict.values() if p.is_floating_point()} == {torch.float32}


def test_conversion_is_deterministic_and_reproduces_the_shipped_file(wheel, tmp_path):  # noqa: F811
    names = list_tf_checkpoint("musicnn/MTT_vgg/", archive=wheel)
    assert sum(not n.endswith(("/Adam", "/Adam_1", "_power")) for n in names) == 36  # the rest: Adam state
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = convert_vgg(wheel, tmp_path / "a"), convert_vgg(wheel, tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second] == ["musicnn_vgg_mtat.safetensors"]
    committed = load_file(pretrained_path("musicnn_vgg.mtat"))
    for path in (first[0], second[0]):
        new = load_file(path)
        assert sorted(new) == sorted(committed)
        for k, v in committed.items():
            assert new[k].dtype == v.dtype and new[k].shape == v.shape and new[k].tobytes() == v.tobytes(), k
    a, b = load_checkpoint(first[0]), load_checkpoint(pretrained_path("musicnn_vgg.mtat"))
    assert a.sha256 == b.sha256 and a.arch_args == b.arch_args and a.tags == b.tags
    strip = lambda p: {k: v for k, v in p.items() if k != "date"}  # noqa: E731
    assert strip(a.provenance) == strip(b.provenance)
