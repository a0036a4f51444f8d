// rt_tagger._core: the private native module. Each piece has its own binder.
#include <pybind11/pybind11.h>

#include "errors.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "rt-tagger native core (private; use the rt_tagger package API)";
  // Map C++ errors to the package's own exception classes.
  py::module_ errors = py::module_::import("rt_tagger.errors");
  static PyObject* input_error = py::object(errors.attr("AudioInputError")).release().ptr();
  static PyObject* config_error = py::object(errors.attr("ConfigError")).release().ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const rt_tagger::ParamError& e) {
      PyErr_SetString(config_error, e.what());
    } catch (const rt_tagger::InputError& e) {
      PyErr_SetString(input_error, e.what());
    }
  });
  rt_tagger::init_logmel(m);
  rt_tagger::init_ring(m);
}
