// Lock-free single-producer / single-consumer ring buffer of mono float32 audio.
//
// The producer is the audio callback: push() copies (and optionally downmixes) a block into the
// ring without allocating, locking or throwing. When the ring is full the samples that do not fit
// are dropped and counted in an atomic overrun counter the consumer reads; samples already in the
// ring are never overwritten, so what the consumer reads is always a gap-free prefix of what was
// accepted. Capacity is a power of two; indices are free-running 64-bit counters.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

namespace rt_tagger {

class RingBuffer {
 public:
  explicit RingBuffer(uint64_t capacity) {
    cap_ = 1;
    while (cap_ < capacity) cap_ <<= 1;
    mask_ = cap_ - 1;
    data_.reset(new float[cap_]());
  }

  uint64_t capacity() const { return cap_; }

  // ---- producer side (audio callback) ----

  // Pushes frames x channels interleaved samples. channel < 0: mean of all channels;
  // otherwise only that channel. Returns the number of mono samples accepted.
  uint64_t push(const float* x, uint64_t frames, int channels, int channel) noexcept {
    const uint64_t w = write_.load(std::memory_order_relaxed);
    const uint64_t r = read_.load(std::memory_order_acquire);
    const uint64_t room = cap_ - (w - r);
    const uint64_t n = std::min(frames, room);
    if (n < frames) {
      overrun_.fetch_add(frames - n, std::memory_order_relaxed);
      overrun_total_.fetch_add(frames - n, std::memory_order_relaxed);
    }
    const float inv = 1.f / static_cast<float>(channels);
    for (uint64_t i = 0; i < n; ++i) {
      const float* f = x + i * static_cast<uint64_t>(channels);
      float v;
      if (channels == 1) {
        v = f[0];
      } else if (channel >= 0) {
        v = f[channel];
      } else {
        float acc = 0.f;
        for (int c = 0; c < channels; ++c) acc += f[c];
        v = acc * inv;
      }
      data_[(w + i) & mask_] = v;
    }
    write_.store(w + n, std::memory_order_release);
    pushed_total_.fetch_add(n, std::memory_order_relaxed);
    // Wake a consumer blocked in wait_for(). The mutex is taken only while one waits, and
    // only for the notify (the consumer holds it just to check and go to sleep). The fence
    // pairs with wait_for's: either this load sees the waiter, or the waiter sees the data.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (n > 0 && waiters_.load(std::memory_order_relaxed) > 0) {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      wake_.notify_all();
    }
    return n;
  }

  // ---- consumer side ----

  uint64_t available() const {
    return write_.load(std::memory_order_acquire) - read_.load(std::memory_order_relaxed);
  }

  // Blocks until at least n samples are available or `seconds` pass; true if they are.
  bool wait_for(uint64_t n, double seconds) {
    if (available() >= n) return true;
    std::unique_lock<std::mutex> lock(wake_mutex_);
    waiters_.fetch_add(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const bool ok = wake_.wait_for(lock, std::chrono::duration<double>(std::max(seconds, 0.0)),
                                   [&] { return available() >= n; });
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    return ok;
  }

  // Copies up to n samples without consuming them.
  uint64_t peek(float* out, uint64_t n) const {
    const uint64_t r = read_.load(std::memory_order_relaxed);
    const uint64_t w = write_.load(std::memory_order_acquire);
    n = std::min(n, w - r);
    copy_out(out, r, n);
    return n;
  }

  // Copies and consumes up to n samples.
  uint64_t read(float* out, uint64_t n) {
    const uint64_t r = read_.load(std::memory_order_relaxed);
    const uint64_t w = write_.load(std::memory_order_acquire);
    n = std::min(n, w - r);
    copy_out(out, r, n);
    read_.store(r + n, std::memory_order_release);
    return n;
  }

  uint64_t skip(uint64_t n) {
    const uint64_t r = read_.load(std::memory_order_relaxed);
    const uint64_t w = write_.load(std::memory_order_acquire);
    n = std::min(n, w - r);
    read_.store(r + n, std::memory_order_release);
    return n;
  }

  // Overrun samples since the last call (consumer resets), and totals since construction.
  uint64_t take_overrun() { return overrun_.exchange(0, std::memory_order_relaxed); }
  uint64_t overrun_total() const { return overrun_total_.load(std::memory_order_relaxed); }
  uint64_t pushed_total() const { return pushed_total_.load(std::memory_order_relaxed); }
  uint64_t read_total() const { return read_.load(std::memory_order_relaxed); }

 private:
  void copy_out(float* out, uint64_t r, uint64_t n) const {
    const uint64_t start = r & mask_;
    const uint64_t first = std::min(n, cap_ - start);
    std::memcpy(out, data_.get() + start, first * sizeof(float));
    if (n > first) std::memcpy(out + first, data_.get(), (n - first) * sizeof(float));
  }

  uint64_t cap_ = 0, mask_ = 0;
  std::unique_ptr<float[]> data_;
  alignas(64) std::atomic<uint64_t> write_{0};
  alignas(64) std::atomic<uint64_t> read_{0};
  alignas(64) std::atomic<uint64_t> overrun_{0};
  std::atomic<uint64_t> overrun_total_{0};
  std::atomic<uint64_t> pushed_total_{0};
  std::atomic<int> waiters_{0};
  std::mutex wake_mutex_;
  std::condition_variable wake_;
};

}  // namespace rt_tagger
