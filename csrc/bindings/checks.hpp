// Argument checks for the bindings. They run with the GIL held, before any compute, and raise TypeError or
// ValueError naming the argument and what it accepts, so that nothing reaches the core unchecked.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

namespace fdsl::bind {

namespace py = pybind11;

template <class... Parts>
std::string cat(const Parts&... parts) {
    std::ostringstream s;
    (s << ... << parts);
    return s.str();
}

inline std::string shape_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) s += cat(d ? ", " : "", a.shape(d));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// `obj` must already be a numpy array of dtype T, C-contiguous, with one of the given ranks.
template <class T>
py::array as_array(const py::object& obj, const char* name, const char* dtype_name, std::initializer_list<int> ranks) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(cat(name, " must be a numpy array of dtype ", dtype_name, ", got ",
                                 std::string(py::str(py::type::handle_of(obj).attr("__name__")))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::type_error(cat(name, " must have dtype ", dtype_name, ", got ", std::string(py::str(a.dtype()))));
    bool rank_ok = false;
    for (int r : ranks) rank_ok |= a.ndim() == r;
    if (!rank_ok) {
        std::string allowed;
        for (int r : ranks) allowed += cat(allowed.empty() ? "" : " or ", r);
        throw py::value_error(cat(name, " must have ", allowed, " dimensions, got shape ", shape_of(a)));
    }
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(cat(name, " must be C-contiguous; pass np.ascontiguousarray(", name, ")"));
    return a;
}

inline void require_length(const py::array& a, const char* name, py::ssize_t batch) {
    if (a.shape(0) != batch)
        throw py::value_error(cat(name, " must have one entry per sample (", batch, "), got shape ", shape_of(a)));
}

inline void require_range(long long value, const char* name, long long lo, long long hi, const char* hint = "") {
    if (value < lo || value > hi)
        throw py::value_error(cat(name, " must be in [", lo, ", ", hi, "], got ", value, hint));
}

// An output image batch: uint8, (B, H, W) or (B, H, W, 3), C-contiguous and writeable. Never converted or copied:
// a temporary copy would silently take the pixels.
struct ImageBatch {
    uint8_t* data;
    py::ssize_t batch;
    int height, width, channels;
};

inline ImageBatch output_images(const py::object& obj, int max_size) {
    py::array a = as_array<uint8_t>(obj, "out", "uint8", {3, 4});
    if (a.ndim() == 4 && a.shape(3) != 3)
        throw py::value_error(cat("out must be (B, H, W) or (B, H, W, 3), got shape ", shape_of(a)));
    if (!a.writeable()) throw py::value_error("out must be writeable; it is read-only (pass a fresh np.empty array)");
    require_range(a.shape(1), "out height", 1, max_size);
    require_range(a.shape(2), "out width", 1, max_size);
    return {static_cast<uint8_t*>(a.mutable_data()), a.shape(0), int(a.shape(1)), int(a.shape(2)),
            a.ndim() == 4 ? 3 : 1};
}

inline void check_threads(int threads) { require_range(threads, "threads", 1, 1 << 16, " (None means all cores)"); }

// Index of `value` in `names`, or ValueError listing them.
inline int choice(const std::string& value, const char* name, const std::vector<std::string>& names) {
    for (size_t i = 0; i < names.size(); ++i)
        if (names[i] == value) return int(i);
    std::string allowed;
    for (const auto& n : names) allowed += cat(allowed.empty() ? "" : ", ", "'", n, "'");
    throw py::value_error(cat(name, " must be one of ", allowed, ", got '", value, "'"));
}

}  // namespace fdsl::bind
