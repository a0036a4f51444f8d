// Python bindings of the SPSC ring buffer.
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "errors.h"
#include "ring_buffer.h"

namespace py = pybind11;

namespace rt_tagger {
namespace {

// Test hook: a native producer thread pushes the sequence 0, 1, 2, ... (as float32, exact below
// 2**24) in blocks of pseudo-random size while the calling thread consumes. Returns what the
// consumer saw: samples received, ordering violations, the sum of gaps in the sequence (samples
// lost) and the ring's own overrun count, so the test can check exact accounting.
py::dict ring_stress(uint64_t capacity, uint64_t total, uint32_t max_block, uint32_t seed,
                     uint32_t consumer_pause_us, bool producer_waits) {
  if (total >= (1u << 24)) throw ParamError("total must be < 2**24 (exact float32 integers)");
  RingBuffer ring(capacity);
  uint64_t received = 0, disorder = 0, gaps = 0;
  {
    py::gil_scoped_release release;
    std::thread producer([&] {
      std::vector<float> block(max_block);
      uint32_t state = seed ? seed : 1;
      uint64_t next = 0;
      while (next < total) {
        state = state * 1664525u + 1013904223u;
        uint64_t n = 1 + (state >> 8) % max_block;
        n = std::min<uint64_t>(n, total - next);
        if (producer_waits)
          while (ring.capacity() - ring.available() < n) std::this_thread::yield();
        for (uint64_t i = 0; i < n; ++i) block[i] = static_cast<float>(next + i);
        ring.push(block.data(), n, 1, -1);
        next += n;
      }
    });
    std::vector<float> buf(4096);
    int64_t expect = 0;
    while (true) {
      const uint64_t got = ring.read(buf.data(), buf.size());
      for (uint64_t i = 0; i < got; ++i) {
        const int64_t v = static_cast<int64_t>(buf[i]);
        if (v < expect) ++disorder;
        else gaps += static_cast<uint64_t>(v - expect);
        expect = v + 1;
      }
      received += got;
      if (got == 0) {
        if (ring.pushed_total() + ring.overrun_total() >= total && ring.available() == 0) break;
        std::this_thread::yield();
      } else if (consumer_pause_us) {
        std::this_thread::sleep_for(std::chrono::microseconds(consumer_pause_us));
      }
    }
    producer.join();
    gaps += static_cast<uint64_t>(static_cast<int64_t>(total) - expect);  // lost at the end
  }
  py::dict d;
  d["received"] = received;
  d["disorder"] = disorder;
  d["lost_in_sequence"] = gaps;
  d["overrun_total"] = ring.overrun_total();
  d["pushed_total"] = ring.pushed_total();
  return d;
}

}  // namespace

void init_ring(py::module_& m) {
  m.def("_ring_stress", &ring_stress, py::arg("capacity"), py::arg("total"),
        py::arg("max_block"), py::arg("seed"), py::arg("consumer_pause_us"),
        py::arg("producer_waits"), "Test hook: native two-thread stress of RingBuffer.");
  py::class_<RingBuffer>(m, "RingBuffer")
      .def(py::init([](int64_t capacity) {
             if (capacity < 1 || capacity > (int64_t{1} << 34))
               throw ParamError("ring capacity must be in [1, 2**34] samples, got " +
                                std::to_string(capacity));
             return new RingBuffer(static_cast<uint64_t>(capacity));
           }),
           py::arg("capacity"))
      .def_property_readonly("capacity", &RingBuffer::capacity)
      .def(
          "push",
          [](RingBuffer& r, const py::array& block, int channel) {
            if (block.ndim() != 1 && block.ndim() != 2)
              throw InputError("audio block must be 1-D (mono) or 2-D (frames, channels)");
            require_f32(block, static_cast<int>(block.ndim()), "audio block");
            const uint64_t frames = static_cast<uint64_t>(block.shape(0));
            const int channels = block.ndim() == 2 ? static_cast<int>(block.shape(1)) : 1;
            if (channels < 1) throw InputError("audio block has no channels");
            if (channel >= channels)
              throw InputError("channel " + std::to_string(channel) + " requested but the block has " +
                               std::to_string(channels) + " channel(s)");
            return r.push(static_cast<const float*>(block.data()), frames, channels, channel);
          },
          py::arg("block"), py::arg("channel") = -1,
          "Producer: copy a block in (2-D blocks are averaged to mono, or one `channel` is "
          "taken). Returns samples accepted; the rest count as overrun.")
      .def_property_readonly("available", &RingBuffer::available)
      .def(
          "read",
          [](RingBuffer& r, int64_t n) {
            if (n < 0) throw InputError("n must be >= 0");
            const uint64_t k = std::min<uint64_t>(static_cast<uint64_t>(n), r.available());
            py::array_t<float> out(static_cast<py::ssize_t>(k));
            r.read(out.mutable_data(), k);
            return out;
          },
          py::arg("n"), "Consumer: take up to n samples (fewer if fewer are available).")
      .def(
          "read_into",
          [](RingBuffer& r, py::array& out) {
            require_f32(out, 1, "out");
            if (!out.writeable()) throw InputError("out must be writeable");
            return r.read(static_cast<float*>(out.mutable_data()), static_cast<uint64_t>(out.shape(0)));
          },
          py::arg("out"))
      .def(
          "peek",
          [](RingBuffer& r, int64_t n) {
            if (n < 0) throw InputError("n must be >= 0");
            const uint64_t k = std::min<uint64_t>(static_cast<uint64_t>(n), r.available());
            py::array_t<float> out(static_cast<py::ssize_t>(k));
            r.peek(out.mutable_data(), k);
            return out;
          },
          py::arg("n"))
      .def("skip", &RingBuffer::skip, py::arg("n"))
      .def(
          "wait",
          [](RingBuffer& r, uint64_t n, double timeout) {
            // Blocks without the GIL until n samples are available or timeout (< 0: forever)
            // passes; a push wakes it at once. It takes the GIL back every 50 ms, so that
            // Ctrl-C interrupts it.
            using clock = std::chrono::steady_clock;
            const auto t0 = clock::now();
            while (true) {
              double slice = 0.05;
              if (timeout >= 0) {
                const double left = timeout - std::chrono::duration<double>(clock::now() - t0).count();
                if (left <= 0) return r.available() >= n;
                slice = std::min(slice, left);
              }
              bool ok;
              {
                py::gil_scoped_release release;
                ok = r.wait_for(n, slice);
              }
              if (ok) return true;
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            }
          },
          py::arg("n"), py::arg("timeout") = -1.0)
      .def("take_overrun", &RingBuffer::take_overrun,
           "Overrun (dropped) samples since the last call; resets the counter.")
      .def_property_readonly("overrun_total", &RingBuffer::overrun_total)
      .def_property_readonly("pushed_total", &RingBuffer::pushed_total)
      .def_property_readonly("read_total", &RingBuffer::read_total);
}

}  // namespace rt_tagger
