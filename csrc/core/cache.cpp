#include "core/cache.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cache_draw.hpp"
#include "core/render.hpp"
#include "core/render_detail.hpp"
#include "core/simd.hpp"
#include "core/threads.hpp"

namespace fdsl {

namespace {

// One bit per pixel of a side x side image (bit set where the byte is not 0), rows of cache_words(side) words.
void pack_rows(const uint8_t* image, int side, uint64_t* out) {
    const int words = cache_words(side);
    for (int r = 0; r < side; ++r) {
        const uint8_t* px = image + int64_t(r) * side;
        uint64_t* dst = out + int64_t(r) * words;
        for (int k = 0; k < words; ++k) {
            uint64_t word = 0;
            const int first = 64 * k, count = std::min(64, side - first);
            int b = 0;
            for (; b + 8 <= count; b += 8) {
                uint64_t x;
                std::memcpy(&x, px + first + b, 8);
                // The top bit of every non-zero byte, moved down to bit 0, then the 8 bytes' bits gathered into the
                // top byte by one multiply (little-endian: byte i -> bit i).
                x = ((((x & 0x7F7F7F7F7F7F7F7Full) + 0x7F7F7F7F7F7F7F7Full) | x) & 0x8080808080808080ull) >> 7;
                word |= ((x * 0x0102040810204080ull) >> 56) << b;
            }
            for (; b < count; ++b) word |= uint64_t(px[first + b] != 0) << b;
            dst[k] = word;
        }
    }
}

// floor(x) for |x| < 2^31, inline (std::floor is a library call on baseline x86-64).
inline int floor_int(double x) {
    const int i = int(x);
    return i - (double(i) > x);
}

}  // namespace

void build_cache_batch(const IfsSystem* systems, int64_t count, int64_t n_points, int side, int pad, bool dilate,
                       int threads, uint64_t* out) {
    detail::check_sides(side, side);
    IfsRenderOptions o;
    o.mode = Mode::Reference, o.n_points = n_points, o.pad = pad;
    o.raster = dilate ? Raster::FullPatch : Raster::Point;
    const int workers = detail::worker_count(threads, count);
    const int64_t words = int64_t(side) * cache_words(side);
    std::vector<detail::Scratch> scratch;
    scratch.reserve(workers);
    for (int w = 0; w < workers; ++w) scratch.emplace_back(o, side, side);
    std::vector<std::vector<uint8_t>> images(workers, std::vector<uint8_t>(size_t(side) * side));
    parallel_for(count, workers, [&](int64_t i, int worker) {
        const Canvas canvas{images[worker].data(), side, side, 1};
        detail::render_one(systems[i], kCacheChainSeed, 0, 0, nullptr, o, canvas, scratch[worker]);
        pack_rows(images[worker].data(), side, out + i * words);
    });
}

namespace {

// The unnormalised weights of tap t of every output, w[t * out + i], and their sums over t (in order of t): the
// divisions run vectorised over the outputs (AVX2 clone or baseline, the same IEEE operations either way).
FDSL_MULTIVERSION
void tap_weights(int out, int taps, double support, const double* center, const int32_t* lo, const double* count,
                 double* w, double* total) {
    for (int i = 0; i < out; ++i) total[i] = 0.0;
    for (int t = 0; t < taps; ++t) {
        double* wt = w + int64_t(t) * out;
        for (int i = 0; i < out; ++i) {
            const double d = (double(lo[i] + t) + 0.5 - center[i]) / support;
            const double v = 1.0 - std::fabs(d);
            wt[i] = double(t) < count[i] && v > 0.0 ? v : 0.0;
            total[i] += wt[i];
        }
    }
}

FDSL_MULTIVERSION
void normalise(int out, int taps, const double* w, const double* total, float* weights) {
    for (int t = 0; t < taps; ++t)
        for (int i = 0; i < out; ++i)
            weights[int64_t(i) * taps + t] = total[i] > 0.0 ? float(w[int64_t(t) * out + i] / total[i]) : 0.0f;
}

}  // namespace

int resample_weights(int n, int out, int32_t* lo, float* weights, double* scratch) {
    const double scale = double(n) / double(out), support = std::max(scale, 1.0);
    double* const center = scratch;
    double* const count = scratch + out;
    double* const total = scratch + 2 * out;
    double* const w = scratch + 3 * out;
    int taps = 1;
    for (int i = 0; i < out; ++i) {
        center[i] = (double(i) + 0.5) * scale;
        const int a = std::max(0, floor_int(center[i] - support + 0.5));
        const int b = std::min(n, floor_int(center[i] + support + 0.5));
        lo[i] = a, count[i] = double(b - a);
        taps = std::max(taps, b - a);
    }
    tap_weights(out, taps, support, center, lo, count, w, total);
    normalise(out, taps, w, total, weights);
    return taps;
}

void draw_cached_batch(const CacheDrawBatch& b, CacheKind kind, int threads) {
    cache_detail::draw_cached_batch_on(b, kind, threads, use_avx2_kernels());
}

void cache_detail::draw_cached_batch_on(const CacheDrawBatch& b, CacheKind kind, int threads, bool avx2) {
    detail::check_sides(b.side, b.side);
    detail::check_sides(b.out_side, b.out_side);
    const int workers = detail::worker_count(threads, b.size);
    std::vector<cache_detail::DrawScratch> scratch;
    scratch.reserve(workers);
    for (int w = 0; w < workers; ++w) scratch.emplace_back(b.side, b.out_side);
    const int words = cache_words(b.side), T = b.out_side;
    parallel_for(b.size, workers, [&](int64_t i, int worker) {
        cache_detail::DrawScratch& s = scratch[worker];
        cache_detail::DrawJob job{};
        job.cache = b.cache + b.index[i] * int64_t(b.side) * words;
        job.side = b.side, job.words = words, job.kind = kind, job.patch_seed = b.patch_seeds[i];
        if (b.crops != nullptr) {
            const int32_t* c = b.crops + 4 * i;
            job.left = c[0], job.top = c[1], job.width = c[2], job.height = c[3];
        } else {
            job.left = 0, job.top = 0, job.width = b.side, job.height = b.side;
        }
        job.flip = b.flips[i];
        job.out = b.out + i * int64_t(T) * T;
        job.out_side = T;
        job.taps_x = resample_weights(job.width, T, s.lo_x.data(), s.w_x.data(), s.weight_tmp.data());
        job.taps_y = resample_weights(job.height, T, s.lo_y.data(), s.w_y.data(), s.weight_tmp.data());
        // Padding rows of the last block: the last row's window, weight 0.
        for (int r = T; r < s.out_padded; ++r) {
            s.lo_y[r] = s.lo_y[T - 1];
            std::fill_n(s.w_y.data() + int64_t(r) * job.taps_y, job.taps_y, 0.0f);
        }
#ifdef FDSL_HAVE_AVX2_KERNEL
        if (avx2) return avx2::draw_cached_one(job, s);
#endif
        (void)avx2;
        generic::draw_cached_one(job, s);
    });
}

}  // namespace fdsl
