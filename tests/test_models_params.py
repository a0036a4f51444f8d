"""Parameter counts derived by hand from the papers (Won et al. 2019 Table 1, Lee et al. 2017,
Won et al. 2020) and standard layer formulas, compared with the built models."""
from __future__ import annotations

from torch import nn

from rt_tagger.factory import create_model

# Won et al. 2019, Table 1, Spec front-end: (channels, frequency, time).
TABLE1_SPEC_VERTICAL = [(32, 38, 1), (32, 86, 1), (16, 38, 3), (16, 86, 3), (8, 38, 7), (8, 86, 7)]
TABLE1_SPEC_HORIZONTAL = [(64, 33), (32, 65), (16, 129), (8, 165)]  # (channels, time)
# Table 1, Raw: channels of the ten 1x3 layers.
TABLE1_RAW = [128, 128, 128, 256, 256, 256, 256, 256, 256, 512]


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_bn(c_in: int, c_out: int, kernel: int) -> int:
    """conv weights + bias + BatchNorm scale and shift."""
    return c_in * c_out * kernel + c_out + 2 * c_out


def encoder(width: int, ffn: int, layers: int) -> int:
    per_layer = 4 * (width * width + width) + (width * ffn + ffn) + (ffn * width + width) + 4 * width
    return layers * per_layer


def att_backend(width: int, steps: int, n_tags: int, layers: int = 2) -> int:
    # [CLS] + learned positions (steps + 1) + embedding LayerNorm + encoder + classifier
    return width + (steps + 1) * width + 2 * width + encoder(width, 4 * width, layers) \
        + width * n_tags + n_tags


def test_spec_att_front_end_matches_table1() -> None:
    model = create_model("spec_att")
    vertical = sum(conv_bn(1, c, f * t) for c, f, t in TABLE1_SPEC_VERTICAL)
    horizontal = sum(conv_bn(1, c, t) for c, t in TABLE1_SPEC_HORIZONTAL)
    assert (vertical, horizontal) == (17200, 7936)
    assert count(model.frontend.vertical) == vertical
    assert count(model.frontend.horizontal) == horizontal
    n_ch = sum(c for c, _, _ in TABLE1_SPEC_VERTICAL) + sum(c for c, _ in TABLE1_SPEC_HORIZONTAL)
    expected = 2 + vertical + horizontal + conv_bn(n_ch, 512, 1) + att_backend(512, 256, 50)
    print(f"spec_att: {count(model)} parameters (front-end {count(model.frontend)})")
    assert count(model) == expected


def test_spec_att_filter_heights_scale_with_n_mels() -> None:
    model = create_model("spec_att", n_mels=128, input_length=16)
    kernels = sorted(branch[0].kernel_size for branch in model.frontend.vertical)
    assert kernels == [(51, 1), (51, 3), (51, 7), (115, 1), (115, 3), (115, 7)]  # 0.4, 0.9 x 128
    lengths = sorted(branch[0].kernel_size[0] for branch in model.frontend.horizontal)
    assert lengths == [33, 65, 129, 165]


def test_spec_att_frontend_scale_doubles_the_filters() -> None:
    model = create_model("spec_att", frontend_scale=2)
    vertical = sum(conv_bn(1, 2 * c, f * t) for c, f, t in TABLE1_SPEC_VERTICAL)
    horizontal = sum(conv_bn(1, 2 * c, t) for c, t in TABLE1_SPEC_HORIZONTAL)
    assert count(model.frontend.vertical) == vertical
    assert count(model.frontend.horizontal) == horizontal
    assert model.frontend.project[0].in_channels == 2 * 232


def test_raw_att_matches_table1() -> None:
    model = create_model("raw_att")
    chans = [1] + TABLE1_RAW[:5]
    front = sum(conv_bn(a, b, 3) for a, b in zip(chans[:-1], chans[1:]))
    assert count(model.frontend) == front
    expected = front + conv_bn(256, 512, 7) + att_backend(512, 270, 50)
    print(f"raw_att: {count(model)} parameters (front-end {front})")
    assert count(model) == expected


def test_raw_cnn_l_matches_table1() -> None:
    model = create_model("raw_cnn_l")
    chans = [1] + TABLE1_RAW
    expected = sum(conv_bn(a, b, 3) for a, b in zip(chans[:-1], chans[1:])) + 512 * 50 + 50
    print(f"raw_cnn_l: {count(model)} parameters")
    assert count(model) == expected


def res2d(c_in: int, c_out: int) -> int:
    # two 3x3 convs with BN, plus the 3x3 strided projection shortcut with BN
    return conv_bn(c_in, c_out, 9) + conv_bn(c_out, c_out, 9) + conv_bn(c_in, c_out, 9)


def test_short_res_parameter_count() -> None:
    model = create_model("short_res")
    chans = [1, 128, 128, 256, 256, 256, 256, 512]
    blocks = sum(res2d(a, b) for a, b in zip(chans[:-1], chans[1:]))
    head = (512 * 512 + 512) + 2 * 512 + (512 * 50 + 50)
    print(f"short_res: {count(model)} parameters")
    assert count(model) == 2 + blocks + head


def test_q2l_parameter_count() -> None:
    model = create_model("q2l")
    chans = [1, 128, 128, 256, 256, 256]
    backbone = 2 + sum(res2d(a, b) for a, b in zip(chans[:-1], chans[1:]))
    width, ffn, tags = 256, 1024, 50
    project = 256 * 4 * width + width  # 4 remaining mel bands flattened into the channels
    enc = encoder(width, ffn, 1)
    dec = 2 * (2 * 4 * (width * width + width) + (width * ffn + ffn) + (ffn * width + width)
               + 6 * width)
    heads = tags * width + 2 * width + tags * width + tags  # labels, final LN, GroupFC
    print(f"q2l: {count(model)} parameters (backbone {backbone})")
    assert count(model.backbone) == backbone
    assert count(model) == backbone + project + enc + dec + heads
