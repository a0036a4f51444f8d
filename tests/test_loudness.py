"""BS.1770-4 / EBU R128 loudness meter: the standard's coefficients, EBU Tech 3341-style test
signals, pyloudnorm on real music (mono and stereo, several rates), true peak, streaming."""
from __future__ import annotations

import numpy as np
import pytest
import soxr

from rt_tagger.errors import ConfigError
from rt_tagger.monitor.loudness import LoudnessMeter, k_weighting
from signals import MUSIC_CLIPS, load_music

pyln = pytest.importorskip("pyloudnorm")

EBU_TOL = 0.1  # LU, the tolerance EBU Tech 3341 gives for its test signals
# Our gating equals pyloudnorm's to rounding error when both use the same K-weighting (its
# "DeMan" filter class is the analogue form of the BS.1770 table): measured ~4e-12 LU.
SAME_FILTER_TOL = 1e-6
# Its default "K-weighting" class approximates the shelf (G=4 dB, Q=0.707, fc=1500 Hz); on
# these clips that reads 0.04 LU lower at 48 kHz, 0.12-0.13 LU lower at 16 kHz.
STOCK_PYLN_TOL = {16000: 0.15, 44100: 0.06, 48000: 0.06}


def test_k_weighting_reproduces_the_coefficients_printed_in_bs1770():
    sos = k_weighting(48000)
    np.testing.assert_allclose(sos[0], [1.53512485958697, -2.69169618940638, 1.19839281085285,
                                        1.0, -1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(sos[1], [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
                               atol=1e-9)


def sine(rate: float, seconds: float, peak_dbfs: float, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float64)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_mono_sine_at_minus_23_dbfs_rms_reads_minus_23_lufs(rate):
    m = LoudnessMeter(rate)
    m.push(sine(rate, 10, -23 + 3.0103))  # RMS -23 dBFS (peak -20 dBFS)
    for value in (m.momentary(), m.short_term(), m.integrated()):
        assert abs(value + 23) <= EBU_TOL
    assert abs(m.level() + 23) < 0.01


@pytest.mark.parametrize("peak,expected", [(-23.0, -23.0), (-33.0, -33.0)])
def test_ebu3341_stereo_sine_cases_1_and_2(peak, expected):
    # Both channels carry the sine at `peak` dBFS; BS.1770 sums L and R (weight 1 each).
    rate = 48000
    y = sine(rate, 20, peak)
    m = LoudnessMeter(rate, 2, true_peak=False)
    m.push(np.stack([y, y], axis=1))
    for value in (m.momentary(), m.short_term(), m.integrated()):
        assert abs(value - expected) <= EBU_TOL
    mono = LoudnessMeter(rate, true_peak=False)
    mono.push(y)  # one channel of the pair: 3 dB less
    assert abs(mono.integrated() - (expected - 10 * np.log10(2))) <= EBU_TOL


@pytest.mark.parametrize("segments", [
    [(-36, 10), (-23, 60), (-36, 10)],  # Tech 3341 case 3: relative gate
    [(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)],  # case 4: absolute + relative gate
    [(-26, 20), (-20, 20.1), (-26, 20)],  # case 5
])
def test_ebu3341_gating_cases_read_minus_23(segments):
    rate = 16000
    y = np.concatenate([sine(rate, s, p) for p, s in segments])
    m = LoudnessMeter(rate, 2, true_peak=False)
    m.push(np.stack([y, y], axis=1))
    assert abs(m.integrated() + 23) <= EBU_TOL


def _music(stereo: bool) -> np.ndarray:
    a = np.asarray(load_music(MUSIC_CLIPS[0]), np.float64)
    if not stereo:
        return a
    b = np.asarray(load_music(MUSIC_CLIPS[2]), np.float64)
    return np.stack([a, 0.5 * b], axis=1)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("stereo", [False, True])
def test_integrated_loudness_matches_pyloudnorm_on_music(rate, stereo):
    y = _music(stereo)
    if rate != 16000:
        y = soxr.resample(y, 16000, rate)
    m = LoudnessMeter(rate, 2 if stereo else 1, true_peak=False)
    m.push(y)
    ours = m.integrated()
    same = pyln.Meter(rate, filter_class="DeMan").integrated_loudness(y)
    stock = pyln.Meter(rate).integrated_loudness(y)
    assert abs(ours - same) <= SAME_FILTER_TOL
    assert abs(ours - stock) <= STOCK_PYLN_TOL[rate]
    # pyloudnorm's 400 ms block loudness (same filter) == our momentary loudness at every block
    meter = pyln.Meter(rate, filter_class="DeMan")
    meter.integrated_loudness(y)
    blocks = np.array(meter.blockwise_loudness)
    ours_blocks = np.array([m.momentary(end=j + 4) for j in range(blocks.size)])
    np.testing.assert_allclose(ours_blocks, blocks, atol=1e-6)


def test_true_peak_finds_the_inter_sample_peak():
    rate = 48000
    n = np.arange(rate)
    y = np.sin(2 * np.pi * n / 4 + np.pi / 4)  # fs/4, samples land at +-0.707
    m = LoudnessMeter(rate)
    m.push(y)
    r = m.reading()
    assert abs(r["sample_peak_db"] + 3.01) < 0.01
    assert abs(r["true_peak_db"]) < 0.1
    m2 = LoudnessMeter(rate)
    m2.push(0.5 * np.sin(2 * np.pi * 997 * n / rate))  # low frequency: true peak == sample peak
    assert abs(m2.reading()["true_peak_db"] - m2.reading()["sample_peak_db"]) < 0.05


def test_streaming_equals_one_shot():
    rate = 44100
    y = soxr.resample(_music(True), 16000, rate)
    whole = LoudnessMeter(rate, 2)
    whole.push(y)
    parts = LoudnessMeter(rate, 2)
    rng = np.random.default_rng(0)
    pos = 0
    while pos < y.shape[0]:
        k = int(rng.integers(1, 9000))
        parts.push(y[pos : pos + k])
        pos += k
    assert parts.sub_blocks == whole.sub_blocks == int(y.shape[0] / rate * 10)
    a, b = whole.reading(), parts.reading()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
    assert whole.integrated() == pytest.approx(parts.integrated(), abs=1e-9)
    np.testing.assert_allclose(whole.block_powers(), parts.block_powers(), rtol=1e-9)


def test_silence_and_bad_input():
    m = LoudnessMeter(16000)
    m.push(np.zeros(16000))
    assert m.integrated() == -np.inf and m.reading()["momentary"] is None
    y = np.zeros(16000)
    y[100] = np.nan
    m.push(y)  # NaN counts as silence, never poisons the meter
    assert m.reading()["level_db"] is None
    with pytest.raises(ConfigError, match=r"expected \(n, 1\)"):
        m.push(np.zeros((10, 2)))
    with pytest.raises(ConfigError, match="weights"):
        LoudnessMeter(16000, 6)
