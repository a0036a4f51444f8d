"""Attention maps and the [CLS] attention override of spec_att / raw_att, q2l cross-attention."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rt_tagger.factory import create_model
from rt_tagger.models.attention import EncoderLayer, MultiHeadAttention

torch.set_num_threads(2)

# Small but structurally complete configurations (all heads, both layers, real front-ends).
CFG = {
    "spec_att": dict(input_length=48, width=64, heads=4, n_tags=7),
    "raw_att": dict(input_length=243 * 20, width=64, heads=4, n_tags=7),
}


def build(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(arch, **CFG[arch]).eval()


def make_input(model: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if model.input_kind == "waveform":
        return 0.1 * torch.randn(batch, model.input_length, generator=g)
    return torch.randn(batch, model.input_length, model.n_mels, generator=g)


def n_steps(model: nn.Module) -> int:
    return model.time_steps_to_frames().n_steps


def test_multi_head_attention_matches_torch_reference() -> None:
    torch.manual_seed(0)
    mine = MultiHeadAttention(32, 4, dropout=0.0).eval()
    ref = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mine.q.weight, mine.k.weight, mine.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([mine.q.bias, mine.k.bias, mine.v.bias]))
        ref.out_proj.weight.copy_(mine.out.weight)
        ref.out_proj.bias.copy_(mine.out.bias)
        q, kv = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
        out, probs = mine(q, kv, kv)
        ref_out, ref_probs = ref(q, kv, kv, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs, ref_probs, atol=1e-6, rtol=1e-5)


def test_encoder_layer_matches_torch_post_ln_layer() -> None:
    torch.manual_seed(0)
    mine = EncoderLayer(32, 4, 64, dropout=0.0).eval()
    ref = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=False, layer_norm_eps=1e-12)
    ref.eval()
    with torch.no_grad():
        a = mine.attn
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.q.weight, a.k.weight, a.v.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.q.bias, a.k.bias, a.v.bias]))
        ref.self_attn.out_proj.load_state_dict(a.out.state_dict())
        ref.linear1.load_state_dict(mine.ffn[0].state_dict())
        ref.linear2.load_state_dict(mine.ffn[2].state_dict())
        ref.norm1.load_state_dict(mine.norm1.state_dict())
        ref.norm2.load_state_dict(mine.norm2.state_dict())
        x = torch.randn(3, 11, 32)
        torch.testing.assert_close(mine(x)[0], ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["spec_att", "raw_att"])
def test_cls_is_a_parameter(arch: str) -> None:
    model = build(arch)
    assert isinstance(model.backend.cls, nn.Parameter)
    assert any(p is model.backend.cls for p in model.parameters())


@pytest.mark.parametrize("arch", ["spec_att", "raw_att"])
def test_attention_shapes_rows_and_same_pass(arch: str) -> None:
    model = build(arch)
    x = make_input(model, 2)
    t = n_steps(model)
    with torch.no_grad():
        logits, attn = model(x, return_attention=True)
        plain = model(x)
    assert attn.shape == (2, 2, 4, t + 1, t + 1)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 4, t + 1), atol=1e-5, rtol=0)
    assert (attn >= 0).all()
    assert torch.equal(logits, plain)

    # The returned last-layer map is softmax(QK^T / sqrt(d)) of that layer's actual input.
    seen = {}
    last = model.backend.layers[-1]
    hook = last.register_forward_pre_hook(lambda mod, args: seen.update(h=args[0]))
    with torch.no_grad():
        model(x)
        hook.remove()
        h = seen["h"]
        q = last.attn.q(h).unflatten(-1, (4, 16)).transpose(1, 2)
        k = last.attn.k(h).unflatten(-1, (4, 16)).transpose(1, 2)
        manual = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)
    torch.testing.assert_close(attn[:, -1], manual, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["spec_att", "raw_att"])
def test_cls_attention_override_changes_output(arch: str) -> None:
    model = build(arch)
    x = make_input(model, 2)
    t = n_steps(model)
    uniform = torch.full((2, t), 1.0 / t)
    with torch.no_grad():
        plain = model(x)
        over, attn = model(x, return_attention=True, cls_attention=uniform)
    assert (over - plain).abs().max() > 1e-4
    # the override is in the returned map: last layer, query 0, every head; [CLS] key weight 0
    assert torch.equal(attn[:, -1, :, 0, 1:], uniform[:, None].expand(2, 4, t))
    assert (attn[:, -1, :, 0, 0] == 0).all()
    # other rows and the first layer are untouched
    _, ref_attn = model(x, return_attention=True)
    torch.testing.assert_close(attn[:, :, :, 1:], ref_attn[:, :, :, 1:])
    torch.testing.assert_close(attn[:, 0], ref_attn[:, 0])
    # (B, T) and (B, T+1) with a zero [CLS] column are the same override
    padded = torch.cat([torch.zeros(2, 1), uniform], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x, cls_attention=padded), over, atol=0, rtol=0)


@pytest.mark.parametrize("arch", ["spec_att", "raw_att"])
def test_one_hot_override_equals_manual_last_layer(arch: str) -> None:
    """One-hot on step s: the [CLS] output of the last layer is built from token s's value."""
    model = build(arch)
    t = n_steps(model)
    x = make_input(model, 1)
    steps = [0, t // 3, t - 1]
    seen = {}
    last = model.backend.layers[-1]
    hook = last.register_forward_pre_hook(lambda mod, args: seen.update(h=args[0]))
    with torch.no_grad():
        # one batched call of the manipulated passes, as the contribution map would do
        onehot = torch.zeros(len(steps), t)
        onehot[torch.arange(len(steps)), steps] = 1.0
        batched = model(x.expand(len(steps), *x.shape[1:]), cls_attention=onehot)
        hook.remove()
        h = seen["h"][:1]  # the same input for every pass
        for row, s in enumerate(steps):
            ctx = last.attn.v(h)[:, s + 1]  # every head reads token s (+1 for [CLS])
            y = last.norm1(h[:, 0] + last.attn.out(ctx))
            y = last.norm2(y + last.ffn(y))
            manual = model.backend.classifier(y)
            torch.testing.assert_close(batched[row:row + 1], manual, atol=1e-5, rtol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 1e-5  # different steps, different logits


def test_q2l_cross_attention_maps() -> None:
    torch.manual_seed(0)
    model = create_model("q2l", input_length=96, n_mels=64, channels=(16, 16, 32, 32, 32),
                         width=32, heads=4, ffn_dim=64, n_tags=6).eval()
    tm = model.time_steps_to_frames()
    assert (tm.n_steps, tm.hop, tm.unit) == (3, 32, "frames")
    x = torch.randn(2, 96, 64)
    with torch.no_grad():
        logits, cross = model(x, return_attention=True)
        plain = model(x)
    assert logits.shape == (2, 6)
    assert cross.shape == (2, 2, 4, 6, 3)  # (batch, decoder layers, heads, tags, time steps)
    torch.testing.assert_close(cross.sum(-1), torch.ones(2, 2, 4, 6), atol=1e-5, rtol=0)
    assert torch.equal(logits, plain)
    # each label query attends differently (label embeddings are distinct parameters)
    assert (cross[:, -1, :, 0] - cross[:, -1, :, 1]).abs().max() > 1e-6
    assert isinstance(model.label_embed, nn.Parameter)
    assert model.label_embed.shape == (6, 32)


def test_q2l_without_encoder() -> None:
    model = create_model("q2l", encoder_layers=0, input_length=64, n_mels=32,
                         channels=(8, 8, 8, 8, 8), width=16, heads=2, ffn_dim=32).eval()
    assert len(model.encoder) == 0
    with torch.no_grad():
        assert model(torch.randn(1, 64, 32)).shape == (1, 50)
