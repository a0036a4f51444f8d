"""Self-describing checkpoints: roundtrip, metadata, and every kind of broken file."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rt_tagger.checkpoint import load_checkpoint, save_checkpoint
from rt_tagger.errors import ConfigError, ModelError
from rt_tagger.factory import create_model
from rt_tagger.features.config import SPEC_ATT_DB

torch.set_num_threads(2)

SMALL = dict(input_length=32, width=32, heads=4, n_tags=4)
TAGS = ["rock", "piano", "quiet", "female vocal"]


def small_spec_att() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("spec_att", **SMALL)
    # make BatchNorm running statistics non-trivial so that buffers matter in the roundtrip
    with torch.no_grad():
        model.train()(torch.randn(4, 32, 96) * 3 + 1)
    return model.eval()


def save_small(path: Path, **overrides) -> Path:
    kwargs = dict(arch="spec_att", arch_args=SMALL, tags=TAGS, sample_rate=16000,
                  input_kind="logmel", input_length=32, logmel=SPEC_ATT_DB,
                  thresholds=[0.5, 0.4, 0.3, 0.2],
                  provenance={"source": "unit test", "licence": "Apache-2.0"},
                  model_card="A tiny model.")
    kwargs.update(overrides)
    return save_checkpoint(path, small_spec_att(), **kwargs)


def reference_sha256(tensors: dict[str, torch.Tensor], dtype_names: dict[str, str]) -> str:
    """The documented checksum, computed independently of rt_tagger.checkpoint."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.numpy().tobytes()
        h.update(json.dumps([name, dtype_names[name], list(t.shape), len(raw)]).encode() + b"\n")
        h.update(raw)
    return h.hexdigest()


