// Bindings of the contour renderer (RCDB, VisualAtom).
#include <cmath>
#include <string>
#include <vector>

#include "bindings/checks.hpp"
#include "core/render.hpp"

namespace fdsl::bind {

namespace {

py::object render_contours(const py::object& params_obj, const py::object& out, const py::object& seeds_obj,
                           const std::string& style, double canvas_size, int threads) {
    py::array params = as_array<double>(params_obj, "params", "float64", {2});
    const py::ssize_t batch = params.shape(0);
    if (params.shape(1) != 11)
        throw py::value_error(cat("params must have shape (batch, 11): n_vertices, n_contours, perlin_amp, "
                                  "line_width, radius, oval_x, oval_y, center_x, center_y, freq1, freq2; got ",
                                  shape_of(params)));
    const ImageBatch img = output_images(out, kMaxSide);
    if (img.batch != batch)
        throw py::value_error(cat("out holds ", img.batch, " images but params holds ", batch, " rows"));
    py::array seeds = as_array<uint64_t>(seeds_obj, "seeds", "uint64", {1});
    require_length(seeds, "seeds", batch);
    const ContourStyle s = ContourStyle(choice(style, "style", {"rcdb", "visualatom"}));
    if (!(std::isfinite(canvas_size) && canvas_size >= 1.0 && canvas_size <= 65536.0))
        throw py::value_error(cat("canvas_size must be in [1, 65536] (px of the reference canvas; 512 in the papers), "
                                  "got ", canvas_size));
    require_range(threads, "threads", 1, 1 << 16, " (None means all cores)");
    const double* p = static_cast<const double*>(params.data());
    std::vector<ContourParams> rows(batch);
    static const char* names[11] = {"n_vertices", "n_contours", "perlin_amp", "line_width", "radius", "oval_x",
                                    "oval_y",     "center_x",   "center_y",   "freq1",      "freq2"};
    for (py::ssize_t i = 0; i < batch; ++i) {
        const double* r = p + i * 11;
        for (int c = 0; c < 11; ++c)
            if (!std::isfinite(r[c])) throw py::value_error(cat("params[", i, "] ", names[c], " is ", r[c], "; must be finite"));
        auto integer = [&](int c, long long lo, long long hi) {
            if (r[c] != std::floor(r[c]) || r[c] < double(lo) || r[c] > double(hi))
                throw py::value_error(cat("params[", i, "] ", names[c], " must be an integer in [", lo, ", ", hi,
                                          "], got ", r[c]));
            return int(r[c]);
        };
        // Geometry past these bounds draws nothing on the canvas (a blank image), so it is refused instead.
        auto within = [&](int c, double lo, double hi) {
            if (r[c] < lo || r[c] > hi)
                throw py::value_error(cat("params[", i, "] ", names[c], " must be in [", lo, ", ", hi, "] for canvas_size ",
                                          canvas_size, " (beyond it the contours leave the canvas), got ", r[c]));
            return r[c];
        };
        const double canvas = canvas_size;
        // Work grows as vertices x contours; past this an image takes seconds (the papers use at most 2e5).
        if (r[0] * r[1] > 2e7)
            throw py::value_error(cat("params[", i, "]: n_vertices x n_contours = ", r[0] * r[1],
                                      " is more than 2e7 line segments per image; use fewer vertices or contours"));
        rows[i] = ContourParams{integer(0, 3, 100000),          integer(1, 1, 10000),
                                within(2, 0.0, canvas),          within(3, -canvas, canvas),
                                within(4, 0.0, canvas),          within(5, 0.0, 100.0),
                                within(6, 0.0, 100.0),           within(7, -canvas, 2 * canvas),
                                within(8, -canvas, 2 * canvas),  integer(9, 0, 1000),
                                integer(10, 0, 1000)};
    }
    const uint64_t* seed_p = static_cast<const uint64_t*>(seeds.data());
    {
        py::gil_scoped_release release;  // safe: raw buffers only
        render_contour_batch(rows.data(), batch, s, seed_p, canvas_size, img.data, img.height, img.width,
                             img.channels, threads);
    }
    return out;
}

// The contour noise, exposed so tests can compare it with the `noise` package's pnoise1.
py::array_t<double> perlin1_values(const py::object& xs_obj) {
    py::array xs = as_array<double>(xs_obj, "xs", "float64", {1});
    const py::ssize_t n = xs.shape(0);
    const double* x = static_cast<const double*>(xs.data());
    for (py::ssize_t i = 0; i < n; ++i)  // the lattice cell converts to uint64: 2**53 is far inside that
        if (!(x[i] >= 0.0 && x[i] < 9007199254740992.0))
            throw py::value_error(cat("xs[", i, "] = ", x[i], ": perlin1 takes x in [0, 2**53)"));
    py::array_t<double> values(n);
    double* v = values.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) v[i] = perlin1(x[i]);
    return values;
}

}  // namespace

void register_contour(py::module_& m) {
    m.def("render_contours", &render_contours, py::arg("params"), py::arg("out"), py::arg("seeds"), py::arg("style"),
          py::arg("canvas_size"), py::arg("threads"),
          "Render a batch of radial-contour images into `out`; see fdsl_app.render.render_contours.");
    m.def("perlin1", &perlin1_values, py::arg("xs"),
          "The contours' Perlin noise at each x (noise.pnoise1 with its defaults, in float64); for tests.");
}

}  // namespace fdsl::bind
