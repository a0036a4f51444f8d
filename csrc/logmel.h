// Log-mel spectrogram kernel: "configure once, compute many".
//
// LogMelKernel holds everything that does not change between frames (window, FFT tables, the
// sparse mel filterbank) and turns L frames of n_fft samples into L rows of n_mels log-mel
// values. BatchLogMel frames a whole signal (librosa-compatible centre padding);
// StreamingLogMel (streaming.h) accepts arbitrary blocks and emits exactly the frames that became
// complete, bit-for-bit equal to the batch result. Nothing on the per-frame path allocates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "fft.h"
#include "simd.h"

namespace rt_tagger {

enum class LogMode : int { Log10p = 0, Db = 1, None = 2 };
enum class PadMode : int { Constant = 0, Reflect = 1 };

struct LogMelParams {
  int n_fft = 512;
  int hop_length = 256;
  int n_mels = 96;
  int power = 2;  // 2: power, 1: magnitude
  bool center = true;
  PadMode pad_mode = PadMode::Constant;
  LogMode log_mode = LogMode::Log10p;
  float log_scale = 10000.f;
  float amin = 1e-10f;
  float top_db = -1.f;  // < 0: no floor
};

// Error in user-supplied data or parameters; bound to a Python exception class.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline bool is_finite_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return (b & 0x7f800000u) != 0x7f800000u;
}

class LogMelKernel {
 public:
  static constexpr int kLanes = 8;

  // mel: dense (n_mels x n_fft/2+1) row-major filterbank; only its non-zero span per band is kept.
  LogMelKernel(const LogMelParams& p, const float* mel, int mel_rows, int mel_cols)
      : p_(p), fft_(p.n_fft) {
    if (mel_rows != p.n_mels || mel_cols != p.n_fft / 2 + 1)
      throw InputError("mel filterbank must have shape (n_mels, n_fft/2+1)");
    if (p.hop_length < 1 || p.hop_length > p.n_fft)
      throw InputError("hop_length must be in [1, n_fft]");
    window_.resize(p.n_fft);
    const double two_pi = 6.283185307179586476925286766559;
    for (int i = 0; i < p.n_fft; ++i)  // periodic Hann
      window_[i] = static_cast<float>(0.5 - 0.5 * std::cos(two_pi * i / p.n_fft));
    band_start_.resize(p.n_mels);
    band_len_.resize(p.n_mels);
    band_off_.resize(p.n_mels);
    for (int m = 0; m < p.n_mels; ++m) {
      const float* row = mel + static_cast<size_t>(m) * mel_cols;
      int lo = 0, hi = mel_cols;
      while (lo < hi && row[lo] == 0.f) ++lo;
      while (hi > lo && row[hi - 1] == 0.f) --hi;
      band_start_[m] = lo;
      band_len_[m] = hi - lo;
      band_off_[m] = static_cast<int>(weights_.size());
      weights_.insert(weights_.end(), row + lo, row + hi);
    }
  }

  const LogMelParams& params() const { return p_; }
  int pad() const { return p_.center ? p_.n_fft / 2 : 0; }

  // Per-caller work buffers for up to kLanes frames (one set per thread / stream).
  struct Scratch {
    AlignedLanes re, im, power, mel;
    explicit Scratch(const LogMelKernel& k)
        : re(k.p_.n_fft / 2), im(k.p_.n_fft / 2), power(k.p_.n_fft / 2 + 1), mel(k.p_.n_mels) {}
  };

  // Lanes<V>::n frames: frames[l] points at n_fft contiguous samples, out[l] at n_mels floats.
  // Non-finite samples are read as 0 (callers decide earlier whether that is an error).
  template <class V>
  RT_INLINE void compute(const float* const* frames, float* const* out, Scratch& s) const {
    using T = Lanes<V>;
    const int m = p_.n_fft / 2;
    V* re = s.re.template as<V>();
    V* im = s.im.template as<V>();
    for (int k = 0; k < m; ++k) {
      V a, b;
      for (int l = 0; l < T::n; ++l) {
        T::set(a, l, frames[l][2 * k]);
        T::set(b, l, frames[l][2 * k + 1]);
      }
      const int d = fft_.bitrev(k);
      re[d] = finite_or_zero(a) * window_[2 * k];
      im[d] = finite_or_zero(b) * window_[2 * k + 1];
    }
    V* power = s.power.template as<V>();
    fft_.transform(re, im, power, p_.power);
    V* mel = s.mel.template as<V>();
    for (int band = 0; band < p_.n_mels; ++band) {
      V acc = T::splat(0.f);
      const float* w = weights_.data() + band_off_[band];
      const V* pw = power + band_start_[band];
      for (int j = 0; j < band_len_[band]; ++j) acc = acc + w[j] * pw[j];
      mel[band] = acc;
    }
    compress(mel);
    for (int band = 0; band < p_.n_mels; ++band)
      for (int l = 0; l < T::n; ++l) out[l][band] = T::get(mel[band], l);
  }

