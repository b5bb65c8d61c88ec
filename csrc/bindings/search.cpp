// Bindings of the published category search's stream (core/published_search.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <vector>

#include "bindings/checks.hpp"
#include "core/published_search.hpp"
#include "core/render.hpp"

namespace fdsl::bind {
namespace {

struct Stream {
    PublishedStream stream;
    CandidateDraw draw;
};

Stream make_stream(long long seed, int min_maps, int max_maps, double param_range, long long n_points) {
    require_range(seed, "seed", 0, 0xFFFFFFFFll, " (np.random.seed takes a 32-bit seed)");
    require_range(min_maps, "min_maps", 2, kMaxMaps);
    require_range(max_maps, "max_maps", min_maps, kMaxMaps, " (and >= min_maps)");
    if (!(param_range > 0.0 && std::isfinite(param_range)))
        throw py::value_error(cat("param_range must be a finite number > 0, got ", param_range));
    require_range(n_points, "n_points", 1, kMaxPoints);
    const CandidateDraw draw{min_maps, max_maps, param_range, n_points};
    return Stream{PublishedStream(uint32_t(seed), draw), draw};
}

// The next `count` candidates: params (count, max_maps, 7) with rows past N zero, n_maps, and the fill rate of
// each one's point render (size, pad) when `size` > 0.
py::tuple examine(Stream& s, long long count, int size, int pad, int threads) {
    require_range(count, "count", 0, 1 << 24);
    require_range(size, "size", 1, kMaxSide);
    require_range(pad, "pad", 0, kMaxSide);
    if (size <= 2 * pad) throw py::value_error(cat("size (", size, ") must be larger than twice pad (", pad, ")"));
    check_threads(threads);
    const int rows = s.draw.max_maps;
    py::array_t<double> params({py::ssize_t(count), py::ssize_t(rows), py::ssize_t(7)});
    py::array_t<int32_t> n_maps(count);
    py::array_t<double> fill(count);
    {
        py::gil_scoped_release release;  // safe: raw buffers of arrays this frame owns
        std::vector<IfsSystem> systems(count);
        std::vector<Mt19937> chains(count, Mt19937(0));
        for (long long i = 0; i < count; ++i) s.stream.next(&systems[i], &chains[i]);
        fill_rate_batch(systems.data(), count, nullptr, chains.data(), s.draw.n_points, size, pad, threads,
                        fill.mutable_data());
        double* p = params.mutable_data();
        int32_t* n = n_maps.mutable_data();
        for (long long i = 0; i < count; ++i) {
            n[i] = systems[i].n_maps;
            for (int k = 0; k < rows; ++k) {
                const AffineMap& m = systems[i].maps[k];
                const double row[7] = {m.a, m.b, m.c, m.d, m.e, m.f, m.p};
                for (int c = 0; c < 7; ++c) p[(i * rows + k) * 7 + c] = k < n[i] ? row[c] : 0.0;
            }
        }
    }
    return py::make_tuple(params, n_maps, fill);
}

// Moves past `count` candidates without rendering them; returns their map counts.
py::array_t<int32_t> skip(Stream& s, long long count) {
    require_range(count, "count", 0, 1ll << 40);
    py::array_t<int32_t> n_maps(count);
    int32_t* n = n_maps.mutable_data();
    py::gil_scoped_release release;
    IfsSystem system;
    for (long long i = 0; i < count; ++i) s.stream.next(&system, nullptr), n[i] = system.n_maps;
    return n_maps;
}

}  // namespace

void register_search(py::module_& m) {
    py::class_<Stream>(m, "PublishedStream",
                       "The published FractalDB search's one numpy legacy stream: candidates drawn in order")
        .def(py::init(&make_stream), py::arg("seed"), py::arg("min_maps"), py::arg("max_maps"),
             py::arg("param_range"), py::arg("n_points"))
        .def("examine", &examine, py::arg("count"), py::arg("size"), py::arg("pad"), py::arg("threads"),
             "The next `count` candidates (params, n_maps) and the fill rate of each one's search render.")
        .def("skip", &skip, py::arg("count"), "Move past `count` candidates; their map counts.")
        .def_property_readonly("consumed", [](const Stream& s) { return s.stream.consumed(); },
                               "Candidates drawn so far.");
}

}  // namespace fdsl::bind
