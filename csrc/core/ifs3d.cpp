// 3D IFS: the published chain and normalisation in float64, and a software stand-in for its OpenGL point render.
#include "core/ifs3d.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "core/rng.hpp"
#include "core/threads.hpp"

namespace fdsl {

namespace {

constexpr double kFovY = 45.0 * M_PI / 180.0, kNear = 1.0, kFar = 100.0, kDistance = 4.0;
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

struct Vec3 {
    double x, y, z;
};
Vec3 cross(const Vec3& a, const Vec3& b) { return {a.y * b.z - b.y * a.z, a.z * b.x - b.z * a.x, a.x * b.y - b.x * a.y}; }
double dot(const Vec3& a, const Vec3& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
Vec3 normalise(const Vec3& v) {
    const double inv = 1.0 / std::sqrt(dot(v, v));  // glm::normalize: v * inversesqrt(dot(v, v))
    return {v.x * inv, v.y * inv, v.z * inv};
}

}  // namespace

void camera_matrix(const Camera3d& camera, double m[16]) {
    // R = rotY(yaw) rotZ(pitch); the eye looks along R (1, 0, 0) from -4 R (1, 0, 0), up = R (0, 1, 0).
    const double cy = std::cos(camera.yaw), sy = std::sin(camera.yaw);
    const double cp = std::cos(camera.pitch), sp = std::sin(camera.pitch);
    const Vec3 dir{cy * cp, sp, -sy * cp}, up{-cy * sp, cp, sy * sp};
    const Vec3 eye{-kDistance * dir.x, -kDistance * dir.y, -kDistance * dir.z};
    // glm::lookAtRH(eye, centre = 0, up)
    const Vec3 f = normalise({-eye.x, -eye.y, -eye.z});
    const Vec3 s = normalise(cross(f, up));
    const Vec3 u = cross(s, f);
    const double view[16] = {s.x,  s.y,  s.z,  -dot(s, eye),  //
                             u.x,  u.y,  u.z,  -dot(u, eye),  //
                             -f.x, -f.y, -f.z, dot(f, eye),   //
                             0.0,  0.0,  0.0,  1.0};
    // glm::perspectiveRH_NO(fovy, aspect 1, near, far)
    const double t = std::tan(kFovY / 2.0);
    double proj[16] = {0.0};
    proj[0] = 1.0 / t;
    proj[5] = 1.0 / t;
    proj[10] = -(kFar + kNear) / (kFar - kNear);
    proj[11] = -(2.0 * kFar * kNear) / (kFar - kNear);
    proj[14] = -1.0;
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) {
            double acc = 0.0;
            for (int k = 0; k < 4; ++k) acc += proj[r * 4 + k] * view[k * 4 + c];
            m[r * 4 + c] = acc;
        }
}

void chain_ifs3d(const double* maps, int n_maps, const double* uniforms, int64_t count, double* xyz) {
    double cum[kIfs3dMaxMaps];
    double running = 0.0;  // the published running sum of p, in its order
    for (int j = 0; j < n_maps; ++j) cum[j] = running += maps[j * kIfs3dParams + 12];
    double* xs = xyz;
    double* ys = xyz + count;
    double* zs = xyz + 2 * count;
    double x = 0.0, y = 0.0, z = 0.0;
    for (int64_t t = 0; t < count; ++t) {
        const double u = uniforms[t];
        int j = 0;
        while (j < n_maps && !(u <= cum[j])) ++j;
        if (j < n_maps) {
            const double* w = maps + j * kIfs3dParams;
            const double nx = x * w[0] + y * w[1] + z * w[2] + w[9];
            const double ny = x * w[3] + y * w[4] + z * w[5] + w[10];
            const double nz = x * w[6] + y * w[7] + z * w[8] + w[11];
            x = nx, y = ny, z = nz;
        }
        xs[t] = x, ys[t] = y, zs[t] = z;
    }
}

void normalise_cloud(double* xyz, int64_t count, int64_t divisor) {
    const int64_t n = 3 * count;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    bool nan = false;
    for (int64_t i = 0; i < n; ++i) {
        const double v = xyz[i];
        nan |= std::isnan(v);
        lo = std::min(lo, v), hi = std::max(hi, v);
    }
    if (nan) lo = hi = std::numeric_limits<double>::quiet_NaN();
    const double span = hi - lo;
    for (int64_t i = 0; i < n; ++i) xyz[i] = ((xyz[i] - lo) / span) * 2.0 - 1.0;
    for (int axis = 0; axis < 3; ++axis) {
        double* v = xyz + axis * count;
        double sum = 0.0;  // Python's sum(): left to right
        for (int64_t i = 0; i < count; ++i) sum += v[i];
        const double centre = sum / double(divisor);
        for (int64_t i = 0; i < count; ++i) v[i] -= centre;
    }
}

void splat_points(const double* xyz, int64_t count, const double m[16], uint8_t* image, int height, int width) {
    const double* xs = xyz;
    const double* ys = xyz + count;
    const double* zs = xyz + 2 * count;
    const double half_w = 0.5 * width, half_h = 0.5 * height;
    for (int64_t i = 0; i < count; ++i) {
        const double x = xs[i], y = ys[i], z = zs[i];
        const double cx = m[0] * x + m[1] * y + m[2] * z + m[3];
        const double cy = m[4] * x + m[5] * y + m[6] * z + m[7];
        const double cz = m[8] * x + m[9] * y + m[10] * z + m[11];
        const double cw = m[12] * x + m[13] * y + m[14] * z + m[15];
        if (!(cw > 0.0 && cz >= -cw && cz <= cw)) continue;  // near / far planes, and NaN
        const double wx = (cx / cw) * half_w + half_w, wy = (cy / cw) * half_h + half_h;
        if (!(wx >= 0.0 && wx < double(width) && wy >= 0.0 && wy < double(height))) continue;
        image[int64_t(wy) * width + int64_t(wx)] = 255;  // non-negative: truncation is floor
    }
}

uint64_t chain_key(uint64_t seed) { return stream_key(seed, 0); }

double chain_uniform(uint64_t key, int64_t t) { return unit_double(splitmix64(key + uint64_t(t) * kGamma)); }

Ifs3dScratch::Ifs3dScratch(int64_t n_points)
    : uniforms(size_t(std::max<int64_t>(n_points - 1, 0))), xyz(3 * size_t(std::max<int64_t>(n_points - 1, 0))) {}

void render_ifs3d(const double* maps, int n_maps, uint64_t seed, const Camera3d& camera, int64_t n_points,
                  const Canvas& canvas, Ifs3dScratch& scratch) {
    if (canvas.height > kMaxSide || canvas.width > kMaxSide || canvas.channels != 1)
        throw std::invalid_argument("render_ifs3d: the canvas must be gray with sides up to kMaxSide");
    if (n_maps < 1 || n_maps > kIfs3dMaxMaps) throw std::invalid_argument("render_ifs3d: n_maps must be in 1..64");
    const int64_t count = n_points - 1;  // the published calculate(n) draws n - 1 points
    if (count < 1 || scratch.xyz.size() < 3 * size_t(count))
        throw std::invalid_argument("render_ifs3d: n_points must be >= 2 and fit the scratch");
    std::memset(canvas.data, 0, size_t(canvas.height) * canvas.width);
    const uint64_t key = chain_key(seed);
    double* u = scratch.uniforms.data();
    for (int64_t t = 0; t < count; ++t) u[t] = chain_uniform(key, t);
    chain_ifs3d(maps, n_maps, u, count, scratch.xyz.data());
    normalise_cloud(scratch.xyz.data(), count, n_points);
    double m[16];
    camera_matrix(camera, m);
    splat_points(scratch.xyz.data(), count, m, canvas.data, canvas.height, canvas.width);
}

void render_ifs3d_batch(const double* maps, const int32_t* n_maps, int max_maps, int64_t batch, const uint64_t* seeds,
                        const Camera3d* cameras, int64_t n_points, uint8_t* out, int height, int width, int threads) {
    const int workers = int(std::max<int64_t>(1, std::min<int64_t>(threads, batch)));
    std::vector<Ifs3dScratch> scratch;
    scratch.reserve(workers);
    for (int w = 0; w < workers; ++w) scratch.emplace_back(n_points);
    const size_t image = size_t(height) * width;
    parallel_for(batch, workers, [&](int64_t b, int worker) {
        const Canvas canvas{out + b * image, height, width, 1};
        render_ifs3d(maps + b * max_maps * kIfs3dParams, n_maps[b], seeds[b], cameras[b], n_points, canvas,
                     scratch[worker]);
    });
}

void project_batch(const double* points, int64_t count, int64_t batch, const Camera3d* cameras, uint8_t* out,
                   int height, int width, int threads) {
    if (height > kMaxSide || width > kMaxSide) throw std::invalid_argument("project_batch: sides up to kMaxSide");
    const size_t image = size_t(height) * width;
    parallel_for(batch, threads, [&](int64_t b, int) {
        uint8_t* img = out + b * image;
        std::memset(img, 0, image);
        double m[16];
        camera_matrix(cameras[b], m);
        splat_points(points + b * 3 * count, count, m, img, height, width);
    });
}

}  // namespace fdsl
