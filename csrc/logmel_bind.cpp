// Python bindings of the log-mel kernel: batch and streaming entry points.
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "errors.h"
#include "logmel.h"
#include "streaming.h"

namespace py = pybind11;

namespace rt_tagger {
namespace {

using KernelPtr = std::shared_ptr<const LogMelKernel>;

KernelPtr make_kernel(int n_fft, int hop_length, int n_mels, int power, bool center,
                      const std::string& pad_mode, const std::string& log, float log_scale,
                      float amin, py::object top_db, const py::array& mel) {
  if (n_fft < 16 || n_fft > (1 << 16) || (n_fft & (n_fft - 1)) != 0)
    throw ParamError("n_fft must be a power of two in [16, 65536], got " + std::to_string(n_fft));
  if (hop_length < 1 || hop_length > n_fft)
    throw ParamError("hop_length must be in [1, n_fft]");
  if (n_mels < 1 || n_mels > n_fft / 2 + 1)
    throw ParamError("n_mels must be in [1, n_fft/2+1]");
  if (power != 1 && power != 2) throw ParamError("power must be 1 or 2");
  if (!(log_scale > 0.f) || !std::isfinite(log_scale)) throw ParamError("log_scale must be > 0");
  if (!(amin >= 1e-30f) || !std::isfinite(amin)) throw ParamError("amin must be >= 1e-30");
  LogMelParams p;
  p.n_fft = n_fft;
  p.hop_length = hop_length;
  p.n_mels = n_mels;
  p.power = power;
  p.center = center;
  if (pad_mode == "constant") p.pad_mode = PadMode::Constant;
  else if (pad_mode == "reflect") p.pad_mode = PadMode::Reflect;
  else throw ParamError("pad_mode must be 'constant' or 'reflect', got '" + pad_mode + "'");
  if (log == "log10p") p.log_mode = LogMode::Log10p;
  else if (log == "db") p.log_mode = LogMode::Db;
  else if (log == "none") p.log_mode = LogMode::None;
  else throw ParamError("log must be 'log10p', 'db' or 'none', got '" + log + "'");
  p.log_scale = log_scale;
  p.amin = amin;
  if (!top_db.is_none()) {
    p.top_db = top_db.cast<float>();
    if (!(p.top_db >= 0.f) || !std::isfinite(p.top_db)) throw ParamError("top_db must be >= 0");
  }
  require_f32(mel, 2, "mel filterbank");
  if (mel.shape(0) != n_mels || mel.shape(1) != n_fft / 2 + 1)
    throw ParamError("mel filterbank must have shape (n_mels, n_fft/2+1) = (" +
                     std::to_string(n_mels) + ", " + std::to_string(n_fft / 2 + 1) + ")");
  return std::make_shared<const LogMelKernel>(p, static_cast<const float*>(mel.data()), n_mels,
                                              n_fft / 2 + 1);
}

// Index of the first non-finite sample, or -1.
int64_t first_nonfinite(const float* x, int64_t n, int64_t* count) {
  int64_t first = -1, c = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!is_finite_bits(x[i])) {
      if (first < 0) first = i;
      ++c;
    }
  }
  *count = c;
  return first;
}

void check_nonfinite_policy(const std::string& policy) {
  if (policy != "raise" && policy != "zero")
    throw ParamError("nonfinite must be 'raise' or 'zero', got '" + policy + "'");
}

[[noreturn]] void throw_nonfinite(int64_t first, int64_t count) {
  throw InputError("audio contains " + std::to_string(count) +
                   " NaN/inf sample(s), the first at index " + std::to_string(first) +
                   "; clean the signal or pass nonfinite='zero' to read them as silence");
}

py::array_t<float> batch(const KernelPtr& k, const py::array& x, int n_threads,
                         const std::string& nonfinite) {
  check_nonfinite_policy(nonfinite);
  require_f32(x, 1, "audio");
  if (n_threads < 1 || n_threads > 256) throw ParamError("n_threads must be in [1, 256]");
  const LogMelParams& p = k->params();
  const int64_t n = x.shape(0);
  if (n == 0) throw InputError("audio is empty (0 samples)");
  const int64_t frames = count_frames(n, p);
  if (frames == 0)
    throw InputError("audio has " + std::to_string(n) + " samples, shorter than one frame (" +
                     std::to_string(p.n_fft) + ") without centre padding");
  if (p.center && p.pad_mode == PadMode::Reflect && n <= p.n_fft / 2)
    throw InputError("audio too short for reflect padding (needs more than n_fft/2 samples)");
  const float* src = static_cast<const float*>(x.data());
  py::array_t<float> out({frames, static_cast<int64_t>(p.n_mels)});
  float* dst = out.mutable_data();
  int64_t bad_first = -1, bad_count = 0;
  {
    py::gil_scoped_release release;
    if (nonfinite == "raise") bad_first = first_nonfinite(src, n, &bad_count);
    if (bad_first < 0) {
      const int threads = static_cast<int>(std::min<int64_t>(n_threads, (frames + 63) / 64));
      if (threads <= 1) {
        batch_frames(*k, src, n, 0, frames, dst);
      } else {
        // Split on multiples of the lane count so every frame takes the same code path.
        const int64_t per = ((frames / threads) / LogMelKernel::kLanes) * LogMelKernel::kLanes;
        std::vector<std::thread> pool;
        for (int t = 1; t < threads; ++t) {
          const int64_t f0 = per * t, f1 = (t == threads - 1) ? frames : per * (t + 1);
          pool.emplace_back([&, f0, f1] { batch_frames(*k, src, n, f0, f1, dst); });
        }
        batch_frames(*k, src, n, 0, per, dst);
        for (auto& th : pool) th.join();
      }
    }
  }
  if (bad_first >= 0) throw_nonfinite(bad_first, bad_count);
  return out;
}