def write_raw(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None) -> Path:
    """Write a safetensors file by hand, with ``meta`` as rt_tagger metadata (sha recomputed)."""
    metadata = None
    if meta is not None:
        names = {"torch.float32": "F32", "torch.int64": "I64"}
        meta = dict(meta, sha256=reference_sha256(
            tensors, {k: names[str(v.dtype)] for k, v in tensors.items()}))
        metadata = {"rt_tagger": json.dumps(meta)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_roundtrip_metadata_and_identical_outputs(tmp_path: Path) -> None:
    path = save_small(tmp_path / "m.safetensors")
    ckpt = load_checkpoint(path)
    assert (ckpt.arch, ckpt.arch_args, ckpt.tags) == ("spec_att", SMALL, TAGS)
    assert (ckpt.sample_rate, ckpt.input_kind, ckpt.input_length) == (16000, "logmel", 32)
    assert ckpt.logmel_config == SPEC_ATT_DB
    assert ckpt.thresholds == [0.5, 0.4, 0.3, 0.2]
    assert ckpt.provenance["licence"] == "Apache-2.0"
    assert ckpt.model_card == "A tiny model." and ckpt.format_version == 1
    # the checksum is the documented one
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8:8 + header_len])
    dtypes = {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert ckpt.sha256 == reference_sha256(ckpt.state_dict, dtypes)

    original = small_spec_att()
    model = ckpt.build_model()
    assert not model.training
    assert model.checkpoint.tags == TAGS and model.checkpoint.state_dict == {}
    x = torch.randn(3, 32, 96)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
        assert torch.equal(create_model(str(path))(x), original(x))  # by path, too
        assert torch.equal(create_model(path)(x), original(x))


@pytest.mark.parametrize("arch,args", [
    ("raw_att", dict(input_length=243 * 8, width=32, heads=2, n_tags=3)),
    ("raw_cnn_l", dict(n_tags=3)),
    ("short_res", dict(input_length=32, n_mels=32, channels=[8, 8, 8, 8, 8, 8, 16], n_tags=3)),
    ("q2l", dict(input_length=64, n_mels=32, channels=[8, 8, 8, 8, 8], width=16, heads=2,
                 ffn_dim=32, n_tags=3)),
])
def test_roundtrip_every_architecture(tmp_path: Path, arch: str, args: dict) -> None:
    torch.manual_seed(0)
    model = create_model(arch, **args).eval()
    waveform = model.input_kind == "waveform"
    logmel = None if waveform else SPEC_ATT_DB.replace(n_mels=args["n_mels"])
    path = save_checkpoint(tmp_path / f"{arch}.safetensors", model, arch=arch, arch_args=args,
                           tags=["a", "b", "c"], sample_rate=16000, input_kind=model.input_kind,
                           input_length=model.input_length, logmel=logmel)
    loaded = create_model(path)
    shape = (2, model.input_length) if waveform else (2, model.input_length, model.n_mels)
    x = torch.randn(*shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="checkpoint file not found: .*nope.safetensors$"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(ModelError, match="not found"):
        create_model(str(tmp_path / "nope.safetensors"))


@pytest.mark.parametrize("content", [b"", b"hello world, not tensors", b"\x00" * 64,
                                     b"PK\x03\x04" + b"\x00" * 100])
def test_not_a_safetensors_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="is not a safetensors file"):
        load_checkpoint(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_small(tmp_path / "m.safetensors")
    data = path.read_bytes()
    for keep in (len(data) - 1, len(data) // 2, 20):
        cut = tmp_path / f"cut{keep}.safetensors"
        cut.write_bytes(data[:keep])
        with pytest.raises(ModelError, match="is truncated") as info:
            load_checkpoint(cut)
        assert "\n" not in str(info.value)


def test_flipped_byte_fails_the_checksum(tmp_path: Path) -> None:
    path = save_small(tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    for pos in (len(data) - 5, len(data) - 3000):  # inside the tensor payload
        bad = bytearray(data)
        bad[pos] ^= 0x10
        broken = tmp_path / "flipped.safetensors"
        broken.write_bytes(bytes(bad))
        with pytest.raises(ModelError, match="is corrupt: tensor checksum"):
            load_checkpoint(broken)


def test_safetensors_without_metadata(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "plain.safetensors", {"w": torch.zeros(3)}, meta=None)
    with pytest.raises(ModelError, match="no 'rt_tagger' metadata"):
        load_checkpoint(path)


def good_meta() -> dict:
    return dict(format_version=1, arch="spec_att", arch_args=SMALL, tags=TAGS, sample_rate=16000,
                input_kind="logmel", input_length=32, logmel=SPEC_ATT_DB.to_dict(),
                thresholds=None, provenance={}, model_card=None)


@pytest.mark.parametrize("change,match", [
    (dict(format_version=99), "format_version 99 is not supported"),
    (dict(tags=[]), "tags must be a non-empty list"),
    (dict(tags=["t0", "t1", "t0", "t1"]), "tag names must be unique; repeated: 't0', 't1'"),
    (dict(input_kind="mfcc"), "input_kind must be one of"),
    (dict(logmel=None), "needs its logmel parameters"),
    (dict(logmel=dict(SPEC_ATT_DB.to_dict(), n_fft=500)), "n_fft must be a power of two"),
    (dict(thresholds=[0.5]), "thresholds must be null or 4 numbers"),
    (dict(arch="no_such_arch"), "unknown architecture 'no_such_arch'; known architectures: .*spec_att"),
])
def test_invalid_metadata(tmp_path: Path, change: dict, match: str) -> None:
    sd = small_spec_att().state_dict()
    path = write_raw(tmp_path / "m.safetensors", dict(sd), dict(good_meta(), **change))
    with pytest.raises(ModelError, match=match):
        load_checkpoint(path)


def test_hand_written_file_with_good_metadata_loads(tmp_path: Path) -> None:
    """Control for the two tests around it: the hand-written file itself is fine."""
    sd = small_spec_att().state_dict()
    path = write_raw(tmp_path / "m.safetensors", dict(sd), good_meta())
    load_checkpoint(path).build_model()


def test_state_dict_mismatches_are_model_errors(tmp_path: Path) -> None:
    sd = dict(small_spec_att().state_dict())
    missing = dict(sd)
    del missing["backend.cls"]
    path = write_raw(tmp_path / "missing.safetensors", missing, good_meta())
    with pytest.raises(ModelError, match=r"do not match the architecture; missing: backend\.cls"):
        load_checkpoint(path).build_model()

    wrong_args = dict(good_meta(), arch_args=dict(SMALL, width=64))
    path = write_raw(tmp_path / "width.safetensors", sd, wrong_args)
    with pytest.raises(ModelError, match=r"shape mismatch: backend\.classifier\.weight is \(4, 32\), needs \(4, 64\)"):
        load_checkpoint(path).build_model()

    unknown_kw = dict(good_meta(), arch_args=dict(SMALL, colour="red"))
    path = write_raw(tmp_path / "kw.safetensors", sd, unknown_kw)
    with pytest.raises(ModelError, match="do not fit architecture 'spec_att'"):
        create_model(path)

    lying = dict(good_meta(), input_length=64)  # metadata disagrees with arch_args
    path = write_raw(tmp_path / "len.safetensors", sd, lying)
    with pytest.raises(ModelError, match="input_length=64"):
        create_model(path)


def test_save_refuses_inconsistent_descriptions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_tags=3 but the model has n_tags=4"):
        save_small(tmp_path / "a.safetensors", tags=["a", "b", "c"])
    with pytest.raises(ConfigError, match="do not match the architecture"):
        save_small(tmp_path / "b.safetensors", arch_args=dict(SMALL, width=64))
    with pytest.raises(ConfigError, match="logmel sample_rate 16000 != sample_rate 22050"):
        save_small(tmp_path / "c.safetensors", sample_rate=22050)
    with pytest.raises(ConfigError, match="JSON"):
        save_small(tmp_path / "d.safetensors", provenance={"when": object()})
    with pytest.raises(ModelError, match="unknown architecture"):
        save_small(tmp_path / "e.safetensors", arch="nope")
    assert not list(tmp_path.iterdir())  # nothing half-written
