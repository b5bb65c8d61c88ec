// Unit tests of the attractor cache: the build against the rasteriser, draws at identity against reference renders,
// crop and flip geometry, the resample weights, a scalar restatement of the draw, threads and SIMD builds.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cache.hpp"
#include "core/cache_draw.hpp"
#include "core/raster.hpp"
#include "core/render.hpp"
#include "core/rng.hpp"
#include "core/simd.hpp"
#include "tests/check.hpp"
#include "tests/systems.hpp"

using namespace fdsl;
using fdsl::test::invalid_argument_of;
using fdsl::test::sierpinski;

namespace {

// A fern-like system: an asymmetric attractor, so that any flip or shift shows.
IfsSystem fern() {
    IfsSystem s{};
    s.n_maps = 4;
    s.maps[0] = {0.0, 0.0, 0.0, 0.16, 0.0, 0.0, 0.01};
    s.maps[1] = {0.85, 0.04, -0.04, 0.85, 0.0, 1.6, 0.85};
    s.maps[2] = {0.2, -0.26, 0.23, 0.22, 0.0, 1.6, 0.07};
    s.maps[3] = {-0.15, 0.28, 0.26, 0.24, 0.0, 0.44, 0.07};
    return s;
}

constexpr int64_t kPoints = 20000;
constexpr int kPad = 6;

// Reference-mode gray render (chain seed 100) of one system: raster, patch seed, flip.
std::vector<uint8_t> reference(const IfsSystem& system, int side, Raster raster, uint64_t patch_seed, uint8_t flip) {
    std::vector<uint8_t> image(size_t(side) * side);
    const uint64_t seed = kCacheChainSeed;
    IfsRenderOptions o;
    o.mode = Mode::Reference, o.n_points = kPoints, o.pad = kPad, o.raster = raster;
    render_ifs_batch(IfsBatch{&system, 1, &seed, &patch_seed, &flip, nullptr, image.data(), side, side, 1}, o, 1);
    return image;
}

std::vector<uint64_t> build(const std::vector<IfsSystem>& systems, int side, bool dilate, int threads = 2) {
    std::vector<uint64_t> cache(systems.size() * side * cache_words(side), 0xDEADBEEFull);
    build_cache_batch(systems.data(), int64_t(systems.size()), kPoints, side, kPad, dilate, threads, cache.data());
    return cache;
}

bool bit(const uint64_t* image, int side, int r, int c) {
    return (image[int64_t(r) * cache_words(side) + c / 64] >> (c % 64)) & 1u;
}

struct Draw {
    std::vector<int64_t> index;
    std::vector<uint64_t> seeds;
    std::vector<int32_t> crops;  // empty: whole image
    std::vector<uint8_t> flips;
};

std::vector<uint8_t> draw(const std::vector<uint64_t>& cache, int side, const Draw& d, CacheKind kind, int out_side,
                          int threads = 1, int avx2 = -1) {
    const int64_t size = int64_t(d.index.size());
    std::vector<uint8_t> out(size_t(size) * out_side * out_side, 0xAB);
    const CacheDrawBatch b{cache.data(), int64_t(cache.size() / (size_t(side) * cache_words(side))), side, size,
                           d.index.data(), d.seeds.data(), d.crops.empty() ? nullptr : d.crops.data(),
                           d.flips.data(), out.data(), out_side};
    if (avx2 < 0) draw_cached_batch(b, kind, threads);
    else cache_detail::draw_cached_batch_on(b, kind, threads, avx2 != 0);
    return out;
}

void test_build_is_the_packed_render() {
    const std::vector<IfsSystem> systems{sierpinski(), fern()};
    for (int side : {64, 70, 129}) {
        for (bool dilate : {false, true}) {
            const std::vector<uint64_t> cache = build(systems, side, dilate);
            const int words = cache_words(side);
            for (size_t k = 0; k < systems.size(); ++k) {
                const std::vector<uint8_t> image =
                    reference(systems[k], side, dilate ? Raster::FullPatch : Raster::Point, 0, 0);
                const uint64_t* packed = cache.data() + k * side * words;
                bool same = true, tail_zero = true;
                for (int r = 0; r < side; ++r)
                    for (int c = 0; c < 64 * words; ++c) {
                        if (c < side) same &= bit(packed, side, r, c) == (image[size_t(r) * side + c] != 0);
                        else tail_zero &= !bit(packed, side, r, c);
                    }
                CHECK(same);
                CHECK(tail_zero);
            }
        }
    }
}

// Whole image, T == S: every weight is 1 on its own pixel, so the draw is 127 * lit, flipped: the reference render.
void test_identity_is_the_reference_render() {
    const std::vector<IfsSystem> systems{sierpinski(), fern()};
    for (int side : {61, 128}) {
        const std::vector<uint64_t> points = build(systems, side, false), dilated = build(systems, side, true);
        for (int k = 0; k < 2; ++k)
            for (uint8_t flip = 0; flip < 4; ++flip)
                for (uint64_t seed : {1ull, 77ull, 123456789ull}) {
                    const Draw d{{k}, {seed}, {}, {flip}};
                    CHECK(draw(points, side, d, CacheKind::Point, side) ==
                          reference(systems[k], side, Raster::Point, seed, flip));
                    CHECK(draw(dilated, side, d, CacheKind::FullPatch, side) ==
                          reference(systems[k], side, Raster::FullPatch, seed, flip));
                    CHECK(draw(points, side, d, CacheKind::UnionPatch, side) ==
                          reference(systems[k], side, Raster::UnionPatch, seed, flip));
                }
    }
}

// Kind patch at identity: exactly the dilated bits whose pixel hash is below the threshold.
void test_patch_kind_keeps_the_hashed_pixels() {
    const int side = 100;
    const std::vector<uint64_t> dilated = build({fern()}, side, true);
    for (uint64_t seed : {5ull, 1ull << 40}) {
        const std::vector<uint8_t> out = draw(dilated, side, Draw{{0}, {seed}, {}, {0}}, CacheKind::Patch, side);
        const uint32_t key = uint32_t(stream_key(seed, 3));
        bool same = true;
        int64_t covered = 0, lit = 0;
        for (int r = 0; r < side; ++r)
            for (int c = 0; c < side; ++c) {
                const bool on =
                    bit(dilated.data(), side, r, c) && hash32(key, uint32_t(r * side + c)) < kPatchThreshold;
                same &= out[size_t(r) * side + c] == (on ? 127 : 0);
                covered += bit(dilated.data(), side, r, c), lit += on;
            }
        CHECK(same);
        CHECK(covered > 500 && std::abs(double(lit) / double(covered) - 256.0 / 511.0) < 0.05);
    }
}

// A hand-made cache of side S with the given lit pixels.
std::vector<uint64_t> hand_made(int side, const std::vector<std::pair<int, int>>& pixels) {
    std::vector<uint64_t> cache(size_t(side) * cache_words(side), 0);
    for (auto [r, c] : pixels) cache[size_t(r) * cache_words(side) + c / 64] |= 1ull << (c % 64);
    return cache;
}

void test_single_pixel_lands_after_crop_and_flip() {
    const int side = 150, r = 77, c = 90;
    const std::vector<uint64_t> cache = hand_made(side, {{r, c}});
    // Crops of the output side (scale 1): the pixel moves by the crop's corner, then the flips mirror it.
    const int32_t crops[][4] = {{0, 0, 100, 100}, {60, 50, 100, 100}, {89, 76, 3, 3}, {90, 77, 1, 1}, {10, 69, 81, 81}};
    for (const auto& crop : crops) {
        const int T = crop[2];
        for (uint8_t flip = 0; flip < 4; ++flip) {
            const std::vector<uint8_t> out = draw(cache, side, Draw{{0}, {0}, {crop, crop + 4}, {flip}},
                                                  CacheKind::Point, T);
            const bool inside = c >= crop[0] && c < crop[0] + crop[2] && r >= crop[1] && r < crop[1] + crop[3];
            int row = r - crop[1], col = c - crop[0];
            if (flip & 1) row = T - 1 - row;
            if (flip & 2) col = T - 1 - col;
            int64_t expected_at = inside ? int64_t(row) * T + col : -1, lit = 0;
            bool right = true;
            for (int64_t p = 0; p < int64_t(out.size()); ++p) {
                right &= out[p] == (p == expected_at ? 127 : 0);
                lit += out[p] != 0;
            }
            CHECK(right);
            CHECK(lit == (inside ? 1 : 0));
        }
    }
}

void test_downscale_values() {
    // 2x downscale, support 2: output i reads inputs 2i - 1 .. 2i + 2 with weights 1/8, 3/8, 3/8, 1/8 (clamped and
    // renormalised at the border). A 2x2 block on inputs 2, 3 is 3/4 of output 1 on each axis: 127 * 9/16 -> 71.
    const int side = 8;
    std::vector<std::pair<int, int>> block{{2, 2}, {2, 3}, {3, 2}, {3, 3}};
    std::vector<uint8_t> out = draw(hand_made(side, block), side, Draw{{0}, {0}, {}, {0}}, CacheKind::Point, 4);
    CHECK(out[1 * 4 + 1] == 71);
    CHECK(out[0 * 4 + 0] == 3);   // border output 0: taps 0..2 at 3/7, 3/7, 1/7: input 2 at 1/7 per axis, 127/49
    CHECK(out[0 * 4 + 1] == 14);  // 1/7 x 3/4
    CHECK(out[2 * 4 + 2] == 2);   // output 2: inputs 3..6 at 1/8, 3/8, 3/8, 1/8: input 3 at 1/8 per axis, 127/64
    // The 4x4 block under output 1's taps: 127.
    std::vector<std::pair<int, int>> square;
    for (int r = 1; r < 5; ++r)
        for (int c = 1; c < 5; ++c) square.push_back({r, c});
    out = draw(hand_made(side, square), side, Draw{{0}, {0}, {}, {0}}, CacheKind::Point, 4);
    CHECK(out[1 * 4 + 1] == 127);
    // An all-lit cache is 127 everywhere for any crop and size (the weights are a partition of unity).
    const int big = 200;
    std::vector<uint64_t> full(size_t(big) * cache_words(big), 0);
    for (int rr = 0; rr < big; ++rr)
        for (int cc = 0; cc < big; ++cc) full[size_t(rr) * cache_words(big) + cc / 64] |= 1ull << (cc % 64);
    for (const auto& crop : std::vector<std::vector<int32_t>>{{0, 0, 200, 200}, {3, 5, 97, 131}, {150, 1, 7, 199}}) {
        for (int T : {1, 5, 64, 224}) {
            out = draw(full, big, Draw{{0}, {0}, crop, {3}}, CacheKind::Point, T);
            CHECK(std::all_of(out.begin(), out.end(), [](uint8_t v) { return v == 127; }));
        }
    }
}

void test_resample_weights() {
    for (int n : {1, 2, 7, 64, 100, 224, 225, 362, 512, 1000}) {
        for (int out : {1, 3, 64, 224, 512}) {
            const int bound = resample_taps_bound(n, out);
            std::vector<int32_t> lo(out);
            std::vector<float> w(size_t(out) * bound);
            std::vector<double> tmp(resample_scratch_size(n, out));
            const int taps = resample_weights(n, out, lo.data(), w.data(), tmp.data());
            CHECK(taps >= 1 && taps <= bound);
            CHECK(taps <= resample_taps_bound(1000, out));  // the bound of the largest side covers smaller ones
            bool unity = true, in_range = true, monotone = true;
            for (int i = 0; i < out; ++i) {
                double sum = 0.0;
                for (int t = 0; t < taps; ++t) {
                    sum += w[size_t(i) * taps + t];
                    in_range &= w[size_t(i) * taps + t] >= 0.0f && (w[size_t(i) * taps + t] == 0.0f || lo[i] + t < n);
                }
                unity &= std::abs(sum - 1.0) < 1e-6;
                in_range &= lo[i] >= 0 && lo[i] < n;
                monotone &= i == 0 || lo[i] >= lo[i - 1];
            }
            CHECK(unity);
            CHECK(in_range);
            CHECK(monotone);
            if (n == out) {  // scale 1: each output is its own pixel, weight exactly 1
                bool identity = true;
                for (int i = 0; i < out; ++i) {
                    identity &= lo[i] == i && w[size_t(i) * taps] == 1.0f;
                    for (int t = 1; t < taps; ++t) identity &= w[size_t(i) * taps + t] == 0.0f;
                }
                CHECK(identity);
            }
        }
    }
    // By hand: 8 -> 4 (support 2), output 1: center 3, taps 1..4, 1 - |j + 0.5 - 3| / 2 = 1/4, 3/4, 3/4, 1/4 -> / 2.
    std::vector<int32_t> lo(4);
    std::vector<float> w(4 * resample_taps_bound(8, 4));
    std::vector<double> tmp(resample_scratch_size(8, 4));
    const int taps = resample_weights(8, 4, lo.data(), w.data(), tmp.data());
    CHECK(taps == 4 && lo[1] == 1);
    CHECK(w[4] == 0.125f && w[5] == 0.375f && w[6] == 0.375f && w[7] == 0.125f);
}

// The draw restated pixel by pixel from the spec (lit, weights, vertical then horizontal sums in float32).
std::vector<uint8_t> scalar_draw(const std::vector<uint64_t>& cache, int S, CacheKind kind, uint64_t seed,
                                 const int32_t crop[4], int flip, int T) {
    auto cached = [&](int r, int c) { return r >= 0 && r < S && c >= 0 && c < S && bit(cache.data(), S, r, c); };
    const uint32_t key = uint32_t(stream_key(seed, 3)), mask = 1u + bounded(uint32_t(stream_key(seed, 2)), 511u);
    auto lit = [&](int r, int c) -> float {
        if (kind == CacheKind::Patch) return cached(r, c) && hash32(key, uint32_t(r * S + c)) < kPatchThreshold;
        if (kind != CacheKind::UnionPatch) return cached(r, c);
        bool on = false;
        for (int dr = 0; dr < 3; ++dr)
            for (int dc = 0; dc < 3; ++dc) on |= ((mask >> (8 - (3 * dr + dc))) & 1u) && cached(r + 1 + dr, c - 1 - dc);
        return on;
    };
    const int left = crop[0], top = crop[1], w = crop[2], h = crop[3];
    const int bx = resample_taps_bound(w, T), by = resample_taps_bound(h, T);
    std::vector<int32_t> lo_x(T), lo_y(T);
    std::vector<float> wx(size_t(T) * bx), wy(size_t(T) * by);
    std::vector<double> tmp(std::max(resample_scratch_size(w, T), resample_scratch_size(h, T)));
    const int tx = resample_weights(w, T, lo_x.data(), wx.data(), tmp.data());
    const int ty = resample_weights(h, T, lo_y.data(), wy.data(), tmp.data());
    std::vector<uint8_t> out(size_t(T) * T);
    for (int i = 0; i < T; ++i) {
        std::vector<float> colsum(w + tx, 0.0f);
        for (int c = 0; c < w; ++c)
            for (int t = 0; t < ty; ++t)
                if (lo_y[i] + t < h) colsum[c] += wy[size_t(i) * ty + t] * lit(top + lo_y[i] + t, left + c);
        for (int x = 0; x < T; ++x) {
            float acc = 0.0f;
            for (int k = 0; k < tx; ++k) acc += wx[size_t(x) * tx + k] * colsum[lo_x[x] + k];
            float y = acc * 127.0f + 0.5f;
            y = std::min(y, 127.0f);
            out[size_t((flip & 1) ? T - 1 - i : i) * T + ((flip & 2) ? T - 1 - x : x)] = uint8_t(int(y));
        }
    }
    return out;
}

// Random crops of a fern cache (point and dilated) to several sizes, every kind, against the scalar restatement;
// also the batch against the same samples one by one, 1 against 3 threads, and the AVX2 against the baseline build.
void test_draws_match_the_scalar_restatement() {
    const int S = 150;
    const std::vector<uint64_t> points = build({fern(), sierpinski()}, S, false);
    const std::vector<uint64_t> dilated = build({fern(), sierpinski()}, S, true);
    Draw d;
    uint64_t state = 12345;
    auto next = [&](int n) { return int(splitmix64(state++) % uint64_t(n)); };
    for (int b = 0; b < 24; ++b) {
        const int w = 1 + next(S), h = b % 3 == 0 ? w : 1 + next(S);
        d.index.push_back(next(2));
        d.seeds.push_back(splitmix64(uint64_t(b)));
        for (int32_t v : {next(S - w + 1), next(S - h + 1), w, h}) d.crops.push_back(v);
        d.flips.push_back(uint8_t(next(4)));
    }
    d.crops[0] = 0, d.crops[1] = 0, d.crops[2] = S, d.crops[3] = S;
    for (CacheKind kind : {CacheKind::Point, CacheKind::FullPatch, CacheKind::Patch, CacheKind::UnionPatch}) {
        const bool point_cache = kind == CacheKind::Point || kind == CacheKind::UnionPatch;
        const std::vector<uint64_t>& cache = point_cache ? points : dilated;
        for (int T : {1, 13, 64, 224}) {
            const std::vector<uint8_t> batch = draw(cache, S, d, kind, T, 1);
            CHECK(draw(cache, S, d, kind, T, 3) == batch);
            CHECK(draw(cache, S, d, kind, T, 2, 0) == batch);  // the baseline build
            if (use_avx2_kernels()) CHECK(draw(cache, S, d, kind, T, 2, 1) == batch);
            bool same = true, alone = true;
            for (size_t b = 0; b < d.index.size(); ++b) {
                const int64_t k = d.index[b];
                const std::vector<uint64_t> one(cache.begin() + k * S * cache_words(S),
                                                cache.begin() + (k + 1) * S * cache_words(S));
                const std::vector<uint8_t> expected =
                    scalar_draw(one, S, kind, d.seeds[b], &d.crops[4 * b], d.flips[b], T);
                same &= std::equal(expected.begin(), expected.end(), batch.begin() + b * T * T);
                const Draw single{
                    {0}, {d.seeds[b]}, {d.crops.begin() + 4 * b, d.crops.begin() + 4 * b + 4}, {d.flips[b]}};
                alone &= draw(one, S, single, kind, T) == expected;
            }
            CHECK(same);
            CHECK(alone);
        }
    }
}

void test_core_refuses_sides_above_the_cap() {
    const IfsSystem system = sierpinski();
    std::vector<uint64_t> cache(8, 7);
    CHECK(invalid_argument_of([&] { build_cache_batch(&system, 1, 100, kMaxSide + 1, 6, false, 1, cache.data()); })
              .find("8192") != std::string::npos);
    CHECK(invalid_argument_of([&] { build_cache_batch(&system, 1, 100, 0, 0, false, 1, cache.data()); })
              .find("8192") != std::string::npos);
    CHECK(cache[0] == 7);  // refused before any work
    const int64_t index = 0;
    const uint64_t seed = 0;
    const uint8_t flip = 0;
    std::vector<uint8_t> out(16, 9);
    const CacheDrawBatch too_big_side{cache.data(), 1, kMaxSide + 1, 1, &index, &seed, nullptr, &flip, out.data(), 4};
    const CacheDrawBatch too_big_out{cache.data(), 1, 4, 1, &index, &seed, nullptr, &flip, out.data(), kMaxSide + 1};
    const CacheDrawBatch empty_out{cache.data(), 1, 4, 1, &index, &seed, nullptr, &flip, out.data(), 0};
    for (const CacheDrawBatch& b : {too_big_side, too_big_out, empty_out})
        CHECK(invalid_argument_of([&] { draw_cached_batch(b, CacheKind::Point, 1); }).find("8192") !=
              std::string::npos);
    CHECK(out[0] == 9);
}

}  // namespace

int main() {
    test_build_is_the_packed_render();
    test_identity_is_the_reference_render();
    test_patch_kind_keeps_the_hashed_pixels();
    test_single_pixel_lands_after_crop_and_flip();
    test_downscale_values();
    test_resample_weights();
    test_draws_match_the_scalar_restatement();
    test_core_refuses_sides_above_the_cap();
    return fdsl::test::report("test_cache");
}
