// fdsl_app._render: the private compiled module. Each file under bindings/ registers one family of functions.
#include <pybind11/pybind11.h>

#include "core/ifs.hpp"

namespace py = pybind11;

namespace fdsl::bind {
void register_ifs(py::module_& m);
void register_contour(py::module_& m);
void register_cache(py::module_& m);
void register_search(py::module_& m);
void register_ifs3d(py::module_& m);
}  // namespace fdsl::bind

PYBIND11_MODULE(_render, m) {
    m.doc() = "C++ renderer of formula-driven images (private; use fdsl_app.render)";
    m.attr("build_flags") = FDSL_BUILD_FLAGS;
    m.def("fast_kernel", &fdsl::fast_kernel_name, "SIMD kernel the fast chain uses on this CPU: 'avx2' or 'generic'");
    fdsl::bind::register_ifs(m);
    fdsl::bind::register_contour(m);
    fdsl::bind::register_cache(m);
    fdsl::bind::register_search(m);
    fdsl::bind::register_ifs3d(m);
}
