"""Log-mel: every backend against librosa, against each other, streaming against batch.

Tolerances are stated on the scale that matters: absolute error of log10(1 + 10000 * mel),
where musical content spans roughly 0..6.
"""
from __future__ import annotations

import librosa
import numpy as np
import pytest

from rt_tagger.errors import AudioInputError, ConfigError
from rt_tagger.features import BACKENDS, LogMel, LogMelConfig, StreamingLogMel, logmel, mel_filterbank
from signals import MUSIC_CLIPS, SYNTHETIC, load_music, synthetic

LIBROSA_TOL = 1e-4  # issue requirement on the log10(1+10000x) scale
BACKEND_TOL = 1e-4


def librosa_logmel(y: np.ndarray, c: LogMelConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels,
        fmin=c.fmin, fmax=c.f_max, power=c.power, center=c.center, pad_mode=c.pad_mode,
        htk=False, norm="slaney", window="hann",
    ).T
    if c.log == "log10p":
        return np.log10(1 + c.log_scale * mel)
    if c.log == "db":
        return librosa.power_to_db(mel, ref=1.0, amin=c.amin, top_db=None)
    return mel


@pytest.mark.slow
def test_installed_librosa_pads_with_constant_by_default():
    # Our default pad_mode copies librosa's; if librosa changes it, this must be revisited.
    import inspect

    default = inspect.signature(librosa.stft).parameters["pad_mode"].default
    assert default == LogMelConfig().pad_mode == "constant"


def test_filterbank_matches_librosa():
    for sr, n_fft, n_mels, fmax in [(16000, 512, 96, 8000), (22050, 2048, 128, None), (16000, 512, 40, 4000)]:
        ours = mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax, htk=False, norm="slaney")
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clip", MUSIC_CLIPS)
@pytest.mark.slow
def test_matches_librosa_on_real_music(backend, clip):
    y = load_music(clip)
    c = LogMelConfig()
    ours = logmel(y, c, backend=backend)
    ref = librosa_logmel(y, c)
    assert ours.shape == ref.shape == (1 + y.size // c.hop_length, 96)
    err = np.abs(ours - ref).max()
    assert err <= LIBROSA_TOL, f"{backend} on {clip}: max abs error {err:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", SYNTHETIC)
def test_matches_librosa_on_synthetic(backend, kind):
    y = synthetic(kind)
    ours = logmel(y, backend=backend)
    err = np.abs(ours - librosa_logmel(y, LogMelConfig())).max()
    assert err <= LIBROSA_TOL, f"{backend} on {kind}: max abs error {err:.2e}"


