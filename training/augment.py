"""Training augmentations (all off by default), with parameters drawn in the epoch plan.

Waveform augmentations act on the raw chunk before the log-mel: gain (random dB), additive
white noise (random SNR) and mixing two clips (``y = (1 - w) a + w b``, labels: union, w in
[0, 0.5]; under distillation the
elementwise max of both chunks' teacher targets). Time shift rolls the model input (frames or samples) by a random offset.

Timbre and room (``aug_eq_db``, ``aug_reverb``, ``aug_pitch``, ``aug_stretch``; read with
``getattr`` so a config without them leaves them off): random peaking-EQ bands, a synthetic
room, pitch shift and time stretch. Their parameters come from each item's ``noise_seed``, so
:func:`draw` (and every existing epoch plan) is unchanged. Under distillation the target stays
the clean chunk's: the student learns that a room or a slightly detuned take is the same music.
"""
from __future__ import annotations

import numpy as np

__all__ = ["draw", "needs_waveform", "apply_wave", "apply_shift", "apply_timbre", "eq", "pitch_shift",
           "reverb",
           "time_stretch"]


_TIMBRE = ("aug_eq_db", "aug_reverb", "aug_pitch", "aug_stretch")


def _timbre(cfg) -> dict[str, float]:
    return {k: float(getattr(cfg, k, 0) or 0) for k in _TIMBRE}


def needs_waveform(cfg) -> bool:
    return (cfg.aug_gain_db > 0 or cfg.aug_noise_snr > 0 or cfg.aug_mix > 0
            or any(v > 0 for v in _timbre(cfg).values()))


