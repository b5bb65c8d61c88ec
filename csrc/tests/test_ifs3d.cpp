// Unit tests of the 3D IFS renderer (csrc/core/ifs3d.cpp): plain checks, non-zero exit on any failure.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/ifs3d.hpp"
#include "tests/check.hpp"

using fdsl::Camera3d;

namespace {

// Two contractive maps (a Sierpinski-like pair) with p = 0.5 each.
const double kMaps[2 * 13] = {0.5, 0, 0, 0, 0.5, 0, 0, 0, 0.5, 0,   0,   0,   0.5,
                              0.5, 0, 0, 0, 0.5, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.5};

void test_camera_projects_origin_to_centre() {
    // The origin lands on the image centre from every view; a point up (+Y) lands above it (larger GL row).
    for (double yaw : {0.0, 0.7, 2.0, -3.0}) {
        double m[16];
        fdsl::camera_matrix(Camera3d{yaw, 0.0}, m);
        CHECK(std::abs(m[3] / m[15]) < 1e-12 && std::abs(m[7] / m[15]) < 1e-12);
        CHECK(std::abs(m[15] - 4.0) < 1e-12);  // w of the origin: its distance to the eye
        const double up_row = (m[5] * 0.5 + m[7]) / (m[13] * 0.5 + m[15]);
        CHECK(up_row > 0.0);
    }
}

void test_chain_and_normalisation() {
    const int64_t count = 999;
    std::vector<double> u(count), xyz(3 * count);
    for (int64_t t = 0; t < count; ++t) u[t] = (t % 7) / 7.0;
    fdsl::chain_ifs3d(kMaps, 2, u.data(), count, xyz.data());
    // First step: u = 0 <= 0.5 -> map 0 from the origin stays at the origin.
    CHECK(xyz[0] == 0.0 && xyz[count] == 0.0 && xyz[2 * count] == 0.0);
    fdsl::normalise_cloud(xyz.data(), count, count + 1);
    double lo = 1e300, hi = -1e300;
    for (double v : xyz) lo = std::min(lo, v), hi = std::max(hi, v);
    CHECK(hi - lo <= 2.0 + 1e-12 && hi - lo > 1.0);
    // A NaN anywhere makes the whole cloud NaN, as numpy's joint min does.
    xyz[5] = std::nan("");
    fdsl::normalise_cloud(xyz.data(), count, count + 1);
    bool all_nan = true;
    for (double v : xyz) all_nan &= std::isnan(v);
    CHECK(all_nan);
}

void test_render_is_deterministic_and_threads_agree() {
    const int batch = 5, size = 64;
    std::vector<double> maps(batch * 2 * 13);
    std::vector<int32_t> n_maps(batch, 2);
    std::vector<uint64_t> seeds(batch);
    std::vector<Camera3d> cams(batch);
    for (int b = 0; b < batch; ++b) {
        std::memcpy(&maps[b * 26], kMaps, sizeof kMaps);
        seeds[b] = 1000 + b;
        cams[b] = {0.3 * b, 0.1 * b};
    }
    std::vector<uint8_t> one(batch * size * size, 7), four(batch * size * size, 9);
    fdsl::render_ifs3d_batch(maps.data(), n_maps.data(), 2, batch, seeds.data(), cams.data(), 2000, one.data(), size,
                             size, 1);
    fdsl::render_ifs3d_batch(maps.data(), n_maps.data(), 2, batch, seeds.data(), cams.data(), 2000, four.data(), size,
                             size, 4);
    CHECK(one == four);
    int lit = 0;
    for (uint8_t v : one) {
        CHECK(v == 0 || v == 255);
        lit += v == 255;
    }
    CHECK(lit > batch * 50);
}

void test_bad_arguments_throw() {
    fdsl::Ifs3dScratch scratch(100);
    std::vector<uint8_t> img(16 * 16);
    const fdsl::Canvas canvas{img.data(), 16, 16, 1};
    const auto render = [&](int n_maps, int64_t n_points) {
        return fdsl::test::invalid_argument_of(
            [&] { fdsl::render_ifs3d(kMaps, n_maps, 1, Camera3d{0, 0}, n_points, canvas, scratch); });
    };
    CHECK(render(2, 100).empty());
    CHECK(!render(0, 100).empty());
    CHECK(!render(2, 1000).empty());  // larger than the scratch
    CHECK(!render(2, 1).empty());
}

}  // namespace

int main() {
    test_camera_projects_origin_to_centre();
    test_chain_and_normalisation();
    test_render_is_deterministic_and_threads_agree();
    test_bad_arguments_throw();
    return fdsl::test::report("test_ifs3d");
}
