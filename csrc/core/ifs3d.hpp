// 3D IFS point clouds projected to images in software (ExFractalDB / MV-FractalDB / 3D-OFDB, spec section 5).
// The published pipeline draws a 3D chaos game, normalises the cloud jointly to [-1, 1] and centres it, and renders
// it with OpenGL (white 1 px GL_POINTS, perspective camera at distance 4). Here the same steps run on the CPU.
#pragma once
#include <cstdint>
#include <vector>

#include "core/raster.hpp"

namespace fdsl {

// One map: x' = a x + b y + c z + j, y' = d x + e y + f z + k, z' = g x + h y + i z + l, then its probability p.
constexpr int kIfs3dParams = 13;  // a b c d e f g h i j k l p
constexpr int kIfs3dMaxMaps = 64;

// The published camera (image_render/render.py): perspective fov 45 deg, near 1, far 100, eye at distance 4
// from the origin, looking at it.
struct Camera3d {
    double yaw;    // rotation of the eye about +Y (radians); the eye sits at -4 * R (1, 0, 0)
    double pitch;  // rotation about +Z before the yaw (0 in the published views); up = R (0, 1, 0)
};

// The 4x4 clip-from-world matrix (row-major) of a camera for a square image: glm's perspective (right-handed,
// depth -1..1) times glm's lookAt, in float64.
void camera_matrix(const Camera3d& camera, double matrix[16]);

// The published chain: from (0, 0, 0) (not stored), step t uses uniform u[t] and the first map whose cumulative
// probability is >= u[t]; when none is (rounding in the sum), the point repeats. Writes `count` points as three
// planes xs | ys | zs of `count` doubles each (the published (3, N) layout).
void chain_ifs3d(const double* maps, int n_maps, const double* uniforms, int64_t count, double* xyz);

// The published normalisation in place: joint min-max over all coordinates to [-1, 1] (NaN anywhere makes every
// coordinate NaN, as numpy's min does), then each axis minus its sum divided by `divisor` (the published code
// divides by its point_num, one more than the points it draws).
void normalise_cloud(double* xyz, int64_t count, int64_t divisor);

// Lights the pixel of each point (planes xs | ys | zs of `count`) on a (height, width) uint8 canvas already
// cleared: white (255), window coordinates floored, row 0 = OpenGL's bottom row (the published PNGs come straight
// from glReadPixels). Points outside the clip volume (behind the near plane, past the far plane, off the image)
// and non-finite points are skipped.
void splat_points(const double* xyz, int64_t count, const double matrix[16], uint8_t* image, int height, int width);

// Uniform number t of a render chain: unit_double(splitmix64(stream_key(seed, 0) + t * golden)), so any sample's
// cloud is a pure function of its seed.
double chain_uniform(uint64_t key, int64_t t);
uint64_t chain_key(uint64_t seed);

// Per-worker memory: the uniforms and the cloud of one image of `n_points` (published point_num: n_points - 1
// points drawn).
struct Ifs3dScratch {
    std::vector<double> uniforms, xyz;
    explicit Ifs3dScratch(int64_t n_points);
};

// One image: the chain of `maps` (n_maps x 13) with uniforms from `seed`, normalised, projected by `camera`.
void render_ifs3d(const double* maps, int n_maps, uint64_t seed, const Camera3d& camera, int64_t n_points,
                  const Canvas& canvas, Ifs3dScratch& scratch);

// A batch: sample b uses maps + b * max_maps * 13 (n_maps[b] rows), seeds[b], cameras[b], image b of out
// (batch, height, width). Scratch for every worker is allocated before the threads start.
void render_ifs3d_batch(const double* maps, const int32_t* n_maps, int max_maps, int64_t batch, const uint64_t* seeds,
                        const Camera3d* cameras, int64_t n_points, uint8_t* out, int height, int width, int threads);

// A batch of given point sets: points + b * 3 * count (planes), projected into image b.
void project_batch(const double* points, int64_t count, int64_t batch, const Camera3d* cameras, uint8_t* out,
                   int height, int width, int threads);

}  // namespace fdsl