def draw(cfg, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-item augmentation parameters for ``n`` items (always drawn in the same order)."""
    return {
        "gain_db": rng.uniform(-1, 1, n) * cfg.aug_gain_db,
        "snr": cfg.aug_noise_snr + 20 * rng.random(n),
        "noise_seed": rng.integers(0, 2**31, n),
        "mix": rng.random(n) < cfg.aug_mix,
        "mix_weight": 0.5 * rng.random(n),
        "mix_pick": rng.random(n),
        "mix_start": rng.random(n),
        "shift": rng.random(n),
    }


def apply_wave(cfg, y: np.ndarray, p: dict, k: int, other: np.ndarray | None) -> np.ndarray:
    """Augment waveform chunk ``y`` of item ``k`` (``other``: the chunk to mix in, if any)."""
    if other is not None:
        w = p["mix_weight"][k]
        y = (1 - w) * y + w * other
    t = _timbre(cfg)
    if any(v > 0 for v in t.values()):
        y = apply_timbre(y, t, np.random.default_rng(int(p["noise_seed"][k]) + 1))
    if cfg.aug_gain_db > 0:
        y = y * np.float32(10 ** (p["gain_db"][k] / 20))
    if cfg.aug_noise_snr > 0:
        power = float(np.mean(y.astype(np.float64) ** 2)) + 1e-12
        noise = np.random.default_rng(int(p["noise_seed"][k])).standard_normal(y.size)
        y = y + noise * np.sqrt(power / 10 ** (p["snr"][k] / 10))
    return y.astype(np.float32)


def apply_shift(x: np.ndarray, p: dict, k: int) -> np.ndarray:
    return np.roll(x, int(p["shift"][k] * x.shape[0]), axis=0)



# --- timbre and room: pure functions of a 1-D float signal (also used by the corpus builder)

RAW_SR = 16000  # prepared raw audio (``--features raw``) is 16 kHz


def eq(y: np.ndarray, sr: int, freq: float, gain_db: float, q: float = 1.0) -> np.ndarray:
    """A peaking-EQ band (RBJ biquad): ``gain_db`` at ``freq`` Hz, bandwidth set by ``q``;
    far from ``freq`` the gain tends to 0 dB."""
    from scipy.signal import lfilter

    a_ = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sr
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a_, -2 * np.cos(w0), 1 - alpha * a_])
    a = np.array([1 + alpha / a_, -2 * np.cos(w0), 1 - alpha / a_])
    return lfilter(b / a[0], a / a[0], np.asarray(y, dtype=np.float64))


def reverb(y: np.ndarray, sr: int, rt60: float = 0.8, wet: float = 0.3,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """A synthetic room: ``y`` convolved with exponentially decaying noise whose level falls
    60 dB in ``rt60`` seconds (sparse early reflections for the first 20 ms), mixed ``wet``
    at the dry signal's level. Output length: ``len(y) + int(rt60 * sr) - 1`` (the tail)."""
    from scipy.signal import fftconvolve

    rng = rng or np.random.default_rng(0)
    n = max(2, int(rt60 * sr))
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * 10 ** (-3 * t / rt60)  # -60 dB (amplitude 1e-3) at rt60
    early = min(n, int(0.02 * sr))
    ir[:early] *= rng.random(early) < 0.05
    ir[0] = 0.0
    y = np.asarray(y, dtype=np.float64)
    tail = fftconvolve(y, ir)
    rms = lambda x: float(np.sqrt(np.mean(x ** 2))) + 1e-12  # noqa: E731
    dry = np.concatenate([y, np.zeros(n - 1)])
    return (1 - wet) * dry + wet * tail * (rms(y) / rms(tail[: y.size]))


def time_stretch(y: np.ndarray, rate: float, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Phase-vocoder time stretch: ``rate`` > 1 is faster (output ``len(y) / rate`` samples),
    pitch unchanged."""
    y = np.asarray(y, dtype=np.float64)
    if rate == 1 or y.size == 0:
        return y.copy()
    win = np.hanning(n_fft + 1)[:-1]
    pad = np.pad(y, (n_fft // 2, n_fft))
    frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft)[::hop] * win
    spec = np.fft.rfft(frames, axis=1)
    steps = np.arange(0, spec.shape[0] - 1, rate)
    k = steps.astype(int)
    f = (steps - k)[:, None]
    mag = (1 - f) * np.abs(spec[k]) + f * np.abs(spec[k + 1])
    omega = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft
    dphi = np.angle(spec[k + 1]) - np.angle(spec[k]) - omega
    dphi -= 2 * np.pi * np.round(dphi / (2 * np.pi))
    phase = np.angle(spec[0]) + np.vstack([np.zeros((1, spec.shape[1])),
                                           np.cumsum(omega + dphi, axis=0)[:-1]])
    out = np.fft.irfft(mag * np.exp(1j * phase), n=n_fft, axis=1) * win
    n_out = hop * (len(steps) - 1) + n_fft
    acc, norm = np.zeros(n_out), np.zeros(n_out)
    for i, fr in enumerate(out):
        acc[i * hop: i * hop + n_fft] += fr
        norm[i * hop: i * hop + n_fft] += win ** 2
    acc = acc / np.maximum(norm, 1e-3 * norm.max())
    target = int(round(y.size / rate))
    acc = acc[n_fft // 2: n_fft // 2 + target]
    return np.pad(acc, (0, target - acc.size))


def pitch_shift(y: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the length: stretch in time by the pitch ratio,
    then resample back to the input's length."""
    from scipy.signal import resample

    y = np.asarray(y, dtype=np.float64)
    if semitones == 0 or y.size == 0:
        return y.copy()
    r = 2 ** (semitones / 12)
    return resample(time_stretch(y, 1 / r), y.size)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size), mode="wrap")


def apply_timbre(y: np.ndarray, t: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    n = y.size
    x = np.asarray(y, dtype=np.float64)
    level = float(np.sqrt(np.mean(x ** 2))) + 1e-12
    if t["aug_eq_db"] > 0:
        for _ in range(rng.integers(1, 4)):
            x = eq(x, RAW_SR, float(np.exp(rng.uniform(np.log(80), np.log(6000)))),
                   float(rng.uniform(-1, 1) * t["aug_eq_db"]), float(rng.uniform(0.5, 2)))
    if t["aug_pitch"] > 0:
        x = pitch_shift(x, RAW_SR, float(rng.uniform(-1, 1) * t["aug_pitch"]))
    if t["aug_stretch"] > 0:
        x = _fit(time_stretch(x, float(1 + rng.uniform(-1, 1) * t["aug_stretch"])), n)
    if t["aug_reverb"] > 0 and rng.random() < t["aug_reverb"]:
        x = reverb(x, RAW_SR, float(rng.uniform(0.2, 1.5)), float(rng.uniform(0.1, 0.5)), rng)[:n]
    x = x * (level / (float(np.sqrt(np.mean(x ** 2))) + 1e-12))
    return x.astype(np.float32)
