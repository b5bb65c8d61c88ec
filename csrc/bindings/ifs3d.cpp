// Bindings of the 3D IFS renderer (ExFractalDB, MV-FractalDB, 3D-OFDB).
#include <cmath>
#include <vector>

#include "bindings/checks.hpp"
#include "core/ifs3d.hpp"

namespace fdsl::bind {

namespace {

constexpr long long kMaxPoints = 100'000'000;

// Maps rows must be finite, probabilities >= 0 (the published p: |det| / sum |det|).
void check_maps(const double* maps, py::ssize_t rows, const char* where) {
    for (py::ssize_t r = 0; r < rows; ++r) {
        for (int c = 0; c < kIfs3dParams; ++c)
            if (!std::isfinite(maps[r * kIfs3dParams + c]))
                throw py::value_error(cat(where, " map ", r, " column ", c, " is ", maps[r * kIfs3dParams + c],
                                          "; every parameter must be finite"));
        if (maps[r * kIfs3dParams + 12] < 0.0)
            throw py::value_error(cat(where, " map ", r, " has probability ", maps[r * kIfs3dParams + 12],
                                      "; column 12 (p) must be >= 0"));
    }
}

std::vector<Camera3d> cameras_of(const py::object& obj, py::ssize_t batch) {
    py::array cams = as_array<double>(obj, "cameras", "float64", {2});
    require_length(cams, "cameras", batch);
    if (cams.shape(1) != 2)
        throw py::value_error(cat("cameras must have shape (batch, 2): yaw, pitch in radians; got ", shape_of(cams)));
    const double* c = static_cast<const double*>(cams.data());
    std::vector<Camera3d> out(batch);
    for (py::ssize_t b = 0; b < batch; ++b) {
        if (!(std::isfinite(c[2 * b]) && std::isfinite(c[2 * b + 1])))
            throw py::value_error(cat("cameras[", b, "] = (", c[2 * b], ", ", c[2 * b + 1],
                                      "): yaw and pitch must be finite (radians)"));
        out[b] = {c[2 * b], c[2 * b + 1]};
    }
    return out;
}

ImageBatch gray_images(const py::object& out) {
    const ImageBatch img = output_images(out, kMaxSide);
    if (img.channels != 1) throw py::value_error("out must be gray, (B, H, W): the points are drawn white on black");
    return img;
}

py::object render_ifs3d(const py::object& params_obj, const py::object& n_maps_obj, const py::object& seeds_obj,
                        const py::object& cameras_obj, const py::object& out, long long n_points, int threads) {
    py::array params = as_array<double>(params_obj, "params", "float64", {3});
    const py::ssize_t batch = params.shape(0), max_maps = params.shape(1);
    if (params.shape(2) != kIfs3dParams || max_maps < 1 || max_maps > kIfs3dMaxMaps)
        throw py::value_error(cat("params must have shape (batch, maps, 13) with 1..", kIfs3dMaxMaps,
                                  " maps of a b c d e f g h i j k l p; got ", shape_of(params)));
    py::array n_maps = as_array<int32_t>(n_maps_obj, "n_maps", "int32", {1});
    require_length(n_maps, "n_maps", batch);
    py::array seeds = as_array<uint64_t>(seeds_obj, "seeds", "uint64", {1});
    require_length(seeds, "seeds", batch);
    const std::vector<Camera3d> cameras = cameras_of(cameras_obj, batch);
    const ImageBatch img = gray_images(out);
    if (img.batch != batch) throw py::value_error(cat("out holds ", img.batch, " images but params holds ", batch));
    require_range(n_points, "n_points", 2, kMaxPoints, " (the published point_num: 10000)");
    check_threads(threads);
    const double* p = static_cast<const double*>(params.data());
    const int32_t* n = static_cast<const int32_t*>(n_maps.data());
    for (py::ssize_t b = 0; b < batch; ++b) {
        if (n[b] < 1 || n[b] > max_maps)
            throw py::value_error(cat("n_maps[", b, "] = ", n[b], ": must be in 1..", max_maps, " (params' maps axis)"));
        check_maps(p + b * max_maps * kIfs3dParams, n[b], cat("params[", b, "]").c_str());
    }
    const uint64_t* s = static_cast<const uint64_t*>(seeds.data());
    {
        py::gil_scoped_release release;  // safe: raw buffers only
        render_ifs3d_batch(p, n, int(max_maps), batch, s, cameras.data(), n_points, img.data, img.height, img.width,
                           threads);
    }
    return out;
}

py::object project_points(const py::object& points_obj, const py::object& cameras_obj, const py::object& out,
                          int threads) {
    py::array points = as_array<double>(points_obj, "points", "float64", {3});
    const py::ssize_t batch = points.shape(0);
    if (points.shape(1) != 3)
        throw py::value_error(cat("points must have shape (batch, 3, N): planes x, y, z; got ", shape_of(points)));
    const std::vector<Camera3d> cameras = cameras_of(cameras_obj, batch);
    const ImageBatch img = gray_images(out);
    if (img.batch != batch) throw py::value_error(cat("out holds ", img.batch, " images but points holds ", batch));
    check_threads(threads);
    const double* p = static_cast<const double*>(points.data());
    const int64_t count = points.shape(2);
    {
        py::gil_scoped_release release;
        project_batch(p, count, batch, cameras.data(), img.data, img.height, img.width, threads);
    }
    return out;
}

py::array_t<double> cloud_ifs3d(const py::object& params_obj, const py::object& uniforms_obj) {
    py::array params = as_array<double>(params_obj, "params", "float64", {2});
    if (params.shape(1) != kIfs3dParams || params.shape(0) < 1 || params.shape(0) > kIfs3dMaxMaps)
        throw py::value_error(cat("params must have shape (maps, 13) with 1..", kIfs3dMaxMaps, " maps; got ",
                                  shape_of(params)));
    py::array uniforms = as_array<double>(uniforms_obj, "uniforms", "float64", {1});
    const long long n = uniforms.shape(0);
    require_range(n, "len(uniforms)", 2, kMaxPoints, " (the published point_num: 10000)");
    const double* p = static_cast<const double*>(params.data());
    check_maps(p, params.shape(0), "params");
    py::array_t<double> cloud({py::ssize_t(3), py::ssize_t(n - 1)});
    double* xyz = cloud.mutable_data();
    const double* u = static_cast<const double*>(uniforms.data());
    const int maps = int(params.shape(0));
    {
        py::gil_scoped_release release;
        chain_ifs3d(p, maps, u, n - 1, xyz);
        normalise_cloud(xyz, n - 1, n);
    }
    return cloud;
}

py::array_t<double> chain_uniforms(uint64_t seed, long long n) {
    require_range(n, "n", 0, kMaxPoints);
    py::array_t<double> u(n);
    double* d = u.mutable_data();
    const uint64_t key = chain_key(seed);
    for (long long t = 0; t < n; ++t) d[t] = chain_uniform(key, t);
    return u;
}

}  // namespace

void register_ifs3d(py::module_& m) {
    m.def("render_ifs3d", &render_ifs3d, py::arg("params"), py::arg("n_maps"), py::arg("seeds"), py::arg("cameras"),
          py::arg("out"), py::arg("n_points"), py::arg("threads"),
          "Render 3D IFS point clouds into `out`; see fdsl_app.render.render_ifs3d.");
    m.def("project_points", &project_points, py::arg("points"), py::arg("cameras"), py::arg("out"), py::arg("threads"),
          "Project point sets (B, 3, N) into `out` with the ExFractalDB camera; see fdsl_app.render.project_points.");
    m.def("cloud_ifs3d", &cloud_ifs3d, py::arg("params"), py::arg("uniforms"),
          "The published normalised 3D cloud (3, n - 1) of one system from n uniforms (the category search).");
    m.def("chain_uniforms", &chain_uniforms, py::arg("seed"), py::arg("n"),
          "The uniforms render_ifs3d's chain uses for `seed`; for tests.");
}

}  // namespace fdsl::bind
