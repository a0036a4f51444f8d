"""The PyTorch musicnn port with the converted weights against the original TensorFlow musicnn.

Reference: ``tests/data/musicnn_ref.npz``, outputs of musicnn 0.1.0's own code on
tensorflow-cpu 2.15.1 (see its ``source`` key). Fed musicnn's exact log-mel, the port must give
the same logits to 1e-4 and the same sigmoid outputs to 1e-5 (TF's own graph optimisations
move the taggram by ~3e-6), and the same intermediate features layer by layer.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rt_tagger.checkpoint import load_checkpoint
from rt_tagger.errors import ConfigError
from rt_tagger.factory import create_model, pretrained_path
from rt_tagger.features.config import MUSICNN
from rt_tagger.models.musicnn import FEATURE_NAMES, MusiCNN

REF = Path(__file__).parent / "data" / "musicnn_ref.npz"
LOGIT_TOL, TAGGRAM_TOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def ref():
    torch.set_num_threads(1)
    return dict(np.load(REF))


@pytest.fixture(scope="module", params=["mtt", "msd"])
def model(request):
    return request.param, create_model({"mtt": "musicnn.mtat", "msd": "musicnn.msd"}[request.param])


def patches(logmel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(logmel.reshape(-1, 187, 96).copy())


def test_logits_and_taggram_match_tensorflow(ref, model):
    which, net = model
    x = patches(ref["logmel"])  # all clips' patches in one batch
    with torch.no_grad():
        logits = net(x).numpy()
    want = ref[f"{which}_logits"].reshape(-1, 50)
    err_logits = np.abs(logits - want).max()
    err_taggram = np.abs(1 / (1 + np.exp(-logits.astype(np.float64))) - ref[f"{which}_taggram"].reshape(-1, 50)).max()
    print(f"musicnn.{which}: max |logit error| {err_logits:.2e}, max |taggram error| {err_taggram:.2e}")
    assert err_logits < LOGIT_TOL
    assert err_taggram < TAGGRAM_TOL
    # the comparison is meaningful: outputs vary a lot between patches and clips
    assert want.std(axis=0).mean() > 100 * LOGIT_TOL


def test_top_tags_match(ref, model):
    which, net = model
    tags = list(ref[f"{which}_tags"])
    for clip, logmel, want in zip(ref["clips"], ref["logmel"], ref[f"{which}_taggram"]):
        with torch.no_grad():
            got = torch.sigmoid(net(patches(logmel))).mean(0).numpy()
        top = lambda p: [tags[i] for i in np.argsort(-p)[:5]]  # noqa: E731
        assert top(got) == top(want.mean(0)), clip


def test_features_match_layer_by_layer(ref):
    net = create_model("musicnn.mtat")
    x = patches(ref["logmel"][1][:187])  # clip 1 (drums), patch 0
    with torch.no_grad():
        feats = {k: v[0].numpy() for k, v in net.features(x).items()}
    for name in FEATURE_NAMES:
        want = ref[f"feat_{name}"]
        assert feats[name].shape == want.shape, name
        # relative to each layer's scale: float32 re-association over up to 561x7 products
        err = np.abs(feats[name] - want).max() / np.abs(want).max()
        assert err < 2e-5, f"{name}: relative error {err:.1e}"


def test_tags_in_the_wheels_order(ref):
    for which, name in (("mtt", "musicnn.mtat"), ("msd", "musicnn.msd")):
        ckpt = load_checkpoint(pretrained_path(name))
        assert ckpt.tags == list(ref[f"{which}_tags"])
        assert len(set(ckpt.tags)) == 50


def test_checkpoint_describes_itself():
    for name in ("musicnn.mtat", "musicnn.msd"):
        ckpt = load_checkpoint(pretrained_path(name))
        assert ckpt.arch == "musicnn" and ckpt.input_kind == "logmel" and ckpt.input_length == 187
        assert ckpt.sample_rate == 16000 and ckpt.logmel_config == MUSICNN
        prov = ckpt.provenance
        assert prov["licence"] == "ISC" and "Pompeu Fabra" in prov["copyright"]
        assert len(prov["source_sha256"]) == 64 and "musicnn==0.1.0" in prov["source"]
        assert {p.dtype for p in ckpt.state_dict.values() if p.is_floating_point()} == {torch.float32}
    mtat = load_checkpoint(pretrained_path("musicnn.mtat")).provenance["metrics"]
    assert round(mtat["roc_auc"], 4) == 0.9067 and round(mtat["pr_auc"], 3) == 0.383
    json.dumps(mtat)


def test_model_contract():
    net = create_model("musicnn.mtat")
    assert not net.training and net.input_kind == "logmel" and net.n_tags == 50 and net.input_length == 187
    assert sum(p.numel() for p in net.parameters()) + sum(
        b.numel() for n, b in net.named_buffers() if "running" in n) == 792_079  # TF's 64 real variables
    with pytest.raises(ConfigError, match=r"\(batch, frames, 96\)"):
        net(torch.zeros(1, 187, 80))
    # fully convolutional + global pooling: other lengths work, batch items are independent
    x = torch.randn(3, 250, 96)
    with torch.no_grad():
        assert torch.allclose(net(x)[1:2], net(x[1:2]), atol=1e-5)


def test_random_init_differs():
    # guards against a test that would pass whatever the weights: a fresh model must fail parity
    ref = np.load(REF)
    net = MusiCNN().eval()
    with torch.no_grad():
        err = np.abs(net(patches(ref["logmel"][0])).numpy() - ref["mtt_logits"][0]).max()
    assert err > 100 * LOGIT_TOL



def test_front_end_shortcut_equals_literal_layers(ref):
    # eval mode folds ReLU and BN past the frequency max (one conv + one max); the literal
    # conv -> ReLU -> BN -> max must give the same, up to float rounding, for every branch
    net = create_model("musicnn.mtat")
    x = net.input_bn(patches(ref["logmel"][2][:374]).unsqueeze(1))
    assert any((b.bn.weight < 0).any() for b in (*net.timbral, *net.temporal))  # both signs occur
    with torch.no_grad():
        for branch in (*net.timbral, *net.temporal):
            literal = branch.bn(torch.relu(branch.conv(torch.nn.functional.pad(x, (0, 0, *branch.pad_time))))).amax(3)
            fast = branch(x)
            assert fast.shape == literal.shape == (2, branch.conv.out_channels, 187)
            assert (fast - literal).abs().max() <= 1e-5 * literal.abs().max()
