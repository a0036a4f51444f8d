// C++ exceptions that cross into Python as rt_tagger.errors classes (see module.cpp).
#pragma once

#include <stdexcept>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "logmel.h"  // InputError

namespace rt_tagger {

// Invalid parameters (becomes rt_tagger.errors.ConfigError).
struct ParamError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace py = pybind11;

// Checks that `a` is a C-contiguous float32 array of `ndim` dimensions; `what` names it.
inline void require_f32(const py::array& a, int ndim, const char* what) {
  if (!a.dtype().is(py::dtype::of<float>()))
    throw InputError(std::string(what) + " must be float32, got " +
                     std::string(py::str(a.dtype())) + " (convert with .astype(np.float32))");
  if (a.ndim() != ndim)
    throw InputError(std::string(what) + " must have " + std::to_string(ndim) +
                     " dimension(s), got " + std::to_string(a.ndim()));
  if (!(a.flags() & py::array::c_style))
    throw InputError(std::string(what) +
                     " must be C-contiguous (use np.ascontiguousarray)");
}

void init_logmel(py::module_& m);
void init_ring(py::module_& m);

}  // namespace rt_tagger