CONFIGS = {
    "musicnn": LogMelConfig(),
    "reflect": LogMelConfig(pad_mode="reflect"),
    "db": LogMelConfig(log="db"),
    "db_top80": LogMelConfig(log="db", top_db=80.0),
    "no_center_hop160": LogMelConfig(center=False, hop_length=160),
    "magnitude_128mels_1024": LogMelConfig(n_fft=1024, hop_length=512, n_mels=128, power=1.0, fmax=None, log="none"),
    "22k": LogMelConfig(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, fmax=None),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_configurations_match_librosa(name, backend):
    c = CONFIGS[name]
    y = load_music(MUSIC_CLIPS[0])[: 4 * 16000]
    ours = logmel(y, c, backend=backend)
    ref = librosa_logmel(y, c)
    if c.log == "db" and c.top_db is not None:  # our floor is per frame (documented)
        ref = np.maximum(ref, ref.max(axis=1, keepdims=True) - c.top_db)
    scale = 1.0 if c.log != "none" else max(1.0, np.abs(ref).max())
    tol = {"db": 1e-3}.get(c.log, LIBROSA_TOL)  # dB is 10*log10: 10x the log10 error
    assert ours.shape == ref.shape
    if c.log == "db":
        # Compare within 80 dB of the peak: below that both sides are float32 round-off of
        # near-zero power (~1e-9 against 1e-10) and their dB values are noise.
        keep = ref > ref.max() - 80
        ours, ref = ours[keep], ref[keep]
    err = np.abs(ours - ref).max() / scale
    assert err <= tol, f"{name}/{backend}: {err:.2e}"


@pytest.mark.parametrize("name", CONFIGS)
def test_backends_agree(name):
    c = CONFIGS[name]
    y = load_music(MUSIC_CLIPS[1])[: 3 * 16000]
    native = logmel(y, c)
    scale = max(1.0, np.abs(native).max()) if c.log == "none" else 1.0
    for backend in ("numba", "numpy"):
        err = np.abs(logmel(y, c, backend=backend) - native).max() / scale
        assert err <= (1e-3 if c.log == "db" else BACKEND_TOL), f"{backend}: {err:.2e}"


def _stream(lm: LogMel, y: np.ndarray, sizes) -> np.ndarray:
    s = lm.stream()
    parts, i = [], 0
    for n in sizes:
        parts.append(s.push(y[i : i + n]))
        i += n
        if i >= y.size:
            break
    parts.append(s.push(y[i:]))
    parts.append(s.flush())
    assert all(p.shape[1] == lm.config.n_mels for p in parts)
    return np.concatenate(parts)


@pytest.mark.parametrize("name", ["musicnn", "reflect", "db_top80", "no_center_hop160", "22k"])
@pytest.mark.parametrize("backend", ["native", "numba"])
def test_streaming_equals_batch_bit_for_bit(name, backend):
    c = CONFIGS[name]
    y = np.ascontiguousarray(load_music(MUSIC_CLIPS[2])[: 5 * 16000])
    lm = LogMel(c, backend=backend)
    batch = lm(y)
    rng = np.random.default_rng(1)
    for sizes in (
        rng.integers(0, 2000, 400),  # random, including empty blocks
        [1] * 700 + [255, 257, 256, 10000],  # single samples and hop-sized
        [y.size],  # one push
        [100_000],  # larger than the internal buffer
    ):
        streamed = _stream(lm, y, sizes)
        assert streamed.shape == batch.shape
        assert np.array_equal(streamed, batch), f"max diff {np.abs(streamed - batch).max()}"


def test_streaming_numpy_backend_equals_batch():
    y = np.ascontiguousarray(load_music(MUSIC_CLIPS[0])[: 3 * 16000])
    lm = LogMel(backend="numpy")
    streamed = _stream(lm, y, np.random.default_rng(2).integers(0, 3000, 100))
    np.testing.assert_allclose(streamed, lm(y), rtol=0, atol=1e-6)


def test_streaming_emits_frames_as_soon_as_complete():
    c = LogMelConfig()
    s = StreamingLogMel(c)
    # centre padding: frame f covers padded samples [256 f, 256 f + 512) = signal [256 f - 256, 256 f + 256)
    assert s.push(np.zeros(255, np.float32)).shape[0] == 0
    assert s.push(np.zeros(1, np.float32)).shape[0] == 1  # frame 0 complete at 256 samples
    assert s.push(np.zeros(256, np.float32)).shape[0] == 1
    assert s.push(np.zeros(256 * 10, np.float32)).shape[0] == 10
    assert s.frames_out == 12 and s.samples_in == 256 * 12
    assert s.flush().shape[0] == 1  # 1 + n // hop = 13 in all
    with pytest.raises(AudioInputError, match="flushed"):
        s.push(np.zeros(10, np.float32))
    s.reset()
    assert s.push(np.zeros(256, np.float32)).shape[0] == 1


def test_batch_threads_give_identical_frames():
    y = np.ascontiguousarray(np.tile(load_music(MUSIC_CLIPS[1]), 3))
    one = LogMel(n_threads=1)(y)
    two = LogMel(n_threads=2)(y)
    assert np.array_equal(one, two)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", BACKENDS)
def test_rejects_bad_arrays(backend):
    lm = LogMel(backend=backend)
    y = synthetic("noise", 1.0)
    with pytest.raises(AudioInputError, match="float32"):
        lm(y.astype(np.float64))
    with pytest.raises(AudioInputError, match="float32"):
        lm((y * 1000).astype(np.int16))
    with pytest.raises(AudioInputError, match="1-D"):
        lm(np.stack([y, y], axis=1))
    with pytest.raises(AudioInputError, match="contiguous"):
        lm(np.repeat(y, 2)[::2])
    with pytest.raises(AudioInputError, match="empty"):
        lm(np.zeros(0, np.float32))
    with pytest.raises(AudioInputError, match="numpy array"):
        lm([0.0] * 1000)
    with pytest.raises(AudioInputError, match="shorter than one frame"):
        LogMel(LogMelConfig(center=False), backend=backend)(np.zeros(100, np.float32))
    with pytest.raises(AudioInputError, match="reflect"):
        LogMel(LogMelConfig(pad_mode="reflect"), backend=backend)(np.zeros(100, np.float32))


def test_short_signal_with_centre_padding_gives_one_frame():
    for backend in BACKENDS:
        out = logmel(np.full(10, 0.1, np.float32), backend=backend)
        assert out.shape == (1, 96) and np.isfinite(out).all()


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_fft=500),
        dict(n_fft=0),
        dict(n_mels=300),
        dict(fmax=9000.0),
        dict(fmin=-1.0),
        dict(fmin=8000.0),
        dict(hop_length=0),
        dict(hop_length=1024),
        dict(power=3.0),
        dict(log="ln"),
        dict(pad_mode="wrap"),
        dict(top_db=-5.0),
        dict(sample_rate=0),
        dict(no_such_option=1),
    ],
)
def test_absurd_parameters_raise_config_error(bad):
    with pytest.raises(ConfigError):
        LogMelConfig().replace(**bad)
    with pytest.raises(ConfigError):
        logmel(synthetic("noise", 0.5), **bad)


