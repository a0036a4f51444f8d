"""Loudness per ITU-R BS.1770-4 / EBU R128: momentary, short-term, integrated, peaks.

The signal is K-weighted (a high shelf modelling the head, then the RLB high-pass), squared and
summed per channel with the standard's channel weights, in 100 ms sub-blocks. From those:

* **momentary** loudness: the last 400 ms (4 sub-blocks);
* **short-term** loudness: the last 3 s (30 sub-blocks);
* **integrated** loudness since the start: 400 ms gating blocks every 100 ms (75 % overlap),
  absolute gate at -70 LUFS, then a relative gate 10 LU below the absolute-gated mean;
* **sample peak** and **true peak** (4x oversampled with a windowed-sinc polyphase interpolator,
  as in Annex 2 of BS.1770-4), in dBFS / dBTP;
* **level**: unweighted RMS of the last 400 ms in dBFS (what the silence alarm watches).

Everything is streaming: pushing a signal in blocks of any size gives exactly the readings of
pushing it at once (filter state and sub-block boundaries carry over between pushes).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

ABSOLUTE_GATE = -70.0  # LUFS
RELATIVE_GATE = -10.0  # LU below the absolute-gated loudness
#: Channel weights of BS.1770-4 Table 3, in the order L, R, C, Ls, Rs.
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)
SUB_BLOCKS_MOMENTARY = 4
SUB_BLOCKS_SHORT_TERM = 30


def k_weighting(rate: float) -> np.ndarray:
    """The two K-weighting biquads for ``rate`` as second-order sections ``(2, 6)``.

    Both stages are the analogue prototypes behind the 48 kHz coefficients printed in
    BS.1770-4 (a high shelf of about +4 dB above 1.7 kHz and a 38 Hz high-pass), mapped to
    ``rate`` with the bilinear transform; at 48 kHz they reproduce the printed coefficients.
    """
    if not rate > 0:
        raise ConfigError(f"sample rate must be > 0, got {rate!r}")
    # Stage 1: high shelf.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
             1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    # Stage 2: RLB high-pass (numerator 1, -2, 1 as printed in the standard).
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass], np.float64)


def true_peak_filter(factor: int = 4, taps_per_phase: int = 12) -> np.ndarray:
    """Polyphase interpolation filter ``(factor, taps_per_phase)`` (Kaiser-windowed sinc,
    unity gain per phase) for the true-peak meter."""
    from scipy import signal

    n = factor * taps_per_phase
    h = signal.firwin(n, 1.0 / factor, window=("kaiser", 6.0)) * factor
    return h.reshape(taps_per_phase, factor).T.copy()


def to_db(power: float, offset: float = 0.0) -> float:
    return offset + 10.0 * math.log10(power) if power > 0 else -math.inf


class LoudnessMeter:
    """Streaming BS.1770-4 meter for ``channels`` channels at ``rate`` Hz.

    ``weights``: one weight per channel (default: the standard's L, R, C, Ls, Rs weights, so
    stereo sums L and R with weight 1). :meth:`push` takes ``(n,)`` (mono) or ``(n, channels)``.
    """

    def __init__(self, rate: int, channels: int = 1, *, weights=None, true_peak: bool = True) -> None:
        if channels < 1:
            raise ConfigError(f"channels must be >= 1, got {channels!r}")
        if weights is None:
            if channels > len(CHANNEL_WEIGHTS):
                raise ConfigError(f"give weights for {channels} channels (defaults cover 5)")
            weights = CHANNEL_WEIGHTS[:channels]
        self.weights = np.asarray(weights, np.float64).reshape(-1)
        if self.weights.size != channels:
            raise ConfigError(f"{self.weights.size} weights for {channels} channels")
        self.rate, self.channels = int(rate), int(channels)
        from scipy.signal import sosfilt  # scipy.signal takes ~1 s to import: not at module load

        self._sosfilt = sosfilt
        self._sos = k_weighting(self.rate)
        self._zi = np.zeros((2, 2, channels))
        self._tp = true_peak_filter() if true_peak else None
        self._tp_hist = np.zeros((0 if self._tp is None else self._tp.shape[1] - 1, channels))
        self.samples = 0  # pushed so far
        self._sub = 0  # completed sub-blocks
        self._acc_w = 0.0  # weighted K-filtered sum of squares of the current sub-block
        self._acc_u = 0.0  # unweighted sum of squares (mean over channels)
        self._acc_n = 0
        self._w = np.zeros(64)  # per sub-block: weighted K-filtered sum of squares
        self._u = np.zeros(64)  # per sub-block: plain sum of squares (channel mean)
        self._n = np.zeros(64, np.int64)  # samples per sub-block
        self.sample_peak = 0.0
        self.true_peak = 0.0

    # ---- input --------------------------------------------------------------------------------
    def push(self, x: np.ndarray) -> int:
        """Add samples; returns how many 100 ms sub-blocks were completed by this push."""
        x = np.asarray(x, np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ConfigError(f"expected (n, {self.channels}) samples, got shape {x.shape}")
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        if x.shape[0] == 0:
            return 0
        self._peaks(x)
        y, self._zi = self._sosfilt(self._sos, x, axis=0, zi=self._zi)
        wsq = (y * y) @ self.weights
        usq = (x * x).mean(axis=1)
        done = 0
        pos = 0
        while pos < x.shape[0]:
            end_of_sub = ((self._sub + 1) * self.rate) // 10  # boundaries at 100 ms multiples
            take = min(x.shape[0] - pos, end_of_sub - self.samples)
            self._acc_w += float(wsq[pos : pos + take].sum())
            self._acc_u += float(usq[pos : pos + take].sum())
            self._acc_n += take
            pos += take
            self.samples += take
            if self.samples == end_of_sub:
                self._close_sub()
                done += 1
        return done

    def _close_sub(self) -> None:
        i = self._sub
        if i >= self._w.size:
            for name in ("_w", "_u", "_n"):
                old = getattr(self, name)
                new = np.zeros(old.size * 2, old.dtype)
                new[: old.size] = old
                setattr(self, name, new)
        self._w[i], self._u[i], self._n[i] = self._acc_w, self._acc_u, self._acc_n
        self._acc_w = self._acc_u = 0.0
        self._acc_n = 0
        self._sub += 1

    def _peaks(self, x: np.ndarray) -> None:
        self.sample_peak = max(self.sample_peak, float(np.abs(x).max()))
        if self._tp is None:
            return
        hist = np.concatenate([self._tp_hist, x])
        taps = self._tp.shape[1]
        peak = 0.0
        for phase in self._tp:
            for c in range(self.channels):
                peak = max(peak, float(np.abs(np.convolve(hist[:, c], phase, mode="valid")).max()))
        self.true_peak = max(self.true_peak, peak, self.sample_peak)
        self._tp_hist = hist[hist.shape[0] - (taps - 1):]

    # ---- readings -----------------------------------------------------------------------------
    @property
    def sub_blocks(self) -> int:
        return self._sub

    @property
    def t(self) -> float:
        """Seconds of audio measured (completed sub-blocks)."""
        return self._sub / 10.0

    def _window(self, k: int, end: int | None = None) -> tuple[float, float, int]:
        end = self._sub if end is None else end
        lo = max(0, end - k)
        return float(self._w[lo:end].sum()), float(self._u[lo:end].sum()), int(self._n[lo:end].sum())

    def _lufs(self, k: int, end: int | None = None) -> float:
        w, _, n = self._window(k, end)
        # A full window divides by its nominal length; a window still filling up at the start
        # divides by what it holds (so a meter does not read low for its first 3 s).
        return to_db(w / n, -0.691) if n else -math.inf

    def momentary(self, end: int | None = None) -> float:
        """Loudness of the last 400 ms, LUFS (``end``: sub-block index, default now)."""
        return self._lufs(SUB_BLOCKS_MOMENTARY, end)

    def short_term(self, end: int | None = None) -> float:
        """Loudness of the last 3 s, LUFS."""
        return self._lufs(SUB_BLOCKS_SHORT_TERM, end)

    def level(self, end: int | None = None) -> float:
        """Unweighted RMS level of the last 400 ms, dBFS (a full-scale sine reads -3 dBFS)."""
        _, u, n = self._window(SUB_BLOCKS_MOMENTARY, end)
        return to_db(u / n) if n else -math.inf

    def block_powers(self) -> np.ndarray:
        """Mean square (weighted, K-filtered) of every complete 400 ms gating block so far."""
        if self._sub < SUB_BLOCKS_MOMENTARY:
            return np.zeros(0)
        c = np.concatenate([[0.0], np.cumsum(self._w[: self._sub])])
        block = c[SUB_BLOCKS_MOMENTARY:] - c[: -SUB_BLOCKS_MOMENTARY]
        return block / (0.4 * self.rate)

    def integrated(self) -> float:
        """Gated integrated loudness since the start (BS.1770-4 section 2.8), LUFS."""
        z = self.block_powers()
        z = z[z > 0]
        if z.size == 0:
            return -math.inf
        lk = -0.691 + 10.0 * np.log10(z)
        z = z[lk >= ABSOLUTE_GATE]
        lk = lk[lk >= ABSOLUTE_GATE]
        if z.size == 0:
            return -math.inf
        gamma_r = -0.691 + 10.0 * math.log10(z.mean()) + RELATIVE_GATE
        z = z[lk > gamma_r]
        return to_db(float(z.mean()), -0.691) if z.size else -math.inf

    def reading(self, integrated: float | None = None) -> dict:
        """All readings, rounded, ``None`` for minus infinity (JSON has no -inf).
        ``integrated``: a value computed earlier, to skip the O(blocks) gating."""
        def r(v: float) -> float | None:
            return round(v, 2) if math.isfinite(v) else None

        i = self.integrated() if integrated is None else integrated
        return {"momentary": r(self.momentary()), "short_term": r(self.short_term()),
                "integrated": r(i), "level_db": r(self.level()),
                "sample_peak_db": r(to_db(self.sample_peak ** 2)),
                "true_peak_db": r(to_db(self.true_peak ** 2)) if self._tp is not None else None}
