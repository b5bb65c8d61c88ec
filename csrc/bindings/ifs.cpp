// Bindings of the IFS renderer: render_ifs and fill_rate.
#include <cmath>
#include <string>
#include <vector>

#include "bindings/checks.hpp"
#include "bindings/systems.hpp"
#include "core/render.hpp"
#include "core/rng.hpp"

namespace fdsl::bind {

constexpr double kProbabilityTolerance = 1e-4;

std::vector<IfsSystem> read_systems(const py::object& params_obj, const py::object& n_maps_obj) {
    py::array params = as_array<double>(params_obj, "params", "float64", {3});
    const py::ssize_t batch = params.shape(0), rows = params.shape(1);
    if (params.shape(2) != 7)
        throw py::value_error(cat("params must have shape (batch, maps, 7) with rows `a b c d e f p`, got shape ",
                                  shape_of(params)));
    require_range(rows, "params.shape[1] (maps per system)", 2, kMaxMaps);
    py::array n_maps = as_array<int32_t>(n_maps_obj, "n_maps", "int32", {1});
    require_length(n_maps, "n_maps", batch);
    const double* p = static_cast<const double*>(params.data());
    const int32_t* counts = static_cast<const int32_t*>(n_maps.data());
    std::vector<IfsSystem> systems(batch);
    for (py::ssize_t i = 0; i < batch; ++i) {
        const int n = counts[i];
        if (n < 2 || n > rows)
            throw py::value_error(cat("n_maps[", i, "] must be between 2 and ", rows, " (at most ", kMaxMaps,
                                      " maps per system), got ", n));
        systems[i].n_maps = n;
        double total = 0.0;
        for (int k = 0; k < n; ++k) {
            const double* r = p + (i * rows + k) * 7;
            for (int c = 0; c < 7; ++c)
                if (!std::isfinite(r[c]))
                    throw py::value_error(cat("params[", i, ", ", k, ", ", c, "] is ", r[c],
                                              "; every parameter and probability must be finite"));
            if (r[6] < 0.0)
                throw py::value_error(cat("params[", i, ", ", k, ", 6] (probability) is ", r[6], "; must be >= 0"));
            systems[i].maps[k] = AffineMap{r[0], r[1], r[2], r[3], r[4], r[5], r[6]};
            total += r[6];
        }
        if (std::abs(total - 1.0) > kProbabilityTolerance)
            throw py::value_error(cat("probabilities of system ", i, " sum to ", total, "; they must sum to 1 (within ",
                                      kProbabilityTolerance, "): normalise them, e.g. p / p.sum()"));
    }
    return systems;
}

namespace {

py::array seed_array(const py::object& obj, const char* name, py::ssize_t batch) {
    py::array a = as_array<uint64_t>(obj, name, "uint64", {1});
    require_length(a, name, batch);
    return a;
}

py::object render_ifs(const py::object& params, const py::object& n_maps, const py::object& out,
                      const py::object& seeds, const py::object& patch_seeds, const py::object& flips,
                      long long n_points, const std::string& mode, const std::string& raster, bool color, int pad,
                      int threads, int chains, int burn_in, bool start_at_fixed_point, bool keep_aspect,
                      const py::object& crops, double crop_pad_fraction) {
    const std::vector<IfsSystem> systems = read_systems(params, n_maps);
    const py::ssize_t batch = py::ssize_t(systems.size());
    const ImageBatch img = output_images(out, kMaxSide);
    if (img.batch != batch)
        throw py::value_error(cat("out holds ", img.batch, " images but params holds ", batch, " systems"));
    py::array seed_a = seed_array(seeds, "seeds", batch), patch_a = seed_array(patch_seeds, "patch_seeds", batch);
    py::array flip_a = as_array<uint8_t>(flips, "flips", "uint8", {1});
    require_length(flip_a, "flips", batch);
    const uint8_t* flip_p = static_cast<const uint8_t*>(flip_a.data());
    for (py::ssize_t i = 0; i < batch; ++i) require_range(flip_p[i], "flips[i]", 0, 3, " (0 none, 1 top-bottom, 2 left-right, 3 both)");

    IfsRenderOptions o;
    o.mode = Mode(choice(mode, "mode", {"reference", "fast"}));
    o.raster = Raster(choice(raster, "raster", {"point", "patch", "union_patch", "full_patch", "density"}));
    require_range(n_points, "n_points", 1, kMaxPoints);
    o.n_points = n_points;
    require_range(pad, "pad", 0, kMaxSide);
    if (img.height <= 2 * pad || img.width <= 2 * pad)
        throw py::value_error(cat("image size ", img.height, "x", img.width, " must be larger than twice pad (",
                                  pad, ") on both axes"));
    check_threads(threads);
    o.color = color;
    if (color && img.channels != 3)
        throw py::value_error("color=True needs out of shape (B, H, W, 3); out has one channel");
    if (color && o.raster == Raster::Density)
        throw py::value_error("raster='density' is gray only; use color=False");
    const uint64_t* seed_p = static_cast<const uint64_t*>(seed_a.data());
    if (o.mode == Mode::Reference) {
        for (py::ssize_t i = 0; i < batch; ++i)
            if (seed_p[i] > 0xFFFFFFFFull)
                throw py::value_error(cat("seeds[", i, "] = ", seed_p[i], ": reference mode seeds numpy's legacy "
                                          "generator and takes seeds in [0, 2**32 - 1]"));
        if (keep_aspect) throw py::value_error("keep_aspect=True is a fast-mode option; the reference stretches");
    } else {
        if (chains < 8 || chains > 256 || chains % 8 != 0)
            throw py::value_error(cat("chains must be a multiple of 8 in [8, 256], got ", chains));
        require_range(burn_in, "burn_in", 0, 1'000'000);
        o.fast = FastChainOptions{chains, burn_in, start_at_fixed_point};
        o.keep_aspect = keep_aspect;
    }
    const float* crop_p = nullptr;
    std::vector<float> crop_values;
    if (!crops.is_none()) {
        if (o.mode != Mode::Fast) throw py::value_error("crops (formula-space crops) need mode='fast'");
        py::array c = as_array<double>(crops, "crops", "float64", {2});
        if (c.shape(0) != batch || c.shape(1) != 4)
            throw py::value_error(cat("crops must have shape (", batch, ", 4): left, top, width, height; got ",
                                      shape_of(c)));
        if (!(crop_pad_fraction >= 0.0 && crop_pad_fraction < 0.5))
            throw py::value_error(cat("crop_pad_fraction must be in [0, 0.5), got ", crop_pad_fraction));
        const double* v = static_cast<const double*>(c.data());
        for (py::ssize_t i = 0; i < batch; ++i) {
            const double l = v[4 * i], t = v[4 * i + 1], w = v[4 * i + 2], h = v[4 * i + 3];
            const bool ok = std::isfinite(l + t + w + h) && l >= 0 && t >= 0 && w > 0 && h > 0 && l + w <= 1 + 1e-6 &&
                            t + h <= 1 + 1e-6;
            if (!ok)
                throw py::value_error(cat("crops[", i, "] = (", l, ", ", t, ", ", w, ", ", h, ") must lie inside the "
                                          "unit square: left, top >= 0, width, height > 0, left + width <= 1, "
                                          "top + height <= 1"));
        }
        crop_values.assign(v, v + 4 * batch);
        crop_p = crop_values.data();
        o.crop_pad_fraction = float(crop_pad_fraction);
    }
    const IfsBatch b{systems.data(), batch, seed_p, static_cast<const uint64_t*>(patch_a.data()), flip_p, crop_p,
                     img.data, img.height, img.width, img.channels};
    {
        // Safe without the GIL: only raw buffers are touched, and the arrays stay referenced by the caller's frame.
        py::gil_scoped_release release;
        render_ifs_batch(b, o, threads);
    }
    return out;
}

py::array_t<double> fill_rate(const py::object& params, const py::object& n_maps, const py::object& seeds,
                              long long n_points, int size, int pad, int threads) {
    const std::vector<IfsSystem> systems = read_systems(params, n_maps);
    const py::ssize_t batch = py::ssize_t(systems.size());
    py::array seed_a = seed_array(seeds, "seeds", batch);
    const uint64_t* seed_p = static_cast<const uint64_t*>(seed_a.data());
    for (py::ssize_t i = 0; i < batch; ++i)
        if (seed_p[i] > 0xFFFFFFFFull)
            throw py::value_error(cat("seeds[", i, "] = ", seed_p[i], " must be in [0, 2**32 - 1] (numpy legacy seed)"));
    require_range(n_points, "n_points", 1, kMaxPoints);
    require_range(size, "size", 1, kMaxSide);
    require_range(pad, "pad", 0, kMaxSide);
    if (size <= 2 * pad) throw py::value_error(cat("size (", size, ") must be larger than twice pad (", pad, ")"));
    check_threads(threads);
    py::array_t<double> rates(batch);
    double* r = rates.mutable_data();
    {
        py::gil_scoped_release release;  // safe: raw buffers only
        fill_rate_batch(systems.data(), batch, seed_p, n_points, size, pad, threads, r);
    }
    return rates;
}

// The reference mode's uniform sequence, exposed so tests can compare it with numpy's.
py::array_t<double> legacy_uniforms(long long seed, long long n) {
    require_range(seed, "seed", 0, 0xFFFFFFFFll);
    require_range(n, "n", 0, kMaxPoints);
    py::array_t<double> u(n);
    Mt19937 rng{uint32_t(seed)};
    double* p = u.mutable_data();
    for (long long i = 0; i < n; ++i) p[i] = rng.next_double();
    return u;
}

}  // namespace

void register_ifs(py::module_& m) {
    m.def("render_ifs", &render_ifs, py::arg("params"), py::arg("n_maps"), py::arg("out"), py::arg("seeds"),
          py::arg("patch_seeds"), py::arg("flips"), py::arg("n_points"), py::arg("mode"), py::arg("raster"),
          py::arg("color"), py::arg("pad"), py::arg("threads"), py::arg("chains"), py::arg("burn_in"),
          py::arg("start_at_fixed_point"), py::arg("keep_aspect"), py::arg("crops") = py::none(),
          py::arg("crop_pad_fraction") = 0.0,
          "Render a batch of IFS images into `out` (uint8, (B,H,W) or (B,H,W,3)); see fdsl_app.render.render_ifs.");
    m.def("fill_rate", &fill_rate, py::arg("params"), py::arg("n_maps"), py::arg("seeds"), py::arg("n_points"),
          py::arg("size"), py::arg("pad"), py::arg("threads"),
          "Share of non-zero pixels of a reference-mode point render, per system.");
    m.def("legacy_uniforms", &legacy_uniforms, py::arg("seed"), py::arg("n"),
          "The doubles np.random.seed(seed); np.random.random(n) gives, from the C++ generator.");
}

}  // namespace fdsl::bind