def test_native_module_validates_on_its_own():
    # Users never call _core directly, but it must not crash when misused.
    from rt_tagger import _core

    mel = mel_filterbank(sample_rate=16000, n_fft=512, n_mels=96, fmax=8000)
    kw = dict(n_fft=512, hop_length=256, n_mels=96, power=2, center=True, pad_mode="constant",
              log="log10p", log_scale=1e4, amin=1e-10, top_db=None)
    with pytest.raises(ConfigError, match="power of two"):
        _core.LogMelKernel(**{**kw, "n_fft": 500}, mel=mel)
    with pytest.raises(ConfigError, match="shape"):
        _core.LogMelKernel(**kw, mel=mel[:50])
    with pytest.raises(AudioInputError, match="float32"):
        _core.LogMelKernel(**kw, mel=mel.astype(np.float64))
    k = _core.LogMelKernel(**kw, mel=mel)
    with pytest.raises(AudioInputError, match="contiguous"):
        k.batch(np.zeros(4000, np.float32)[::2])
    with pytest.raises(ConfigError, match="nonfinite"):
        k.batch(np.zeros(4000, np.float32), nonfinite="ignore")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite_samples(backend):
    y = np.array(load_music(MUSIC_CLIPS[0])[: 2 * 16000])
    y[5000] = np.nan
    y[9000] = np.inf
    lm = LogMel(backend=backend)
    with pytest.raises(AudioInputError, match=r"2 NaN/inf sample\(s\), the first at index 5000"):
        lm(y)
    zeroed = lm(y, nonfinite="zero")
    clean = y.copy()
    clean[[5000, 9000]] = 0
    assert np.isfinite(zeroed).all()
    np.testing.assert_array_equal(zeroed, lm(clean))


@pytest.mark.parametrize("backend", ["native", "numba"])
def test_nan_does_not_poison_later_stream_frames(backend):
    y = np.array(load_music(MUSIC_CLIPS[1])[: 3 * 16000])
    dirty = y.copy()
    dirty[4000:4100] = np.nan
    lm = LogMel(backend=backend)
    s = lm.stream()  # live default: nonfinite -> silence, counted
    out = np.concatenate([s.push(dirty[i : i + 1000]) for i in range(0, dirty.size, 1000)] + [s.flush()])
    assert s.nonfinite_samples == 100
    assert np.isfinite(out).all()
    ref = lm(y)
    # Frames whose window does not touch samples 4000..4099 are exactly the clean ones.
    first_touch, last_touch = (4000 + 256 - 512) // 256 + 1, (4099 + 256) // 256
    untouched = np.r_[0:first_touch, last_touch + 1 : ref.shape[0]]
    np.testing.assert_array_equal(out[untouched], ref[untouched])
    strict = lm.stream(nonfinite="raise")
    with pytest.raises(AudioInputError, match="NaN"):
        strict.push(dirty[3000:5000])


def test_stream_rejects_bad_blocks():
    s = StreamingLogMel(LogMelConfig())
    with pytest.raises(AudioInputError, match="float32"):
        s.push(np.zeros(100))
    with pytest.raises(AudioInputError, match="1-D"):
        s.push(np.zeros((100, 2), np.float32))
    assert s.samples_in == 0  # nothing was consumed by the failed calls
