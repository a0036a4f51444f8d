"""Numba twin of the native kernel: the same radix-2 real FFT, sparse mel and log, in float32.

Tables (bit reversal, twiddles, sparse mel weights) are built once per configuration; the jitted
loop allocates only its per-call scratch. ``parallel=True`` spreads frames over threads.
"""
from __future__ import annotations

import numba
import numpy as np

from .config import LogMelConfig
from .mel import filterbank_for, hann_periodic

_LOG_MODES = {"log10p": 0, "db": 1, "none": 2}


class NumbaFrames:
    """Computes log-mel frames from a buffer of (already padded) samples with Numba."""

    def __init__(self, config: LogMelConfig, n_threads: int = 1) -> None:
        self.config = config
        self.n_threads = n_threads
        n, m = config.n_fft, config.n_fft // 2
        bits = m.bit_length() - 1
        k = np.arange(m)
        self.bitrev = np.zeros(m, np.int64)
        for b in range(bits):
            self.bitrev |= ((k >> b) & 1) << (bits - 1 - b)
        t = np.arange(max(m // 2, 1))
        self.tw_re = np.cos(2 * np.pi * t / m).astype(np.float32)
        self.tw_im = (-np.sin(2 * np.pi * t / m)).astype(np.float32)
        kk = np.arange(m + 1)
        self.rot_re = np.cos(2 * np.pi * kk / n).astype(np.float32)
        self.rot_im = (-np.sin(2 * np.pi * kk / n)).astype(np.float32)
        self.window = hann_periodic(n).astype(np.float32)
        mel = filterbank_for(config)
        starts, lens, offs, weights = [], [], [], []
        for row in mel:
            nz = np.flatnonzero(row)
            lo, hi = (nz[0], nz[-1] + 1) if nz.size else (0, 0)
            starts.append(lo)
            lens.append(hi - lo)
            offs.append(sum(len(w) for w in weights))
            weights.append(row[lo:hi])
        self.band_start = np.array(starts, np.int64)
        self.band_len = np.array(lens, np.int64)
        self.band_off = np.array(offs, np.int64)
        self.weights = np.concatenate(weights).astype(np.float32)
        self.log_mode = _LOG_MODES[config.log]
        self.top_db = -1.0 if config.top_db is None else float(config.top_db)

    def __call__(self, buf: np.ndarray, first: int, n_frames: int) -> np.ndarray:
        c = self.config
        out = np.empty((max(n_frames, 0), c.n_mels), np.float32)
        if n_frames <= 0:
            return out
        fn = _frames_parallel if self.n_threads > 1 else _frames_serial
        if self.n_threads > 1:
            numba.set_num_threads(min(self.n_threads, numba.config.NUMBA_NUM_THREADS))
        fn(buf, first, c.hop_length, self.window, self.bitrev, self.tw_re, self.tw_im,
           self.rot_re, self.rot_im, self.band_start, self.band_len, self.band_off,
           self.weights, int(c.power), self.log_mode, np.float32(c.log_scale),
           np.float32(c.amin), np.float32(self.top_db), out)
        return out


def _frame(x, start, window, bitrev, tw_re, tw_im, rot_re, rot_im, band_start, band_len,
           band_off, weights, power_exp, log_mode, log_scale, amin, top_db, re, im, pw, row):
    m = bitrev.shape[0]
    for k in range(m):
        a = x[start + 2 * k]
        b = x[start + 2 * k + 1]
        if not np.isfinite(a):
            a = np.float32(0.0)
        if not np.isfinite(b):
            b = np.float32(0.0)
        d = bitrev[k]
        re[d] = a * window[2 * k]
        im[d] = b * window[2 * k + 1]
    size = 2
    while size <= m:
        half = size // 2
        stride = m // size
        for g in range(0, m, size):
            for j in range(half):
                wr = tw_re[j * stride]
                wi = tw_im[j * stride]
                a_i = g + j
                b_i = a_i + half
                tr = wr * re[b_i] - wi * im[b_i]
                ti = wr * im[b_i] + wi * re[b_i]
                re[b_i] = re[a_i] - tr
                im[b_i] = im[a_i] - ti
                re[a_i] = re[a_i] + tr
                im[a_i] = im[a_i] + ti
        size *= 2
    half32 = np.float32(0.5)
    for k in range(m + 1):
        k1 = 0 if k == m else k
        k2 = 0 if k == 0 else m - k
        er = half32 * (re[k1] + re[k2])
        ei = half32 * (im[k1] - im[k2])
        o_r = half32 * (im[k1] + im[k2])
        o_i = -half32 * (re[k1] - re[k2])
        xr = er + (rot_re[k] * o_r - rot_im[k] * o_i)
        xi = ei + (rot_re[k] * o_i + rot_im[k] * o_r)
        p2 = xr * xr + xi * xi
        pw[k] = p2 if power_exp == 2 else np.sqrt(p2)
    top = -np.inf
    for bnd in range(band_start.shape[0]):
        acc = np.float32(0.0)
        off = band_off[bnd]
        s0 = band_start[bnd]
        for j in range(band_len[bnd]):
            acc += weights[off + j] * pw[s0 + j]
        if log_mode == 0:
            row[bnd] = np.log10(np.float32(1.0) + log_scale * acc)
        elif log_mode == 1:
            v = np.float32(10.0) * np.log10(max(acc, amin))
            row[bnd] = v
            top = max(top, v)
        else:
            row[bnd] = acc
    if log_mode == 1 and top_db >= 0:
        floor = np.float32(top - top_db)
        for bnd in range(band_start.shape[0]):
            row[bnd] = max(row[bnd], floor)


_frame_jit = numba.njit(cache=True, nogil=True)(_frame)


def _frames_impl(x, first, hop, window, bitrev, tw_re, tw_im, rot_re, rot_im, band_start,
                 band_len, band_off, weights, power_exp, log_mode, log_scale, amin, top_db, out):
    m = bitrev.shape[0]
    for f in numba.prange(out.shape[0]):
        re = np.empty(m, np.float32)
        im = np.empty(m, np.float32)
        pw = np.empty(m + 1, np.float32)
        _frame_jit(x, first + f * hop, window, bitrev, tw_re, tw_im, rot_re, rot_im, band_start,
                   band_len, band_off, weights, power_exp, log_mode, log_scale, amin, top_db,
                   re, im, pw, out[f])


def _frames_serial_impl(x, first, hop, window, bitrev, tw_re, tw_im, rot_re, rot_im,
                        band_start, band_len, band_off, weights, power_exp, log_mode, log_scale,
                        amin, top_db, out):
    m = bitrev.shape[0]
    re = np.empty(m, np.float32)
    im = np.empty(m, np.float32)
    pw = np.empty(m + 1, np.float32)
    for f in range(out.shape[0]):
        _frame_jit(x, first + f * hop, window, bitrev, tw_re, tw_im, rot_re, rot_im, band_start,
                   band_len, band_off, weights, power_exp, log_mode, log_scale, amin, top_db,
                   re, im, pw, out[f])


_frames_serial = numba.njit(cache=True, nogil=True)(_frames_serial_impl)
_frames_parallel = numba.njit(cache=True, nogil=True, parallel=True)(_frames_impl)