class PyStream {
 public:
  PyStream(KernelPtr k, std::string nonfinite) : s_(std::move(k)), policy_(std::move(nonfinite)) {
    check_nonfinite_policy(policy_);
  }

  py::array_t<float> push(const py::array& x) {
    require_f32(x, 1, "audio block");
    const int64_t n = x.shape(0);
    const float* src = static_cast<const float*>(x.data());
    if (policy_ == "raise") {
      int64_t count = 0;
      const int64_t first = first_nonfinite(src, n, &count);
      if (first >= 0) throw_nonfinite(first, count);
    }
    auto out = std::make_unique<std::vector<float>>();
    {
      // Take the stream's lock without the GIL, so two Python threads cannot deadlock.
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(s_.mutex());
      const int64_t frames = s_.frames_after_push(n);
      out->resize(static_cast<size_t>(frames) * n_mels());
      s_.push(src, n, out->data(), frames);
    }
    return to_array(std::move(out));
  }

  py::array_t<float> flush() {
    auto out = std::make_unique<std::vector<float>>();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(s_.mutex());
      const int64_t frames = s_.frames_after_flush();
      out->resize(static_cast<size_t>(frames) * n_mels());
      s_.flush(out->data(), frames);
    }
    return to_array(std::move(out));
  }

  void reset() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(s_.mutex());
    s_.reset();
  }

  StreamingLogMel& stream() { return s_; }

 private:
  int64_t n_mels() const { return s_.kernel().params().n_mels; }

  // Hands the vector to numpy without a copy; the capsule frees it.
  py::array_t<float> to_array(std::unique_ptr<std::vector<float>> v) const {
    const int64_t rows = static_cast<int64_t>(v->size()) / n_mels();
    float* data = v->data();
    py::capsule owner(v.release(), [](void* p) { delete static_cast<std::vector<float>*>(p); });
    return py::array_t<float>({rows, n_mels()}, data, owner);
  }

  StreamingLogMel s_;
  std::string policy_;
};

}  // namespace

void init_logmel(py::module_& m) {
  py::class_<LogMelKernel, std::shared_ptr<LogMelKernel>>(m, "LogMelKernel")
      .def(py::init([](int n_fft, int hop_length, int n_mels, int power, bool center,
                       const std::string& pad_mode, const std::string& log, float log_scale,
                       float amin, py::object top_db, const py::array& mel) {
             return std::const_pointer_cast<LogMelKernel>(make_kernel(
                 n_fft, hop_length, n_mels, power, center, pad_mode, log, log_scale, amin,
                 top_db, mel));
           }),
           py::kw_only(), py::arg("n_fft"), py::arg("hop_length"), py::arg("n_mels"),
           py::arg("power"), py::arg("center"), py::arg("pad_mode"), py::arg("log"),
           py::arg("log_scale"), py::arg("amin"), py::arg("top_db"), py::arg("mel"))
      .def(
          "batch",
          [](const std::shared_ptr<LogMelKernel>& k, const py::array& x, int n_threads,
             const std::string& nonfinite) { return batch(k, x, n_threads, nonfinite); },
          py::arg("audio"), py::kw_only(), py::arg("n_threads") = 1,
          py::arg("nonfinite") = "raise",
          "Log-mel of a whole signal: float32 (n,) -> float32 (n_frames, n_mels).")
      .def("n_frames", [](const LogMelKernel& k, int64_t n) { return count_frames(n, k.params()); });

  py::class_<PyStream>(m, "StreamingLogMel")
      .def(py::init([](const std::shared_ptr<LogMelKernel>& k, const std::string& nonfinite) {
             return new PyStream(k, nonfinite);
           }),
           py::arg("kernel"), py::kw_only(), py::arg("nonfinite") = "zero")
      .def("push", &PyStream::push, py::arg("block"),
           "Append samples; returns the frames that became complete (k, n_mels).")
      .def("flush", &PyStream::flush, "End the stream: end padding and the last frames.")
      .def("reset", &PyStream::reset)
      .def_property_readonly("samples_in", [](PyStream& s) { return s.stream().samples_in(); })
      .def_property_readonly("frames_out", [](PyStream& s) { return s.stream().frames_out(); })
      .def_property_readonly("nonfinite_samples",
                             [](PyStream& s) { return s.stream().nonfinite_samples(); });
}

}  // namespace rt_tagger
