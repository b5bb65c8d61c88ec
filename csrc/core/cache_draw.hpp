// Internal to the core: the per-sample kernel of draw_cached_batch (cache.cpp), written once in
// cache_draw_impl.hpp and compiled twice (cache_draw_generic.cpp, cache_draw_avx2.cpp), and its scratch.
#pragma once
#include <cstdint>
#include <vector>

#include "core/cache.hpp"

namespace fdsl::cache_detail {

constexpr int kMaxLanes = 8;  // the widest build's vector (AVX2: 8 floats); scratch is laid out for it

inline int round_up(int n, int k) { return (n + k - 1) / k * k; }

// One thread's memory for draws from a cache of side S at output side T, allocated (and zeroed) before the threads
// start.
struct DrawScratch {
    int taps_bound, out_padded, lit_stride;
    std::vector<int32_t> lo_x, lo_y;   // out_padded: first tap of each output column / row
    std::vector<float> w_x, w_y;       // out_padded * taps_bound: the weights, `taps` per output
    std::vector<double> weight_tmp;    // resample_scratch_size(side, out_side)
    std::vector<uint64_t> lit;         // (S + taps_bound) rows of lit_stride words: the crop's lit pixels, bit 0 =
                                       // its left column; rows past the crop's height are zero when read
    std::vector<uint64_t> row_words;   // W + 2: one row's lit words, source frame
    std::vector<uint16_t> groups;      // 8 (W + 2): kind Patch, the row's non-zero bytes (AVX2 build)
    std::vector<uint8_t> keep;         // 8 (W + 2): kind Patch, their hash bits
    std::vector<float> colsum;         // (64 W + taps_bound) columns x kMaxLanes output rows: the vertical pass
    DrawScratch(int side, int out_side)
        : taps_bound(resample_taps_bound(side, out_side)), out_padded(round_up(out_side, kMaxLanes)),
          lit_stride(cache_words(side) + 1), lo_x(out_padded), lo_y(out_padded),
          w_x(size_t(out_padded) * taps_bound), w_y(size_t(out_padded) * taps_bound),
          weight_tmp(size_t(resample_scratch_size(side, out_side))), lit(size_t(side + taps_bound) * lit_stride),
          row_words(cache_words(side) + 2), groups(8 * size_t(cache_words(side) + 2)),
          keep(8 * size_t(cache_words(side) + 2)), colsum(size_t(64 * cache_words(side) + taps_bound) * kMaxLanes) {}
};

// One sample, with its weights already in the scratch (lo_x, w_x with taps_x per output; lo_y, w_y with taps_y;
// entries past out_side of lo_y repeat its last value with weights 0).
struct DrawJob {
    const uint64_t* cache;  // the system's (side, words) image
    int side, words;
    CacheKind kind;
    uint64_t patch_seed;
    int left, top, width, height, flip;
    uint8_t* out;  // out_side x out_side
    int out_side;
    int taps_x, taps_y;
};

// draw_cached_batch with the kernel chosen by the caller: the AVX2 build (only where use_avx2_kernels() says the CPU
// has it) or the baseline one. For the tests, which compare the two.
void draw_cached_batch_on(const CacheDrawBatch& batch, CacheKind kind, int threads, bool avx2);

}  // namespace fdsl::cache_detail

namespace fdsl::generic {
void draw_cached_one(const cache_detail::DrawJob& job, cache_detail::DrawScratch& scratch);
}
namespace fdsl::avx2 {
void draw_cached_one(const cache_detail::DrawJob& job, cache_detail::DrawScratch& scratch);
}
