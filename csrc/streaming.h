// Streaming log-mel: push blocks of any size, get exactly the frames that became complete.
//
// The stream is the same centre-padded signal the batch path sees: the start padding is added
// as soon as it is known (constant: at once; reflect: after n_fft/2 + 1 samples), the end padding
// by flush(). Frames go through the same LogMelKernel code, so after flush() the concatenated
// output equals batch_frames() on the concatenated input bit for bit.
//
// The working buffer is allocated once (n_fft + a block); pushes larger than the free space are
// processed in pieces. Non-finite samples are replaced by 0 on entry and counted, so a NaN never
// reaches a later frame.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "logmel.h"

namespace rt_tagger {

class StreamingLogMel {
 public:
  explicit StreamingLogMel(std::shared_ptr<const LogMelKernel> kernel, int block = 8192)
      : k_(std::move(kernel)), scratch_(*k_) {
    const LogMelParams& p = k_->params();
    cap_ = static_cast<int64_t>(p.n_fft) * 2 + std::max(block, p.hop_length * 8);
    buf_.assign(static_cast<size_t>(cap_), 0.f);
    reset();
  }

  std::mutex& mutex() { return mu_; }
  const LogMelKernel& kernel() const { return *k_; }

  void reset() {
    buf_start_ = 0;
    next_frame_ = 0;
    total_in_ = 0;
    nonfinite_ = 0;
    flushed_ = false;
    const int pad = k_->pad();
    // Constant padding is known now; reflect padding is filled in once enough samples arrived.
    buf_len_ = pad;
    std::fill(buf_.begin(), buf_.begin() + pad, 0.f);
    head_ready_ = !(k_->params().center && k_->params().pad_mode == PadMode::Reflect);
  }

  int64_t samples_in() const { return total_in_; }
  int64_t frames_out() const { return next_frame_; }
  int64_t nonfinite_samples() const { return nonfinite_; }
  bool flushed() const { return flushed_; }

  // Frames that push(n samples) will emit.
  int64_t frames_after_push(int64_t n) const {
    if (flushed_) return 0;
    const int pad = k_->pad();
    const int64_t total = total_in_ + n;
    if (!head_ready_ && total < pad + 1) return 0;
    return std::max<int64_t>(0, ready_frames(pad + total) - next_frame_);
  }

  // Frames that flush() will emit.
  int64_t frames_after_flush() const {
    if (flushed_ || total_in_ == 0) return 0;
    const int pad = k_->pad();
    return std::max<int64_t>(0, ready_frames(total_in_ + 2 * pad) - next_frame_);
  }

  // Appends x[0..n) and writes the completed frames to out (capacity max_frames rows).
  int64_t push(const float* x, int64_t n, float* out, int64_t max_frames) {
    if (flushed_) throw InputError("stream already flushed; call reset() to start a new one");
    if (frames_after_push(n) > max_frames) throw InputError("output buffer too small");
    int64_t written = 0;
    while (n > 0) {
      if (buf_len_ == cap_) compact();
      const int64_t take = std::min<int64_t>(n, cap_ - buf_len_);
      float* dst = buf_.data() + buf_len_;
      int64_t bad = 0;
      for (int64_t i = 0; i < take; ++i) {
        const float v = x[i];
        const bool ok = is_finite_bits(v);
        bad += ok ? 0 : 1;
        dst[i] = ok ? v : 0.f;
      }
      nonfinite_ += bad;
      buf_len_ += take;
      total_in_ += take;
      x += take;
      n -= take;
      if (!head_ready_) fill_reflect_head();
      if (head_ready_) written += emit(out + written * k_->params().n_mels, buf_start_ + buf_len_);
    }
    return written;
  }

  // Ends the stream: appends the end padding and emits the last frames.
  int64_t flush(float* out, int64_t max_frames) {
    if (flushed_) return 0;
    const LogMelParams& p = k_->params();
    const int pad = k_->pad();
    if (total_in_ == 0) {
      flushed_ = true;
      return 0;
    }
    if (p.center && p.pad_mode == PadMode::Reflect && total_in_ < pad + 1)
      throw InputError("signal too short for reflect padding (needs more than n_fft/2 samples)");
    if (frames_after_flush() > max_frames) throw InputError("output buffer too small");
    if (cap_ - buf_len_ < pad) compact();
    // The last n_fft samples are always retained, which covers the reflected tail.
    float* b = buf_.data();
    for (int j = 0; j < pad; ++j)  // x[n-2-j] sits at buf_len_-2-j
      b[buf_len_ + j] = (p.pad_mode == PadMode::Reflect) ? b[buf_len_ - 2 - j] : 0.f;
    buf_len_ += pad;
    const int64_t written = emit(out, buf_start_ + buf_len_);
    flushed_ = true;
    return written;
  }

 private:
  int64_t ready_frames(int64_t padded_len) const {
    const LogMelParams& p = k_->params();
    return padded_len < p.n_fft ? 0 : 1 + (padded_len - p.n_fft) / p.hop_length;
  }

  void fill_reflect_head() {
    const int pad = k_->pad();
    if (total_in_ < pad + 1) return;
    // padded[j] = x[pad - j] for j < pad; x[i] sits at buf_[pad + i] (nothing compacted yet).
    for (int j = 0; j < pad; ++j) buf_[j] = buf_[pad + (pad - j)];
    head_ready_ = true;
  }

  // Computes every frame that lies inside padded positions [0, abs_end).
  int64_t emit(float* out, int64_t abs_end) {
    const LogMelParams& p = k_->params();
    const int64_t last = ready_frames(abs_end);
    constexpr int L = LogMelKernel::kLanes;
    const float* src[L];
    float* dst[L];
    int64_t written = 0;
    while (next_frame_ < last) {
      const int lanes = (last - next_frame_ >= L) ? L : 1;
      for (int l = 0; l < lanes; ++l) {
        src[l] = buf_.data() + ((next_frame_ + l) * p.hop_length - buf_start_);
        dst[l] = out + (written + l) * p.n_mels;
      }
      if (lanes == L)
        compute8(*k_, src, dst, scratch_);
      else
        k_->compute<float>(src, dst, scratch_);
      next_frame_ += lanes;
      written += lanes;
    }
    return written;
  }

  // Drops samples no future frame needs, keeping at least the last n_fft samples.
  void compact() {
    const LogMelParams& p = k_->params();
    const int64_t abs_end = buf_start_ + buf_len_;
    int64_t keep_from = std::min(next_frame_ * p.hop_length, abs_end - p.n_fft);
    keep_from = std::max(keep_from, buf_start_);
    const int64_t drop = keep_from - buf_start_;
    if (drop <= 0) return;
    std::memmove(buf_.data(), buf_.data() + drop, static_cast<size_t>(buf_len_ - drop) * sizeof(float));
    buf_start_ += drop;
    buf_len_ -= drop;
  }

  std::shared_ptr<const LogMelKernel> k_;
  LogMelKernel::Scratch scratch_;
  std::vector<float> buf_;
  int64_t cap_ = 0;
  int64_t buf_start_ = 0;  // padded position of buf_[0]
  int64_t buf_len_ = 0;
  int64_t next_frame_ = 0;
  int64_t total_in_ = 0;
  int64_t nonfinite_ = 0;
  bool head_ready_ = true;
  bool flushed_ = false;
  std::mutex mu_;
};

}  // namespace rt_tagger
