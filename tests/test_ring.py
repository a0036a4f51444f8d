"""SPSC ring buffer: semantics, exact overrun accounting, two-thread stress, leaks."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rt_tagger import _core
from rt_tagger.errors import AudioInputError, ConfigError
from rt_tagger.ring import RingBuffer


def test_capacity_is_rounded_to_power_of_two():
    assert RingBuffer(1000).capacity == 1024
    assert RingBuffer(1024).capacity == 1024
    assert RingBuffer(1).capacity == 1
    with pytest.raises(ConfigError):
        RingBuffer(0)


def test_push_read_peek_skip_and_wraparound():
    r = RingBuffer(16)
    seq = np.arange(100, dtype=np.float32)
    got = []
    pos = 0
    for step in (5, 7, 3, 11, 16, 1, 9):
        assert r.push(seq[pos : pos + step]) == step
        pos += step
        assert r.available == step
        np.testing.assert_array_equal(r.peek(3), seq[pos - step : pos - step + 3][: min(3, step)])
        got.append(r.read(step))
        assert r.available == 0
    np.testing.assert_array_equal(np.concatenate(got), seq[:pos])
    r.push(seq[:10])
    assert r.skip(4) == 4
    out = np.zeros(10, np.float32)
    assert r.read_into(out) == 6
    np.testing.assert_array_equal(out[:6], seq[4:10])
    assert r.read(5).size == 0  # nothing left: an empty array, not an error
    assert r.pushed_total == pos + 10 and r.read_total == pos + 10


def test_overrun_is_counted_exactly_and_keeps_accepted_prefix():
    r = RingBuffer(8)
    seq = np.arange(20, dtype=np.float32)
    assert r.push(seq[:6]) == 6
    assert r.push(seq[6:13]) == 2  # room for 2 of 7
    assert r.take_overrun() == 5
    assert r.take_overrun() == 0  # reset by the read
    assert r.push(seq[13:20]) == 0
    assert r.overrun_total == 12
    np.testing.assert_array_equal(r.read(100), seq[:8])  # nothing was overwritten
    assert r.pushed_total + r.overrun_total == 20


def test_downmix_and_channel_select():
    r = RingBuffer(64)
    block = np.array([[1.0, 3.0], [2.0, 6.0], [-1.0, 1.0]], np.float32)
    r.push(block)
    np.testing.assert_array_equal(r.read(10), [2.0, 4.0, 0.0])
    r.push(block, channel=1)
    np.testing.assert_array_equal(r.read(10), [3.0, 6.0, 1.0])
    six = np.tile(np.arange(6, dtype=np.float32), (4, 1))  # 5.1
    r.push(six)
    np.testing.assert_allclose(r.read(10), np.full(4, 2.5))


def test_bad_blocks_are_rejected_with_clear_errors():
    r = RingBuffer(64)
    with pytest.raises(AudioInputError, match="float32"):
        r.push(np.zeros(4))
    with pytest.raises(AudioInputError, match="channel 2 requested"):
        r.push(np.zeros((4, 2), np.float32), channel=2)
    with pytest.raises(AudioInputError, match="1-D .* or 2-D"):
        r.push(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(AudioInputError, match="contiguous"):
        r.push(np.zeros((4, 2), np.float32)[:, 0])
    assert r.available == 0 and r.overrun_total == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_native_two_thread_stress_no_loss_when_capacity_suffices(seed):
    # Producer and consumer are real native threads hammering the lock-free indices.
    res = _core._ring_stress(capacity=512, total=2_000_000, max_block=300, seed=seed,
                             consumer_pause_us=0, producer_waits=True)
    assert res == {"received": 2_000_000, "disorder": 0, "lost_in_sequence": 0,
                   "overrun_total": 0, "pushed_total": 2_000_000}


def test_native_two_thread_stress_exact_overrun_accounting():
    res = _core._ring_stress(capacity=256, total=300_000, max_block=200, seed=9,
                             consumer_pause_us=20, producer_waits=False)
    assert res["overrun_total"] > 0
    assert res["disorder"] == 0
    # Every lost sample is a counted overrun, and vice versa.
    assert res["lost_in_sequence"] == res["overrun_total"]
    assert res["received"] == res["pushed_total"] == 300_000 - res["overrun_total"]


def test_python_threads_producer_consumer():
    r = RingBuffer(4096)
    total = 200_000
    received = []

    def produce():
        rng = np.random.default_rng(0)
        pos = 0
        while pos < total:
            n = int(min(rng.integers(1, 512), total - pos))
            while r.capacity - r.available < n:
                pass
            assert r.push(np.arange(pos, pos + n, dtype=np.float32)) == n
            pos += n

    t = threading.Thread(target=produce)
    t.start()
    got = 0
    while got < total:
        assert r.wait(1, timeout=5.0)
        block = r.read(1000)
        received.append(block)
        got += block.size
    t.join()
    np.testing.assert_array_equal(np.concatenate(received), np.arange(total, dtype=np.float32))
    assert r.overrun_total == 0


def test_wait_times_out_and_returns_when_data_arrives():
    r = RingBuffer(64)
    assert r.wait(10, timeout=0.05) is False
    threading.Timer(0.05, lambda: r.push(np.ones(10, np.float32))).start()
    assert r.wait(10, timeout=5.0) is True


def test_wait_sleeps_through_pushes_that_are_not_enough():
    """A push wakes the waiter, which goes back to sleep until n samples are there."""
    r = RingBuffer(64)

    def pushes():
        for _ in range(3):
            r.push(np.ones(4, np.float32))
            time.sleep(0.02)

    t = threading.Thread(target=pushes)
    t.start()
    assert r.wait(12, timeout=5.0) is True
    assert r.available >= 12
    t.join()
    assert r.wait(13, timeout=0.01) is False


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def test_no_leak_when_creating_and_using_rings():
    block = np.ones((256, 2), np.float32)
    for _ in range(50):  # warm up allocator
        RingBuffer(1 << 16).push(block)
    before = _rss_kb()
    for _ in range(2000):
        r = RingBuffer(1 << 16)  # 256 KiB each: a leak would show as ~500 MB
        r.push(block)
        r.read(128)
        r.peek(64)
    assert _rss_kb() - before < 20_000
