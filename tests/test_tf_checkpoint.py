"""The TF1 checkpoint reader against checkpoints written here from the format description
(LevelDB table + BundleEntryProto), independent of TensorFlow and of the reader's own code."""
from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest

from rt_tagger.convert.tf_checkpoint import crc32c, list_tf_checkpoint, read_tf_checkpoint
from rt_tagger.errors import ModelError


# ----------------------------------------------------------------- an independent, tiny writer
def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c_bitwise(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field_varint(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v)


def field_bytes(num: int, b: bytes) -> bytes:
    return varint((num << 3) | 2) + varint(len(b)) + b


def block(entries: list[tuple[bytes, bytes]], restart_every: int = 2) -> bytes:
    out, restarts, prev = bytearray(), [], b""
    for i, (k, v) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(k), len(prev)) and k[shared] == prev[shared]:
                shared += 1
        out += varint(shared) + varint(len(k) - shared) + varint(len(v)) + k[shared:] + v
        prev = k
    for r in restarts or [0]:
        out += r.to_bytes(4, "little")
    return bytes(out) + len(restarts or [0]).to_bytes(4, "little")


def table(entries: list[tuple[bytes, bytes]], per_block: int = 3, restart_every: int = 2, kind: int = 0) -> bytes:
    out, index = bytearray(), []

    def put(contents: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(contents))
        out.extend(contents + bytes([kind]) + masked(contents + bytes([kind])).to_bytes(4, "little"))
        return handle

    for i in range(0, len(entries), per_block):
        chunk = entries[i:i + per_block]
        index.append((chunk[-1][0], put(block(chunk, restart_every))))
    meta_handle = put(block([]))
    index_handle = put(block(index, restart_every=1))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + (0xDB4775248B80FB57).to_bytes(8, "little")
    return bytes(out) + footer


DTYPES = {np.dtype("float32"): 1, np.dtype("int32"): 3, np.dtype("int64"): 9, np.dtype("float16"): 19, np.dtype("uint8"): 4}


def write_checkpoint(prefix: str, tensors: dict[str, np.ndarray], **table_kw) -> None:
    data, entries = bytearray(), [(b"", field_varint(1, 1))]  # header: num_shards = 1
    for name in sorted(tensors):
        a = np.asarray(tensors[name])  # (ascontiguousarray would make scalars 1-d)
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        shape = b"".join(field_bytes(2, field_varint(1, d)) for d in a.shape)
        entry = (field_varint(1, DTYPES[a.dtype]) + field_bytes(2, shape) + field_varint(4, len(data))
                 + field_varint(5, len(raw)) + varint((6 << 3) | 5) + masked(raw).to_bytes(4, "little"))
        entries.append((name.encode(), entry))
        data += raw
    with open(prefix + ".index", "wb") as f:
        f.write(table(entries, **table_kw))
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(data)


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv2d/kernel": rng.standard_normal((7, 3, 1, 5)).astype(np.float32),
        "conv2d/kernel/Adam": rng.standard_normal((7, 3, 1, 5)).astype(np.float32),
        "conv2d/bias": rng.standard_normal(5).astype(np.float32),
        "conv2d_1/kernel": rng.standard_normal((2, 2)).astype(np.float16),
        "global_step": np.array(123456789012, dtype=np.int64),
        "layer/ids": rng.integers(-1000, 1000, (3, 4)).astype(np.int32),
        "layer/bytes": rng.integers(0, 256, 17).astype(np.uint8),
        "layer/empty": np.zeros((0, 3), np.float32),
    }


@pytest.fixture
def ckpt(tmp_path, tensors) -> str:
    prefix = str(tmp_path / "model")
    write_checkpoint(prefix, tensors)
    return prefix


# ----------------------------------------------------------------- tests
def check_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k])


def test_round_trip(ckpt, tensors):
    check_equal(read_tf_checkpoint(ckpt), tensors)