 private:
  template <class V>
  RT_INLINE void compress(V* mel) const {
    using T = Lanes<V>;
    const int nm = p_.n_mels;
    const float fmax = std::numeric_limits<float>::max();
    const V inf = T::splat(std::numeric_limits<float>::infinity());
    if (p_.log_mode == LogMode::Log10p) {
      for (int b = 0; b < nm; ++b) {
        const V v = 1.f + p_.log_scale * mel[b];
        mel[b] = v > fmax ? inf : log10_positive(v);
      }
    } else if (p_.log_mode == LogMode::Db) {
      V top = -inf;
      for (int b = 0; b < nm; ++b) {
        const V v = mel[b] > p_.amin ? mel[b] : T::splat(p_.amin);
        const V db = v > fmax ? inf : 10.f * log10_positive(v);
        mel[b] = db;
        top = db > top ? db : top;
      }
      if (p_.top_db >= 0.f) {
        const V floor = top - p_.top_db;
        for (int b = 0; b < nm; ++b) mel[b] = mel[b] > floor ? mel[b] : floor;
      }
    }
  }

  LogMelParams p_;
  RealFFT fft_;
  std::vector<float> window_;
  std::vector<int> band_start_, band_len_, band_off_;
  std::vector<float> weights_;
};

// The 8-lane kernel, compiled for AVX2 and for the baseline ISA and picked at load time. Both
// clones perform the same IEEE operations, so results do not depend on the CPU.
RT_CLONES inline void compute8(const LogMelKernel& k, const float* const* src, float* const* dst,
                               LogMelKernel::Scratch& s) {
  k.compute<vf8>(src, dst, s);
}

// Sample at position p of the centre-padded signal x[0..n).
inline float padded_sample(const float* x, int64_t n, int64_t p, int pad, PadMode mode) {
  int64_t i = p - pad;
  if (i >= 0 && i < n) return x[i];
  if (mode == PadMode::Constant) return 0.f;
  if (i < 0) i = -i;
  if (i >= n) i = 2 * (n - 1) - i;
  return x[i];
}

inline int64_t count_frames(int64_t n, const LogMelParams& p) {
  const int64_t padded = n + (p.center ? p.n_fft : 0);
  return padded < p.n_fft ? 0 : 1 + (padded - p.n_fft) / p.hop_length;
}

// Frames [f0, f1) of the whole signal x[0..n) into out (n_frames x n_mels, row-major).
// Frames that touch the padding are assembled in an edge buffer; the rest are read in place.
inline void batch_frames(const LogMelKernel& k, const float* x, int64_t n, int64_t f0, int64_t f1,
                         float* out) {
  const LogMelParams& p = k.params();
  const int pad = k.pad();
  const int L = LogMelKernel::kLanes;
  LogMelKernel::Scratch s(k);
  std::vector<float> edge(static_cast<size_t>(L) * p.n_fft);
  auto frame_ptr = [&](int64_t f, int lane) -> const float* {
    const int64_t start = f * p.hop_length - pad;
    if (start >= 0 && start + p.n_fft <= n) return x + start;
    float* e = edge.data() + static_cast<size_t>(lane) * p.n_fft;
    for (int j = 0; j < p.n_fft; ++j)
      e[j] = padded_sample(x, n, f * p.hop_length + j, pad, p.pad_mode);
    return e;
  };
  int64_t f = f0;
  const float* src[L];
  float* dst[L];
  for (; f + L <= f1; f += L) {
    for (int l = 0; l < L; ++l) {
      src[l] = frame_ptr(f + l, l);
      dst[l] = out + (f + l) * p.n_mels;
    }
    compute8(k, src, dst, s);
  }
  for (; f < f1; ++f) {
    src[0] = frame_ptr(f, 0);
    dst[0] = out + f * p.n_mels;
    k.compute<float>(src, dst, s);
  }
}

}  // namespace rt_tagger
