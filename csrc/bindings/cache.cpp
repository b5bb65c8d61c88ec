// Bindings of the attractor cache: build_cache and draw_cached.
#include <string>
#include <vector>

#include "bindings/checks.hpp"
#include "bindings/systems.hpp"
#include "core/cache.hpp"
#include "core/raster.hpp"
#include "core/render.hpp"

namespace fdsl::bind {

namespace {

// A cache array (K, S, ceil(S / 64)) uint64, C-contiguous; read-only is fine where `writeable` is false.
py::array cache_array(const py::object& obj, const char* name, bool writeable) {
    py::array a = as_array<uint64_t>(obj, name, "uint64", {3});
    const py::ssize_t side = a.shape(1);
    require_range(side, cat(name, ".shape[1] (the image side)").c_str(), 1, kMaxSide);
    if (a.shape(2) != cache_words(int(side)))
        throw py::value_error(cat(name, " must have shape (systems, side, ceil(side / 64)) = (", a.shape(0), ", ", side,
                                  ", ", cache_words(int(side)), "), got ", shape_of(a)));
    if (writeable && !a.writeable())
        throw py::value_error(cat(name, " must be writeable; it is read-only (pass a fresh np.empty array)"));
    return a;
}

py::object build_cache(const py::object& params, const py::object& n_maps, const py::object& out, long long n_points,
                       int pad, bool dilate, int threads) {
    const std::vector<IfsSystem> systems = read_systems(params, n_maps);
    const py::ssize_t batch = py::ssize_t(systems.size());
    py::array o = cache_array(out, "out", true);
    if (o.shape(0) != batch)
        throw py::value_error(cat("out holds ", o.shape(0), " systems but params holds ", batch));
    const int side = int(o.shape(1));
    require_range(n_points, "n_points", 1, kMaxPoints);
    require_range(pad, "pad", 0, kMaxSide);
    if (side <= 2 * pad)
        throw py::value_error(
            cat("the image side (out.shape[1] = ", side, ") must be larger than twice pad (", pad, ")"));
    check_threads(threads);
    uint64_t* data = static_cast<uint64_t*>(o.mutable_data());
    {
        py::gil_scoped_release release;  // safe: raw buffers only, kept alive by the caller's references
        build_cache_batch(systems.data(), batch, n_points, side, pad, dilate, threads, data);
    }
    return out;
}

py::object draw_cached(const py::object& cache, const py::object& index, const py::object& patch_seeds,
                       const py::object& crops, const py::object& flips, const py::object& out,
                       const std::string& kind, int threads) {
    py::array c = cache_array(cache, "cache", false);
    const py::ssize_t systems = c.shape(0);
    const int side = int(c.shape(1));
    py::array o = as_array<uint8_t>(out, "out", "uint8", {3});
    if (!o.writeable()) throw py::value_error("out must be writeable; it is read-only (pass a fresh np.empty array)");
    const py::ssize_t batch = o.shape(0);
    if (o.shape(1) != o.shape(2))
        throw py::value_error(cat("out must be (B, T, T), square images, got shape ", shape_of(o)));
    require_range(o.shape(1), "out side (T)", 1, kMaxSide);
    const int out_side = int(o.shape(1));

    py::array index_a = as_array<int64_t>(index, "index", "int64", {1});
    require_length(index_a, "index", batch);
    const int64_t* index_p = static_cast<const int64_t*>(index_a.data());
    for (py::ssize_t i = 0; i < batch; ++i)
        if (index_p[i] < 0 || index_p[i] >= systems)
            throw py::value_error(cat("index[", i, "] must be in [0, ", systems, ") (the cache's systems), got ",
                                  index_p[i]));
    py::array seed_a = as_array<uint64_t>(patch_seeds, "patch_seeds", "uint64", {1});
    require_length(seed_a, "patch_seeds", batch);
    py::array flip_a = as_array<uint8_t>(flips, "flips", "uint8", {1});
    require_length(flip_a, "flips", batch);
    const uint8_t* flip_p = static_cast<const uint8_t*>(flip_a.data());
    for (py::ssize_t i = 0; i < batch; ++i)
        require_range(flip_p[i], cat("flips[", i, "]").c_str(), 0, 3, " (0 none, 1 top-bottom, 2 left-right, 3 both)");
    const int32_t* crop_p = nullptr;
    py::array crop_a;
    if (!crops.is_none()) {
        crop_a = as_array<int32_t>(crops, "crops", "int32", {2});
        if (crop_a.shape(0) != batch || crop_a.shape(1) != 4)
            throw py::value_error(cat("crops must have shape (", batch,
                                      ", 4): left, top, width, height in pixels; got ", shape_of(crop_a)));
        crop_p = static_cast<const int32_t*>(crop_a.data());
        for (py::ssize_t i = 0; i < batch; ++i) {
            const int64_t l = crop_p[4 * i], t = crop_p[4 * i + 1], w = crop_p[4 * i + 2], h = crop_p[4 * i + 3];
            if (!(l >= 0 && t >= 0 && w >= 1 && h >= 1 && l + w <= side && t + h <= side))
                throw py::value_error(cat("crops[", i, "] = (", l, ", ", t, ", ", w, ", ", h, ") must lie inside the ",
                                          side, " x ", side, " cache: left, top >= 0, width, height >= 1, left + width "
                                          "<= ", side, ", top + height <= ", side));
        }
    }
    const CacheKind k = CacheKind(choice(kind, "kind", {"point", "full_patch", "patch", "union_patch"}));
    check_threads(threads);
    const CacheDrawBatch b{static_cast<const uint64_t*>(c.data()), systems, side, batch, index_p,
                           static_cast<const uint64_t*>(seed_a.data()), crop_p, flip_p,
                           static_cast<uint8_t*>(o.mutable_data()), out_side};
    {
        py::gil_scoped_release release;  // safe: raw buffers only, kept alive by the caller's references
        draw_cached_batch(b, k, threads);
    }
    return out;
}

}  // namespace

void register_cache(py::module_& m) {
    m.def("build_cache", &build_cache, py::arg("params"), py::arg("n_maps"), py::arg("out"), py::arg("n_points"),
          py::arg("pad"), py::arg("dilate"), py::arg("threads"),
          "Build the attractor cache of B systems into `out` (uint64, (B, S, ceil(S/64))); see "
          "fdsl_app.render.build_attractor_cache.");
    m.def("draw_cached", &draw_cached, py::arg("cache"), py::arg("index"), py::arg("patch_seeds"), py::arg("crops"),
          py::arg("flips"), py::arg("out"), py::arg("kind"), py::arg("threads"),
          "Draw a batch of samples from an attractor cache into `out` (uint8, (B, T, T)); see "
          "fdsl_app.render.draw_cached.");
}

}  // namespace fdsl::bind
