// Iterated function systems: the chaos game (reference and fast) and the mapping of points to pixels.
// Pure C++17: no Python, no torch. Inputs are assumed valid here; the bindings validate them.
#pragma once
#include <cstdint>

#include "core/rng.hpp"

namespace fdsl {

constexpr int kMaxMaps = 8;

// One affine map w(x, y) = (a x + b y + e, c x + d y + f), chosen with probability p.
struct AffineMap {
    double a, b, c, d, e, f, p;
};

struct IfsSystem {
    int n_maps;
    AffineMap maps[kMaxMaps];
};

// Reference chain, as FractalDB's calculate(): point 0 is the origin; point t >= 1 applies the first map j with
// u[t-1] <= cumsum(p)[j], u = numpy's legacy np.random.seed(seed); np.random.random(n). Float64 throughout.
// If u exceeds the total probability (a sum rounded below 1) the reference keeps its previous point; so do we.
// bounds = {xmin, xmax, ymin, ymax} of the points, NaN ignored, for reference_pixels' fast path.
// The uniforms come from `rng` (a copy): a seed's fresh stream in every published render, the search's one running
// stream in the published category search (core/published_search.hpp).
void reference_chain(const IfsSystem& system, Mt19937 rng, int64_t n, double* xs, double* ys, double bounds[4]);
inline void reference_chain(const IfsSystem& system, uint32_t seed, int64_t n, double* xs, double* ys,
                            double bounds[4]) {
    reference_chain(system, Mt19937(seed), n, xs, ys, bounds);
}

// Reference rescale, as FractalDB's __rescale(): drop the 100 points before the first NaN and every NaN (x first,
// then y); shift an axis by its minimum if that is negative; pixel = trunc(v / (max - min) * (size - 2 pad) + pad)
// per axis (aspect not kept). Defined where the reference is not: remaining non-finite points are dropped, a
// zero-span axis puts every point in the middle of that axis, and a point whose pixel falls outside the image is
// dropped. Overwrites xs/ys. Returns the number of pixels written to cols/rows (x -> column, y -> row).
int64_t reference_pixels(double* xs, double* ys, int64_t n, const double bounds[4], int width, int height, int pad,
                         int32_t* cols, int32_t* rows);

// The common case, checked in O(1) from the chain's bounds: every point finite and each axis' minimum <= 0 (the
// origin is a point), so after the shift every value lies in [0, span] and, rounding being monotone, every pixel in
// [pad, size - pad] (pad >= 1). Then reference_map_regular() maps any range of points, e.g. in cache-sized chunks,
// to the same pixels as reference_pixels().
bool reference_points_regular(const double* xs, const double* ys, int64_t n, const double bounds[4], int pad);
void reference_map_regular(const double* xs, const double* ys, int64_t count, const double bounds[4], int width,
                           int height, int pad, int32_t* cols, int32_t* rows);

struct FastChainOptions {
    int chains = 16;                   // independent chains interleaved, a multiple of 8 (the SIMD width)
    int burn_in = 20;                  // steps each chain runs before its points are kept
    bool start_at_fixed_point = false; // start at map 0's fixed point instead of the origin
};

// Fast chain: `chains` independent chains in float32, map choice from a counter-based hash of (seed, chain, step)
// with 2^-24 probability resolution. A chain whose point leaves |x|,|y| <= 1e8 (or turns non-finite) restarts at its
// start point. Point i is chain (i mod chains) at step (i / chains). bbox = {xmin, xmax, ymin, ymax} of the n points.
void fast_chain(const IfsSystem& system, uint64_t seed, int64_t n, const FastChainOptions& options, float* xs,
                float* ys, float bbox[4]);

// Maps fast-chain points into [pad, size - pad] per axis (or keeping the aspect ratio, centred); clamps to the image.
// An axis whose span is zero, or too small for a finite float scale (below room / FLT_MAX), lands in the middle.
void fast_pixels(const float* xs, const float* ys, int64_t n, const float bbox[4], int width, int height, int pad,
                 bool keep_aspect, int32_t* cols, int32_t* rows);

// A crop of the full image, in fractions of it, in the final orientation (y up, before any variant flip): the
// geometric augmentation applied to the points instead of the pixels. The full image is the render without a
// crop, whose border is `pad_fraction` of its side.
struct CropWindow {
    float left, top, width, height;
    float pad_fraction;
};

// As fast_pixels, but only the points inside `crop`, scaled so that the crop fills width x height (a random
// resized crop drawn directly at the output resolution). Returns the number of points written.
int64_t fast_pixels_cropped(const float* xs, const float* ys, int64_t n, const float bbox[4], int width, int height,
                            bool keep_aspect, const CropWindow& crop, int32_t* cols, int32_t* rows);

// Fixed point of map 0, (I - A)^-1 b; the origin if I - A is (nearly) singular.
void fixed_point(const AffineMap& map, double* x, double* y);

// Which fast-chain kernel runs on this machine: "avx2" or "generic" (FDSL_FORCE_GENERIC=1 forces generic).
const char* fast_kernel_name();

}  // namespace fdsl
