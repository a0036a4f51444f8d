"""Interpretation maps: attention heat map (Eq. 4), tag-wise contributions, Q2L maps, time axis."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rt_tagger import interpret as I
from rt_tagger.errors import ConfigError, ModelError
from rt_tagger.factory import create_model
from rt_tagger.features import SPEC_ATT_DB

torch.set_num_threads(1)
FRAME_S = SPEC_ATT_DB.hop_length / SPEC_ATT_DB.sample_rate  # 16 ms


def small_spec_att(seed: int = 0, **kw):
    torch.manual_seed(seed)
    args = dict(width=64, heads=4, layers=2, input_length=64, n_tags=10) | kw
    return create_model("spec_att", **args).eval()


def chunk(frames: int = 64, mels: int = 96, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((frames, mels)).astype(np.float32)


# ---- attention heat map -------------------------------------------------------------------------
def test_attention_map_is_eq4_from_the_last_layer():
    model = small_spec_att()
    x = chunk()
    am = I.attention_map(model, x)
    with torch.no_grad():
        logits, attn = model(torch.from_numpy(x)[None], return_attention=True)
        # Independent Eq. 4: softmax(QK^T / sqrt(d)) of the last layer, recomputed from its input.
        captured = []
        hook = model.backend.layers[-1].register_forward_pre_hook(
            lambda m, a: captured.append(a[0]))
        model(torch.from_numpy(x)[None])
        hook.remove()
        mha = model.backend.layers[-1].attn
        h = captured[0]
        q = mha.q(h[:, :1]).view(1, 1, 4, 16).transpose(1, 2)
        k = mha.k(h).view(1, -1, 4, 16).transpose(1, 2)
        eq4 = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(16), -1)[0, :, 0]  # (heads, T+1)
    a = attn.numpy()
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)  # every row of every head
    assert am.axes == ("time",) and am.values.shape == (64,)
    np.testing.assert_allclose(am.values, a[0, -1, :, 0, 1:].sum(0), atol=1e-6)
    np.testing.assert_allclose(am.values, eq4[:, 1:].sum(0).numpy(), atol=1e-5)
    # [CLS]'s weight on itself is left out: steps + self = heads (4 rows summing to 1).
    np.testing.assert_allclose(am.values.sum() + am.extra["cls_self"], 4.0, atol=1e-5)
    np.testing.assert_allclose(am.probs, torch.sigmoid(logits)[0].numpy(), atol=1e-6)


def test_attention_layer_and_head_options():
    model = small_spec_att()
    xb = np.stack([chunk(seed=1), chunk(seed=2)])
    with torch.no_grad():
        _, attn = model(torch.from_numpy(xb), return_attention=True)
    a = attn.numpy()[..., 0, 1:]  # (B, L, H, T)
    full = I.attention_map(model, xb, layer=None, heads=None)
    assert full.axes == ("batch", "layer", "head", "time") and full.values.shape == (2, 2, 4, 64)
    np.testing.assert_allclose(full.values, a, atol=1e-6)
    np.testing.assert_allclose(I.attention_map(model, xb, layer=0, heads=2).values, a[:, 0, 2],
                               atol=1e-6)
    np.testing.assert_allclose(I.attention_map(model, xb, heads="mean").values,
                               a[:, -1].mean(1), atol=1e-6)
    # From an engine's attn array: same map without running the model again.
    np.testing.assert_allclose(I.attention_from_attn(model, attn).values, a[:, -1].sum(1),
                               atol=1e-6)
    with pytest.raises(ConfigError, match="layer 5 out of range"):
        I.attention_map(model, xb, layer=5)
    with pytest.raises(ConfigError, match="heads must be"):
        I.attention_map(model, xb, heads="max")
    with pytest.raises(ModelError, match="no \\[CLS\\] self-attention"):
        I.attention_map(create_model("musicnn.mtat"), np.zeros((187, 96), np.float32))


def planted_model(k: int):
    """A real one-layer SpecAtt whose [CLS] attends (almost) only to step ``k``.

    The front-end outputs zeros (its projection's BatchNorm has weight/bias 0); the position
    embedding of token k + 1 is v = (+1, -1, ...), the [CLS] vector u = (+1, +1, -1, -1, ...)
    (both zero-mean, unit-variance, orthogonal within every head). Q maps u to 20 v and K is the
    identity, so only token k + 1 scores high."""
    model = small_spec_att(layers=1, width=32, heads=2)
    w = 32
    v = torch.tensor([1.0, -1.0] * (w // 2))
    u = torch.tensor([1.0, 1.0, -1.0, -1.0] * (w // 4))
    with torch.no_grad():
        bn = model.frontend.project[1]
        bn.weight.zero_(), bn.bias.zero_()
        model.backend.pos.zero_()
        model.backend.pos[0, k + 1] = v
        model.backend.cls.copy_(u.view(1, 1, w))
        mha = model.backend.layers[0].attn
        mha.q.weight.copy_(20.0 * torch.outer(v, u) / w), mha.q.bias.zero_()
        mha.k.weight.copy_(torch.eye(w)), mha.k.bias.zero_()
    return model


@pytest.mark.parametrize("k", [0, 17, 63])
def test_planted_attention_lands_at_the_right_frame_and_second(k):
    model = planted_model(k)
    am = I.attention_map(model, chunk(), start=3.0)
    assert int(np.argmax(am.values)) == k and am.values[k] > 0.99 * 2  # 2 heads
    # Step k is frame k of the chunk: centred at start + k * hop / sr.
    assert am.steps.spans[k].tolist() == [k, k + 1]
    assert am.steps.centers[k] == pytest.approx(3.0 + k * FRAME_S, abs=1e-9)
    per_frame = am.per_frame()
    assert int(np.argmax(per_frame)) == k
    # The same map via the contribution procedure's pass (extra["attn"]).
    cm = I.contribution_map(model, chunk(), tags=[0])
    np.testing.assert_allclose(I.attention_from_attn(model, cm.extra["attn"]).values[0],
                               am.values, atol=1e-6)


def _rf_support(feats_fn, x: torch.Tensor, t: int) -> tuple[int, int]:
    x = x.clone().requires_grad_(True)
    feats_fn(x)[0, t].sum().backward()
    g = x.grad[0].abs()
    g = g.sum(-1) if g.dim() == 2 else g
    nz = torch.nonzero(g > 0).flatten()
    return int(nz.min()), int(nz.max())


def test_time_map_matches_the_front_end_receptive_fields():
    """The centre of the input region each front-end step depends on (its receptive field,
    found by backpropagation) lies inside the span the time map returns for that step."""
    torch.manual_seed(0)
    spec = create_model("spec_att", width=32, heads=4).eval()
    q2l = create_model("q2l", width=32, heads=4, ffn_dim=64).eval()
    raw = create_model("raw_att", width=32, heads=4, input_length=243 * 20).eval()

    def q2l_feats(x):
        return q2l.backbone(x.transpose(1, 2).unsqueeze(1)).permute(0, 3, 1, 2).flatten(2)

    cases = [(spec, spec.frontend, torch.randn(1, 256, 96), [100, 128, 170]),
             (q2l, q2l_feats, torch.randn(1, 231, 128), [3, 4]),
             (raw, lambda x: raw.frontend(x.unsqueeze(1)).transpose(1, 2),
              0.1 * torch.randn(1, 243 * 20), [5, 10])]
    for model, fn, x, steps in cases:
        st = I.step_times(model, 20 if model is raw else 8 if model is q2l else 256)
        for t in steps:
            lo, hi = _rf_support(fn, x, t)
            centre = (lo + hi) / 2
            a, b = st.spans[t]
            assert a <= centre < b, (type(model).__name__, t, (lo, hi), (a, b))
            if model is spec:
                assert centre == t  # symmetric "same" convolutions: exactly frame t


def test_step_seconds_for_waveform_and_q2l_models():
    raw = create_model("raw_att", width=32, heads=4, input_length=243 * 20)
    st = I.step_times(raw, 20, start=1.5)
    np.testing.assert_allclose(st.seconds[3], [1.5 + 729 / 16000, 1.5 + 972 / 16000])
    # Frame coordinates: sample s <-> s / 256 + 0.5 (frame j is centred on sample 256 j).
    np.testing.assert_allclose(st.frames[3], [729 / 256 + 0.5, 972 / 256 + 0.5])
    q2l = create_model("q2l", width=32, heads=4, ffn_dim=64)
    st = I.step_times(q2l, 8, start=2.0)
    np.testing.assert_allclose(st.seconds[1], [2.0 + 31.5 * FRAME_S, 2.0 + 63.5 * FRAME_S])


# ---- tag-wise contribution ----------------------------------------------------------------------
def slow_contributions(model, x: np.ndarray) -> np.ndarray:
    """T single passes, each with the last layer's [CLS] row one-hot on one step: (n_tags, T)."""
    xt = torch.from_numpy(x)[None]
    rows = []
    with torch.no_grad():
        T = model(xt, return_attention=True)[1].shape[-1] - 1
        for t in range(T):
            one_hot = torch.zeros(1, T + 1)
            one_hot[0, t + 1] = 1.0  # full (T+1) row form: index 0 is [CLS]
            rows.append(torch.sigmoid(model(xt, cls_attention=one_hot))[0])
    return torch.stack(rows, 1).numpy()


@pytest.mark.parametrize("method", I.METHODS)
def test_contribution_batched_equals_a_loop_of_single_passes(method):
    model = small_spec_att()
    x = chunk()
    ref = slow_contributions(model, x)
    cm = I.contribution_map(model, x, method=method, batch_size=24)  # 64 steps: 3 batches
    assert cm.values.shape == (10, 64) and cm.axes == ("tag", "time")
    np.testing.assert_allclose(cm.values, ref, atol=1e-5)
    # The manipulation matters: it is not the plain prediction repeated.
    with torch.no_grad():
        plain = torch.sigmoid(model(torch.from_numpy(x)[None]))[0].numpy()
    np.testing.assert_allclose(cm.probs, plain, atol=1e-6)
    assert np.abs(cm.values - plain[:, None]).max() > 1e-3


def test_contribution_tags_batches_and_raw_att():
    model = small_spec_att()
    xb = np.stack([chunk(seed=3), chunk(seed=4)])
    cm = I.contribution_map(model, xb, tags=[7, "tag2"])
    assert cm.values.shape == (2, 2, 64) and cm.tags == ["tag7", "tag2"]
    for b in range(2):
        np.testing.assert_allclose(cm.values[b], slow_contributions(model, xb[b])[[7, 2]],
                                   atol=1e-5)
    torch.manual_seed(0)
    raw = create_model("raw_att", width=32, heads=4, input_length=243 * 12, n_tags=6).eval()
    y = (0.1 * np.random.default_rng(0).standard_normal(243 * 12)).astype(np.float32)
    rm = I.contribution_map(raw, y)
    assert rm.values.shape == (6, 12)
    np.testing.assert_allclose(rm.values, slow_contributions(raw, y), atol=1e-5)
    with pytest.raises(ConfigError, match="unknown tag 'flute'; valid tags: tag0, tag1"):
        I.contribution_map(model, xb, tags=["flute"])
    top = I.contribution_map(model, xb, topk=3)
    with torch.no_grad():
        plain = torch.sigmoid(model(torch.from_numpy(xb))).numpy().mean(0)
    assert top.extra["tag_index"] == list(np.argsort(-plain)[:3])
    assert top.tags == [f"tag{i}" for i in top.extra["tag_index"]]
    every = I.contribution_map(model, xb).values
    assert top.values.shape == (2, 3, 64)
    np.testing.assert_allclose(top.values, every[:, top.extra["tag_index"]], atol=1e-6)
    with pytest.raises(ConfigError, match="topk must be"):
        I.contribution_map(model, xb, topk=2, tags=[1])
    with pytest.raises(ConfigError, match="method must be one of"):
        I.contribution_map(model, xb, method="fast")


def test_contribution_restores_train_mode():
    model = small_spec_att().train()
    I.contribution_map(model, chunk(), tags=[0])
    assert model.training


# ---- Q2L --------------------------------------------------------------------------------------
def test_q2l_tag_maps_shapes_normalisation_and_selection():
    torch.manual_seed(0)
    model = create_model("q2l", width=32, heads=4, ffn_dim=64, n_tags=12).eval()
    x = np.random.default_rng(0).standard_normal((231, 128)).astype(np.float32)
    with torch.no_grad():
        logits, cross = model(torch.from_numpy(x)[None], return_attention=True)
    c = cross.numpy()  # (1, layers, heads, tags, T)
    qm = I.q2l_tag_maps(model, x)
    assert qm.axes == ("tag", "time") and qm.values.shape == (12, 8)
    np.testing.assert_allclose(qm.values.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(qm.values, c[0, -1].mean(0), atol=1e-6)
    summed = I.q2l_tag_maps(model, x, tags=["tag3", 5], heads="sum", layer=0)
    np.testing.assert_allclose(summed.values, c[0, 0][:, [3, 5]].sum(0), atol=1e-6)
    np.testing.assert_allclose(summed.values.sum(-1), 4.0, atol=1e-5)
    np.testing.assert_allclose(summed.probs, torch.sigmoid(logits)[0, [3, 5]].numpy(), atol=1e-6)
    every = I.q2l_tag_maps(model, x, layer=None, heads=None)
    assert every.values.shape == (2, 4, 12, 8)
    # Per frame: step t's value on frames [32 t, 32 t + 32), the chunk's 231 frames.
    np.testing.assert_allclose(qm.per_frame(231), np.repeat(qm.values, 32, axis=1)[:, :231],
                               atol=1e-12)
    with pytest.raises(ModelError, match="needs a q2l model"):
        I.q2l_tag_maps(small_spec_att(), chunk())


def test_spread_to_frames_matches_fine_sampling():
    """Overlap-weighted step -> frame resampling (raw_att: 243-sample steps, 256-sample frames)."""
    raw = create_model("raw_att", width=32, heads=4, input_length=243 * 20)
    st = I.step_times(raw, 20)
    vals = np.random.default_rng(0).random(20)
    total, cover = I.spread_to_frames(vals, st.frames, 20)
    fine = np.linspace(0, 20, 200001)[:-1] + 0.5e-4  # 10^4 probes per frame
    idx = np.searchsorted(st.frames[:, 0], fine, side="right") - 1
    inside = (fine >= st.frames[0, 0]) & (fine < st.frames[-1, 1])
    probe = np.where(inside, vals[np.clip(idx, 0, 19)], 0.0)
    np.testing.assert_allclose(total, probe.reshape(20, -1).mean(1), atol=1e-3)
    np.testing.assert_allclose(cover, inside.reshape(20, -1).mean(1), atol=1e-3)


# ---- whole files --------------------------------------------------------------------------------
def test_explain_array_averages_overlapping_chunks():
    model = small_spec_att()
    spec = chunk(frames=150, seed=9)
    fm = I.explain_array(model, spec, hop=32, tags=[1, 4])
    starts = [0, 32, 64]  # the live tagger's chunks: every 32 frames while a whole one fits
    np.testing.assert_allclose(fm.chunk_seconds[:, 0], (np.array(starts) - 0.5) * FRAME_S)
    att, con, n = np.zeros(150), np.zeros((2, 150)), np.zeros(150)
    for i, s in enumerate(starts):
        c = spec[s:s + 64]
        am = I.attention_map(model, c)
        att[s:s + 64] += am.values
        con[:, s:s + 64] += I.contribution_map(model, c, tags=[1, 4]).values
        n[s:s + 64] += 1
        np.testing.assert_allclose(fm.taggram[i], am.probs, atol=1e-6)
    np.testing.assert_allclose(fm.coverage, n)
    seen = n > 0  # frames 128..149: after the last whole chunk, tagged by no chunk (live: neither)
    assert seen[:128].all() and not seen[128:].any()
    np.testing.assert_allclose(fm.attention[seen], att[seen] / n[seen], atol=1e-6)
    np.testing.assert_allclose(fm.contribution[:, seen], con[:, seen] / n[seen], atol=1e-5)
    assert np.isnan(fm.attention[~seen]).all() and np.isnan(fm.contribution[:, ~seen]).all()
    np.testing.assert_allclose(fm.frame_times, np.arange(150) * FRAME_S)
    # Shorter than a chunk: padded, and the maps cover only the real frames.
    short = I.explain_array(model, spec[:40])
    assert short.attention.shape == (40,) and np.isfinite(short.attention).all()


def test_explain_array_real_musicnn_follows_the_music():
    """musicnn.mtat on piano then drums: 'drums' rises and 'piano' falls after the join."""
    from signals import load_music

    from rt_tagger.features import MUSICNN, logmel

    y = np.concatenate([load_music("render_piano_monteverdi_12s.flac"),
                        load_music("render_drums_70bpm_12s.flac")])
    model = create_model("musicnn.mtat")
    fm = I.explain_array(model, logmel(y, MUSICNN))
    assert fm.attention is None and fm.contribution is None
    centre = fm.chunk_seconds.mean(1)
    first, second = centre < 11.0, centre > 13.0
    drums, piano = fm.tags.index("drums"), fm.tags.index("piano")
    assert fm.taggram[second, drums].mean() > fm.taggram[first, drums].mean() + 0.2
    assert fm.taggram[first, piano].mean() > fm.taggram[second, piano].mean()
