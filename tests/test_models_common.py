"""Behaviour every architecture of ours must have: shapes, training, determinism, batching."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rt_tagger.errors import ConfigError
from rt_tagger.factory import create_model, default_logmel

torch.set_num_threads(2)

ARCHS = ["spec_att", "raw_att", "raw_cnn_l", "short_res", "q2l"]
# Reduced sizes for the tests that run many passes (the defaults are covered above them).
SMALL = {
    "spec_att": dict(input_length=64, width=64, heads=4),
    "raw_att": dict(input_length=243 * 24, width=64, heads=4),
    "raw_cnn_l": dict(),
    "short_res": dict(input_length=64, n_mels=64, channels=(16, 16, 32, 32, 32, 32, 64)),
    "q2l": dict(input_length=64, n_mels=64, channels=(16, 16, 32, 32, 32), width=64, ffn_dim=128),
}


def make_input(model: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if model.input_kind == "waveform":
        return 0.1 * torch.randn(batch, model.input_length, generator=g)
    # log-mel-like values (dB scale around -40) so the input BatchNorm has work to do
    return -40 + 10 * torch.randn(batch, model.input_length, model.n_mels, generator=g)


@pytest.mark.parametrize("arch", ARCHS)
def test_defaults_forward_shape_and_attributes(arch: str) -> None:
    model = create_model(arch).eval()
    assert model.input_kind in ("logmel", "waveform")
    assert model.n_tags == 50
    assert (default_logmel(arch) is None) == (model.input_kind == "waveform")
    if model.input_kind == "logmel":
        assert default_logmel(arch).n_mels == model.n_mels
    with torch.no_grad():
        y = model(make_input(model, 2))
    assert y.shape == (2, 50)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # logits, not probabilities: an untrained model still produces values outside [0, 1]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{arch}: {n_params} parameters")


@pytest.mark.parametrize("arch", ARCHS)
def test_one_optimizer_step_reduces_bce(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, dropout=0.0, **SMALL[arch]).train()  # no dropout: train-mode loss is repeatable
    x = make_input(model, 2, seed=1)
    y = (torch.rand(2, model.n_tags, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    before = loss_fn(model(x), y)
    opt.zero_grad()
    before.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    opt.step()
    with torch.no_grad():
        after = loss_fn(model(x), y)  # still train mode: batch statistics, same as "before"
    assert after.item() < before.item() - 1e-4, (before.item(), after.item())


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_is_deterministic_and_batch_independent(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, **SMALL[arch]).eval()
    x = make_input(model, 3)
    with torch.no_grad():
        a, b = model(x), model(x)
        singles = torch.cat([model(x[i:i + 1]) for i in range(3)])
        swapped = model(torch.stack([x[0], 5 * x[1] + 3, -x[2]]))
    assert torch.equal(a, b)
    torch.testing.assert_close(singles, a, atol=1e-4, rtol=1e-4)
    # sample 0's output must not move when the other batch items change
    torch.testing.assert_close(swapped[0], a[0], atol=1e-4, rtol=1e-4)
    assert (swapped[1] - a[1]).abs().max() > 1e-5  # ...while sample 1 responds to its input


@pytest.mark.parametrize("arch", ARCHS)
def test_train_mode_dropout_is_active(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, **SMALL[arch]).train()
    x = make_input(model, 2)
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_arguments_are_config_errors(arch: str) -> None:
    with pytest.raises(ConfigError, match=arch):
        create_model(arch, n_tags=0)
    with pytest.raises(ConfigError, match="bad arguments"):
        create_model(arch, no_such_argument=1)


@pytest.mark.parametrize("arch", ["spec_att", "raw_att", "q2l"])
def test_time_map_covers_the_input(arch: str) -> None:
    model = create_model(arch)
    tm = model.time_steps_to_frames()
    spans = tm.spans()
    assert spans.shape == (tm.n_steps, 2)
    assert spans[0, 0] == 0
    assert (spans[1:, 0] == spans[:-1, 1]).all()  # contiguous, non-overlapping
    # the last step starts inside the input and the steps reach (at least nearly) its end
    assert spans[-1, 0] < model.input_length <= spans[-1, 1] + tm.hop
    with torch.no_grad():
        _, attn = model.eval()(make_input(model, 1), return_attention=True)
    assert attn.shape[-1] - (arch != "q2l") == tm.n_steps  # +1 for [CLS] in self-attention