@pytest.mark.parametrize("per_block,restart", [(1, 1), (2, 16), (100, 1), (100, 3)])
def test_block_layouts(tmp_path, tensors, per_block, restart):
    prefix = str(tmp_path / "m")
    write_checkpoint(prefix, tensors, per_block=per_block, restart_every=restart)
    check_equal(read_tf_checkpoint(prefix), tensors)


def test_list_and_include(ckpt, tensors):
    entries = list_tf_checkpoint(ckpt)
    assert entries["conv2d/kernel"].shape == (7, 3, 1, 5) and entries["conv2d/kernel"].dtype == 1
    assert entries["global_step"].shape == () and entries["global_step"].size == 8
    got = read_tf_checkpoint(ckpt, include=lambda n: not n.endswith("/Adam"))
    check_equal(got, {k: v for k, v in tensors.items() if not k.endswith("/Adam")})


def test_reads_from_zip(tmp_path, ckpt, tensors):
    archive = tmp_path / "pkg.whl"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for suffix in (".index", ".data-00000-of-00001"):
            z.write(ckpt + suffix, "pkg/ckpt/" + suffix)
    check_equal(read_tf_checkpoint("pkg/ckpt/", archive=archive), tensors)
    with pytest.raises(ModelError, match="cannot read TensorFlow checkpoint file"):
        read_tf_checkpoint("pkg/other/", archive=archive)


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def test_corrupt_tensor_bytes(ckpt, tensors):
    offset = list_tf_checkpoint(ckpt)["conv2d/bias"].offset
    flip(ckpt + ".data-00000-of-00001", offset + 3)
    with pytest.raises(ModelError, match="checksum mismatch in variable 'conv2d/bias'"):
        read_tf_checkpoint(ckpt)
    got = read_tf_checkpoint(ckpt, verify=False)  # the flip is really there
    assert not np.array_equal(got["conv2d/bias"], tensors["conv2d/bias"])
    # other variables are still fine when the broken one is not selected
    read_tf_checkpoint(ckpt, include=lambda n: n != "conv2d/bias")


def test_corrupt_index_block(ckpt):
    flip(ckpt + ".index", 10)
    with pytest.raises(ModelError, match="checksum mismatch in data block 0"):
        read_tf_checkpoint(ckpt)


def test_truncated_files(ckpt):
    data = ckpt + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(40)
    with pytest.raises(ModelError, match="truncated"):
        read_tf_checkpoint(ckpt)
    with open(ckpt + ".index", "r+b") as f:
        f.truncate(f.seek(0, 2) - 3)
    with pytest.raises(ModelError, match="magic"):
        read_tf_checkpoint(ckpt)
    with open(ckpt + ".index", "r+b") as f:
        f.truncate(20)
    with pytest.raises(ModelError, match="too short"):
        read_tf_checkpoint(ckpt)


def test_compressed_blocks_rejected(tmp_path, tensors):
    prefix = str(tmp_path / "snappy")
    write_checkpoint(prefix, tensors, kind=1)
    with pytest.raises(ModelError, match="snappy-compressed"):
        read_tf_checkpoint(prefix)


def test_missing_files(tmp_path):
    with pytest.raises(ModelError, match="cannot read"):
        read_tf_checkpoint(str(tmp_path / "nothing"))
    with pytest.raises(ModelError, match="cannot open archive"):
        read_tf_checkpoint("x/", archive=tmp_path / "none.zip")


def test_crc32c_known_values():
    # RFC 3720 (iSCSI) B.4 test vectors and the common check value
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0


@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 127, 128, 1000, 4096, 4099, 20011])
def test_crc32c_matches_bitwise(n):
    data = np.random.default_rng(n).integers(0, 256, n).astype(np.uint8).tobytes()
    assert crc32c(data) == crc32c_bitwise(data)


def test_crc32c_is_fast():
    data = np.random.default_rng(1).integers(0, 256, 4 << 20).astype(np.uint8).tobytes()
    t = time.perf_counter()
    crc32c(data)
    assert time.perf_counter() - t < 1.0  # 4 MB; a byte-wise Python loop takes ~100x longer
