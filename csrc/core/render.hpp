// Batch entry points: many images per call, on internal threads, into caller-owned memory.
#pragma once
#include <cstdint>

#include "core/contour.hpp"
#include "core/ifs.hpp"
#include "core/raster.hpp"

namespace fdsl {

enum class Mode : int { Reference = 0, Fast = 1 };

constexpr int64_t kMaxPoints = 10'000'000;  // per image; reference mode keeps 24 bytes a point per thread

struct IfsRenderOptions {
    Mode mode = Mode::Reference;
    int64_t n_points = 100'000;
    int pad = 6;
    Raster raster = Raster::Point;
    bool color = false;
    FastChainOptions fast;     // fast mode only
    bool keep_aspect = false;  // fast mode only
    float crop_pad_fraction = 0.0f;  // with IfsBatch::crops: the full image's border, as a fraction of its side
};

// The batch entry points throw std::invalid_argument for an image side outside [1, kMaxSide] (raster.hpp), before
// any work; everything else they assume valid (the bindings check it).

// A batch of B images, H x W x C each, contiguous in `out`; per-sample seeds, patch seeds and flips (0..3).
struct IfsBatch {
    const IfsSystem* systems;
    int64_t size;
    const uint64_t* seeds;
    const uint64_t* patch_seeds;
    const uint8_t* flips;
    const float* crops;  // null, or B x (left, top, width, height): fast mode draws only that part of the image
    uint8_t* out;
    int height, width, channels;
};

void render_ifs_batch(const IfsBatch& batch, const IfsRenderOptions& options, int threads);

// Share of non-zero pixels of a reference-mode point render (size x size, pad), per system.
void fill_rate_batch(const IfsSystem* systems, int64_t size, const uint64_t* seeds, int64_t n_points, int image_size,
                     int pad, int threads, double* rates);
// The same with each chain's uniforms drawn from (a copy of) `chains[i]` instead of a seed.
void fill_rate_batch(const IfsSystem* systems, int64_t size, const uint64_t* seeds, const Mt19937* chains,
                     int64_t n_points, int image_size, int pad, int threads, double* rates);

void render_contour_batch(const ContourParams* params, int64_t size, ContourStyle style, const uint64_t* seeds,
                          double canvas_size, uint8_t* out, int height, int width, int channels, int threads);

}  // namespace fdsl
