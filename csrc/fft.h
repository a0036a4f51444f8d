// Real FFT of a power-of-two size, producing the power spectrum of one or eight frames.
//
// A real frame of N samples is packed as N/2 complex values z[k] = x[2k] + i x[2k+1], run
// through an iterative radix-2 decimation-in-time FFT of size M = N/2, and unpacked into the
// N/2+1 bins of the real transform. Each element is a lane type V (simd.h): `float` for one
// frame, `vf8` for eight frames side by side. Every lane does the same IEEE operations in the
// same order (built with -ffp-contract=off, no -ffast-math), so batch (8 lanes) and streaming
// (1 lane) results are bit-identical.
//
// All tables are built once in the constructor; transform() allocates nothing.
#pragma once

#include <cmath>
#include <stdexcept>
#include <vector>

#include "simd.h"

namespace rt_tagger {

class RealFFT {
 public:
  explicit RealFFT(int n_fft) : n_(n_fft), m_(n_fft / 2) {
    if (n_fft < 4 || (n_fft & (n_fft - 1)) != 0)
      throw std::invalid_argument("n_fft must be a power of two >= 4");
    int log2m = 0;
    while ((1 << log2m) < m_) ++log2m;
    bitrev_.resize(m_);
    for (int k = 0; k < m_; ++k) {
      int r = 0;
      for (int b = 0; b < log2m; ++b) r |= ((k >> b) & 1) << (log2m - 1 - b);
      bitrev_[k] = r;
    }
    // Twiddles exp(-2*pi*i*t/M), t in [0, M/2), computed in double then rounded once.
    const double two_pi = 6.283185307179586476925286766559;
    const int nt = m_ / 2 > 0 ? m_ / 2 : 1;
    tw_re_.resize(nt);
    tw_im_.resize(nt);
    for (int t = 0; t < nt; ++t) {
      tw_re_[t] = static_cast<float>(std::cos(two_pi * t / m_));
      tw_im_[t] = static_cast<float>(-std::sin(two_pi * t / m_));
    }
    // Unpacking rotation exp(-2*pi*i*k/N), k in [0, M].
    rot_re_.resize(m_ + 1);
    rot_im_.resize(m_ + 1);
    for (int k = 0; k <= m_; ++k) {
      rot_re_[k] = static_cast<float>(std::cos(two_pi * k / n_));
      rot_im_[k] = static_cast<float>(-std::sin(two_pi * k / n_));
    }
  }

  int n_fft() const { return n_; }
  int n_bins() const { return m_ + 1; }

  // Destination of packed complex sample k in the bit-reversed work array.
  int bitrev(int k) const { return bitrev_[k]; }

  // In-place FFT of re/im (M elements, bit-reversed order in, natural order out), then the
  // power spectrum of the N-point real transform into power (M+1 elements).
  // power_exp 2 -> |X|^2, 1 -> |X|.
  template <class V>
  RT_INLINE void transform(V* __restrict re, V* __restrict im, V* __restrict power,
                           int power_exp) const {
    butterflies(re, im);
    unpack(re, im, power, power_exp);
  }

 private:
  template <class V>
  RT_INLINE void butterflies(V* __restrict re, V* __restrict im) const {
    const int m = m_;
    for (int a = 0; a < m; a += 2) {  // size-2 stage: twiddle 1
      const V tr = re[a + 1], ti = im[a + 1];
      re[a + 1] = re[a] - tr;
      im[a + 1] = im[a] - ti;
      re[a] = re[a] + tr;
      im[a] = im[a] + ti;
    }
    for (int size = 4; size <= m; size <<= 1) {
      const int half = size >> 1;
      const int stride = m / size;
      for (int g = 0; g < m; g += size) {
        for (int j = 0; j < half; ++j) {
          const float wr = tw_re_[j * stride], wi = tw_im_[j * stride];
          const int a = g + j, b = a + half;
          const V br = re[b], bi = im[b];
          const V tr = wr * br - wi * bi;
          const V ti = wr * bi + wi * br;
          const V ar = re[a], ai = im[a];
          re[b] = ar - tr;
          im[b] = ai - ti;
          re[a] = ar + tr;
          im[a] = ai + ti;
        }
      }
    }
  }

  template <class V>
  RT_INLINE void unpack(const V* __restrict re, const V* __restrict im, V* __restrict power,
                        int power_exp) const {
    const int m = m_;
    for (int k = 0; k <= m; ++k) {
      const int k1 = (k == m) ? 0 : k;
      const int k2 = (k == 0) ? 0 : m - k;
      const float cr = rot_re_[k], ci = rot_im_[k];
      // even part (Z[k] + conj Z[M-k]) / 2, odd part (Z[k] - conj Z[M-k]) / 2i
      const V er = 0.5f * (re[k1] + re[k2]);
      const V ei = 0.5f * (im[k1] - im[k2]);
      const V o_r = 0.5f * (im[k1] + im[k2]);
      const V o_i = -0.5f * (re[k1] - re[k2]);
      const V xr = er + (cr * o_r - ci * o_i);
      const V xi = ei + (cr * o_i + ci * o_r);
      V p = xr * xr + xi * xi;
      if (power_exp == 1)
        for (int l = 0; l < Lanes<V>::n; ++l) Lanes<V>::set(p, l, std::sqrt(Lanes<V>::get(p, l)));
      power[k] = p;
    }
  }

  int n_, m_;
  std::vector<int> bitrev_;
  std::vector<float> tw_re_, tw_im_, rot_re_, rot_im_;
};

}  // namespace rt_tagger
