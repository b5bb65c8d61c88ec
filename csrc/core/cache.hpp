// The attractor cache. FractalDB, OFDB and 1p-frac seed every reference chain with 100, so a system's point set
// never changes from sample to sample: only the patch masks, the flips and the crop do. The cache holds each
// system's pixels once, one bit per pixel, and draw_cached_batch() makes each sample from it: its patch masks, its
// random resized crop with the antialiased bilinear resize to the training size, and its flips. Pure C++17.
#pragma once
#include <cstdint>

#include "core/ifs.hpp"

namespace fdsl {

// The chain seed of the cached renders: FractalDB's np.random.seed(100) (fdsl_app.render.REFERENCE_SEED).
constexpr uint32_t kCacheChainSeed = 100;
// A pixel of the dilated support is lit in kind Patch when its hash is below floor(2^32 * 256 / 511): probability
// 256/511, the marginal of the reference's last-writer-wins paste of uniform masks in 1..511.
constexpr uint32_t kPatchThreshold = 2151686160u;

// 64-bit words per cache row of `side` pixels.
constexpr int cache_words(int side) { return (side + 63) / 64; }

// Layout: uint64 (K, S, W), W = cache_words(S). Pixel (r, c) of system k is bit c % 64 of word [k, r, c / 64]
// (LSB = lowest column); the bits past column S - 1 are 0 (build_cache_batch writes them so; draws never read them).
// The image is in the flip-0 frame: the orientation of a reference render with flips 0.
//
// Builds the cache of `count` systems at side x side: the reference-mode render (chain seed kCacheChainSeed,
// n_points points, pad) with the point raster (dilate = false) or the full 3x3 patch raster (dilate = true), bit
// for bit: a bit is set where that render's pixel is not 0. Throws std::invalid_argument for a side outside
// [1, kMaxSide]; the other arguments are assumed valid (n_points in [1, kMaxPoints], side > 2 pad).
void build_cache_batch(const IfsSystem* systems, int64_t count, int64_t n_points, int side, int pad, bool dilate,
                       int threads, uint64_t* out);

// How a sample's lit pixels come from its cache, pixel (r, c) of the flip-0 frame, pidx = r * S + c (uint32):
enum class CacheKind : int {
    Point = 0,      // the bit (a point cache): raster "point"
    FullPatch = 1,  // the bit (a dilated cache): raster "full_patch"
    Patch = 2,      // the bit (a dilated cache) and hash32(uint32(stream_key(patch_seed, 3)), pidx) < kPatchThreshold:
                    // FractalDB's patches, pixel by pixel at their exact marginal
    UnionPatch = 3, // (a point cache) m = 1 + bounded(uint32(stream_key(patch_seed, 2)), 511), the Rasteriser's union
                    // mask: OR over the cells (dr, dc) in 0..2 whose mask bit 8 - (3 dr + dc) is set of
                    // bit(r + 1 + dr, c - 1 - dc), cells outside the image 0; raster "union_patch"
};

// A batch of B draws into out (B, T, T) uint8. Sample b: system index[b] of the cache, patch_seeds[b], the crop
// crops[4 b ..] = (left, top, width, height) in the flip-0 frame (null: the whole image), flips[b] in 0..3.
// Each sample: its lit pixels (above); the crop resampled to T x T with the antialiased bilinear (triangle) filter,
// separable, as PIL / torchvision resize a crop (resample_weights); gray min(127, floor(127 acc + 0.5)) in float32;
// written flipped by flips[b] (bit 0 top-bottom, bit 1 left-right). A crop of the whole image at T = S gives
// 127 * lit exactly: the reference render of that raster.
struct CacheDrawBatch {
    const uint64_t* cache;  // (systems, side, cache_words(side))
    int64_t systems;
    int side;
    int64_t size;  // B
    const int64_t* index;
    const uint64_t* patch_seeds;
    const int32_t* crops;  // B x 4, or null
    const uint8_t* flips;
    uint8_t* out;  // B x out_side x out_side
    int out_side;
};

// Throws std::invalid_argument for a side or out_side outside [1, kMaxSide]; the rest is assumed valid (index in
// [0, systems), 1 <= width, height, left + width <= side, top + height <= side, flips <= 3). Per-sample results do
// not depend on the thread count, the batch, or the SIMD build (AVX2 or baseline).
void draw_cached_batch(const CacheDrawBatch& batch, CacheKind kind, int threads);

// The resample weights of one axis: input length n (the crop's), output length `out`. scale = n / out, support =
// max(scale, 1); output i: center = (i + 0.5) scale, taps j in [lo, hi), lo = max(0, floor(center - support + 0.5)),
// hi = min(n, floor(center + support + 0.5)), w_j = max(0, 1 - |(j + 0.5 - center) / support|) in double, divided by
// their sum (taken in order of j) and stored as float32. Writes lo[i] and weights[i * taps + t] (tap lo[i] + t;
// 0 past hi) and returns taps = max over i of hi - lo. `weights` holds out * resample_taps_bound(n, out) floats,
// `scratch` resample_scratch_size(n, out) doubles.
int resample_weights(int n, int out, int32_t* lo, float* weights, double* scratch);

// An upper bound of the taps of resample_weights(n', out) for every n' <= n: hi - lo <= 2 support + 1, and <= n.
constexpr int resample_taps_bound(int n, int out) {
    const int bound = 2 * (((n > out ? n : out) + out - 1) / out) + 1;
    return bound < n ? bound : n;
}
// Doubles of scratch resample_weights(n', out) needs for every n' <= n.
constexpr int64_t resample_scratch_size(int n, int out) { return int64_t(resample_taps_bound(n, out) + 3) * out; }

}  // namespace fdsl
