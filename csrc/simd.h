// Lane types for the log-mel kernel: `float` (one frame) or `vf8` (eight frames in a GCC/Clang
// vector). Arithmetic on vf8 is element-wise with exactly the rounding of the scalar code, so a
// frame gives bit-identical results whichever lane type processed it.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__GNUC__)
#define RT_INLINE inline __attribute__((always_inline))
#else
#define RT_INLINE inline
#endif
// Compile the 8-frame kernel for AVX2 and for the baseline ISA, picked when the module loads.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define RT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RT_CLONES
#endif

namespace rt_tagger {

typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef uint32_t vu8 __attribute__((vector_size(32)));

template <class V>
struct Lanes;

template <>
struct Lanes<float> {
  static constexpr int n = 1;
  using U = uint32_t;
  using I = int32_t;
  static RT_INLINE float to_float(I e) { return static_cast<float>(e); }
  static RT_INLINE float get(float v, int) { return v; }
  static RT_INLINE void set(float& v, int, float x) { v = x; }
  static RT_INLINE float splat(float x) { return x; }
};

template <>
struct Lanes<vf8> {
  static constexpr int n = 8;
  using U = vu8;
  using I = vi8;
  static RT_INLINE vf8 to_float(I e) { return __builtin_convertvector(e, vf8); }
  static RT_INLINE float get(const vf8& v, int l) { return v[l]; }
  static RT_INLINE void set(vf8& v, int l, float x) { v[l] = x; }
  static RT_INLINE vf8 splat(float x) { return vf8{x, x, x, x, x, x, x, x}; }
};

// A zeroed, 64-byte aligned array of n lanes of vf8 (std::vector does not promise the
// alignment vector types need).
class AlignedLanes {
 public:
  explicit AlignedLanes(size_t n) : n_(n) {
    p_ = static_cast<vf8*>(std::aligned_alloc(64, ((n * sizeof(vf8) + 63) / 64) * 64));
    if (!p_) throw std::bad_alloc();
    std::memset(static_cast<void*>(p_), 0, n * sizeof(vf8));
  }
  ~AlignedLanes() { std::free(p_); }
  AlignedLanes(const AlignedLanes&) = delete;
  AlignedLanes& operator=(const AlignedLanes&) = delete;
  template <class V>
  V* as() {
    return reinterpret_cast<V*>(p_);
  }
  size_t size() const { return n_; }

 private:
  vf8* p_ = nullptr;
  size_t n_ = 0;
};

template <class To, class From>
RT_INLINE To bit_cast(const From& f) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast size mismatch");
  To t;
  std::memcpy(&t, &f, sizeof t);
  return t;
}

// log10 of positive, finite, normal values: exponent from the bits plus an odd polynomial in
// t = (m - 1) / (m + 1) for the mantissa m in [sqrt(1/2), sqrt(2)). Absolute error < 1e-6.
template <class V>
RT_INLINE V log10_positive(V x) {
  using T = Lanes<V>;
  typename T::U b = bit_cast<typename T::U>(x);
  typename T::I e = (typename T::I)((b >> 23) & 0xffu) - 127;
  b = (b & 0x007fffffu) | 0x3f800000u;
  V m = bit_cast<V>(b);
  const auto big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const V t = (m - 1.f) / (m + 1.f);
  const V t2 = t * t;
  const V p = 1.f + t2 * (0.33333333f + t2 * (0.2f + t2 * (0.14285714f + t2 * 0.11111111f)));
  return T::to_float(e) * 0.30102999566f + (2.f * t * p) * 0.43429448190f;
}

// x if finite, else 0.
template <class V>
RT_INLINE V finite_or_zero(V x) {
  using T = Lanes<V>;
  const typename T::U b = bit_cast<typename T::U>(x);
  const auto ok = (b & 0x7f800000u) != 0x7f800000u;
  return ok ? x : T::splat(0.f);
}

}  // namespace rt_tagger
