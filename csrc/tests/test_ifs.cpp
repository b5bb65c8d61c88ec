// Unit tests of the IFS core: chains, pixel mapping, rasteriser bounds, batch threading.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/ifs.hpp"
#include "core/raster.hpp"
#include "core/render.hpp"
#include "core/threads.hpp"
#include "tests/check.hpp"
#include "tests/systems.hpp"

using namespace fdsl;
using fdsl::test::invalid_argument_of;
using fdsl::test::sierpinski;

namespace {

void test_reference_chain() {
    const int64_t n = 10000;
    std::vector<double> xs(n), ys(n);
    double b[4];
    reference_chain(sierpinski(), 100, n, xs.data(), ys.data(), b);
    CHECK(xs[0] == 0.0 && ys[0] == 0.0);  // the origin is kept as point 0
    bool inside = true;
    for (int64_t i = 0; i < n; ++i) inside &= xs[i] >= 0 && xs[i] <= 1 && ys[i] >= 0 && ys[i] <= 1;
    CHECK(inside);
    CHECK(b[0] == *std::min_element(xs.begin(), xs.end()) && b[1] == *std::max_element(xs.begin(), xs.end()));
    CHECK(b[2] == *std::min_element(ys.begin(), ys.end()) && b[3] == *std::max_element(ys.begin(), ys.end()));

    std::vector<int32_t> cols(n), rows(n);
    const int64_t m = reference_pixels(xs.data(), ys.data(), n, b, 64, 48, 6, cols.data(), rows.data());
    CHECK(m == n);
    bool padded = true;
    for (int64_t i = 0; i < m; ++i) padded &= cols[i] >= 6 && cols[i] <= 58 && rows[i] >= 6 && rows[i] <= 42;
    CHECK(padded);
    CHECK(*std::max_element(cols.begin(), cols.end()) == 58 && *std::max_element(rows.begin(), rows.end()) == 42);
}

void test_nan_rule() {
    // 300 finite points, then NaN from index 300 on: the 100 before it go too.
    const int64_t n = 400;
    std::vector<double> xs(n), ys(n);
    for (int64_t i = 0; i < n; ++i) xs[i] = i < 300 ? double(i % 7) - 3 : NAN, ys[i] = double(i % 5);
    const double b[4] = {-3, 3, 0, 4};
    std::vector<int32_t> cols(n), rows(n);
    CHECK(reference_pixels(xs.data(), ys.data(), n, b, 32, 32, 2, cols.data(), rows.data()) == 200);
}

void test_fast_chain() {
    const int64_t n = 1001;  // not a multiple of the chain count
    std::vector<float> xs(n), ys(n), xs2(n), ys2(n);
    float b[4], b2[4];
    FastChainOptions o;
    fast_chain(sierpinski(), 42, n, o, xs.data(), ys.data(), b);
    fast_chain(sierpinski(), 42, n, o, xs2.data(), ys2.data(), b2);
    CHECK(std::memcmp(xs.data(), xs2.data(), n * sizeof(float)) == 0);
    CHECK(b[0] == *std::min_element(xs.begin(), xs.end()) && b[1] == *std::max_element(xs.begin(), xs.end()));
    CHECK(b[2] == *std::min_element(ys.begin(), ys.end()) && b[3] == *std::max_element(ys.begin(), ys.end()));
    CHECK(b[0] >= 0.0f && b[1] <= 1.0f && b[2] >= 0.0f && b[3] <= 1.0f);
}

void test_fixed_point() {
    double x, y;
    fixed_point(AffineMap{0.5, 0, 0, 0.5, 1.0, 2.0, 1.0}, &x, &y);
    CHECK(std::abs(x - 2.0) < 1e-12 && std::abs(y - 4.0) < 1e-12);
    fixed_point(AffineMap{1.0, 0, 0, 1.0, 1.0, 2.0, 1.0}, &x, &y);  // a translation has none: the origin
    CHECK(x == 0.0 && y == 0.0);
}

// Two maps with a..d = 0: every point is (e, f) of one of them, so the span is |e0 - e1| per axis.
IfsSystem two_points(double e0, double f0, double e1, double f1) {
    IfsSystem s{};
    s.n_maps = 2;
    s.maps[0] = {0, 0, 0, 0, e0, f0, 0.5};
    s.maps[1] = {0, 0, 0, 0, e1, f1, 0.5};
    return s;
}

// The pixels lit in an image, as row * width + col.
std::vector<int> lit_pixels(const std::vector<uint8_t>& image) {
    std::vector<int> lit;
    for (size_t i = 0; i < image.size(); ++i)
        if (image[i] != 0) lit.push_back(int(i));
    return lit;
}

void test_tiny_spans_land_in_the_middle() {
    // room / span overflows float for a span below room / FLT_MAX: 1e-39 is subnormal, 1e-37 normal but too small.
    // The scale then counts as zero (no inf * 0 = NaN cast to int): the middle pixel, like a zero span.
    const int w = 64, h = 48, pad = 6;
    for (double span : {1e-39, 1e-37, 0.0}) {
        for (bool keep_aspect : {false, true}) {
            const IfsSystem system = two_points(span, span, 0.0, 0.0);
            std::vector<uint8_t> image(w * h);
            const uint64_t seed = 3;
            const uint8_t flip = 0;
            IfsRenderOptions o;
            o.mode = Mode::Fast, o.n_points = 1000, o.pad = pad, o.keep_aspect = keep_aspect;
            render_ifs_batch(IfsBatch{&system, 1, &seed, &seed, &flip, nullptr, image.data(), h, w, 1}, o, 1);
            // Column pad + room / 2 = 32, row 6 + 36 / 2 = 24 counted from the bottom (y up): image row 23.
            CHECK(lit_pixels(image) == std::vector<int>{23 * w + 32});
            // Through a whole-image crop: the room is then 1 - 2 pad / w < 1, so 1e-37 still has a finite scale and
            // the two points land on the corners of the room; the smaller spans land in the middle.
            const float crop[4] = {0.0f, 0.0f, 1.0f, 1.0f};
            o.crop_pad_fraction = float(pad) / w;
            render_ifs_batch(IfsBatch{&system, 1, &seed, &seed, &flip, crop, image.data(), h, w, 1}, o, 1);
            const std::vector<int> corners{4 * w + 58, 43 * w + 6}, middle{23 * w + 32};
            CHECK(lit_pixels(image) == (span == 1e-37 ? corners : middle));
        }
    }
    // Directly, one axis tiny and one normal: only the tiny one collapses to the middle.
    const float xs[3] = {0.0f, 1e-39f, 5e-40f}, ys[3] = {0.0f, 2.0f, 1.0f}, bbox[4] = {0.0f, 1e-39f, 0.0f, 2.0f};
    int32_t cols[3], rows[3];
    fast_pixels(xs, ys, 3, bbox, w, h, pad, false, cols, rows);
    for (int i = 0; i < 3; ++i) CHECK(cols[i] == 32);
    CHECK(rows[0] == pad && rows[1] == h - pad && rows[2] == 24);
    // A tiny span whose scale is still finite keeps it: the points spread over the room.
    const float small_xs[2] = {0.0f, 1e-30f}, small_bbox[4] = {0.0f, 1e-30f, 0.0f, 2.0f};
    fast_pixels(small_xs, ys, 2, small_bbox, w, h, pad, false, cols, rows);
    CHECK(cols[0] == pad && cols[1] == w - pad);
}

void test_patches_clip_at_the_border() {
    // Points on the last row and column: the patch (offset +1..+3) must clip, not write past the image.
    const int h = 8, w = 8;
    std::vector<uint8_t> buffer(h * w + 64, 0xAB);
    const Canvas canvas{buffer.data(), h, w, 1};
    const int32_t cols[3] = {7, 6, 0}, rows[3] = {7, 0, 6};
    for (int flip = 0; flip < 4; ++flip) {
        for (Raster r : {Raster::Patch, Raster::UnionPatch, Raster::FullPatch}) {
            const RasterOptions options{r, false, flip};
            RasterScratch scratch(h, w, options);
            Rasteriser raster(canvas, options, 5, scratch);
            raster.draw(cols, rows, 3, 0);
            raster.finish();
            bool guard = true;
            for (size_t i = h * w; i < buffer.size(); ++i) guard &= buffer[i] == 0xAB;
            CHECK(guard);
        }
    }
}

void test_parallel_for_covers_each_item_once() {
    for (int threads : {1, 2, 3, 8, 64}) {
        std::vector<int> hits(1000, 0);
        parallel_for(1000, threads, [&](int64_t i, int) { ++hits[i]; });
        CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
    }
}

// Waits until `flag` is set; gives up after 10 s so that a broken parallel_for fails the checks instead of hanging.
void wait_for(const std::atomic<bool>& flag) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!flag.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
}

void test_parallel_for_rethrows_a_worker_exception() {
    // Items after the throw take 2 ms each, so the others finish the range only if parallel_for keeps handing out
    // items; unwinding the throw (slow under sanitizers) has about a third of a second before the check below would trip.
    const int64_t count = 1000;
    for (int thrower : {1, 0}) {  // a thread of the pool, then the calling thread
        std::atomic<bool> thrown{false};
        std::atomic<int64_t> done{0};
        std::string message;
        try {
            // The first item of every other worker waits for the throw, so the thrower surely gets an item.
            parallel_for(count, 4, [&](int64_t i, int worker) {
                if ((thrower == 0 && worker == 0) || (thrower != 0 && worker != 0)) {
                    thrown = true;
                    throw std::runtime_error("worker " + std::to_string(worker) + " item " + std::to_string(i));
                }
                wait_for(thrown);
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
                ++done;
            });
        } catch (const std::runtime_error& e) {
            message = e.what();
        }
        CHECK(message.rfind("worker ", 0) == 0);
        CHECK((message.rfind("worker 0 ", 0) == 0) == (thrower == 0));
        CHECK(done < count / 2);  // the others stopped taking items
    }
    // Any exception type, on one thread as on many.
    for (int threads : {1, 3}) {
        int caught = 0;
        try {
            parallel_for(10, threads, [](int64_t i, int) {
                if (i == 5) throw 42;
            });
        } catch (int value) {
            caught = value;
        }
        CHECK(caught == 42);
    }
}

void test_batch_is_thread_independent() {
    const int batch = 6, size = 40;
    std::vector<IfsSystem> systems(batch, sierpinski());
    std::vector<uint64_t> seeds = {1, 2, 3, 4, 5, 6};
    std::vector<uint8_t> flips = {0, 1, 2, 3, 0, 1}, a(batch * size * size), b(a.size());
    IfsRenderOptions o;
    o.mode = Mode::Fast, o.n_points = 5000, o.raster = Raster::Patch;
    IfsBatch io{systems.data(), batch, seeds.data(), seeds.data(), flips.data(), nullptr, a.data(), size, size, 1};
    render_ifs_batch(io, o, 1);
    io.out = b.data();
    render_ifs_batch(io, o, 4);
    CHECK(a == b);
}

void test_core_refuses_sides_above_the_cap() {
    const IfsSystem system = sierpinski();
    const uint64_t seed = 1;
    const uint8_t flip = 0;
    std::vector<uint8_t> out(64);
    IfsRenderOptions o;
    o.n_points = 100;
    for (Mode mode : {Mode::Reference, Mode::Fast}) {
        o.mode = mode;
        for (int h : {kMaxSide + 1, 8, 0, -5}) {
            const int w = h == 8 ? kMaxSide + 1 : 8;
            const IfsBatch b{&system, 1, &seed, &seed, &flip, nullptr, out.data(), h, w, 1};
            CHECK(invalid_argument_of([&] { render_ifs_batch(b, o, 1); }).find("8192") != std::string::npos);
        }
    }
    double rate = -1.0;
    CHECK(invalid_argument_of([&] { fill_rate_batch(&system, 1, &seed, 100, kMaxSide + 1, 6, 1, &rate); })
              .find("8192") != std::string::npos);
    CHECK(rate == -1.0);  // refused before any work
    // The cap itself is allowed (an empty batch: no image memory needed).
    const IfsBatch empty{&system, 0, &seed, &seed, &flip, nullptr, nullptr, kMaxSide, kMaxSide, 3};
    CHECK(invalid_argument_of([&] { render_ifs_batch(empty, o, 1); }).empty());
}

}  // namespace

int main() {
    test_reference_chain();
    test_nan_rule();
    test_fast_chain();
    test_fixed_point();
    test_tiny_spans_land_in_the_middle();
    test_patches_clip_at_the_border();
    test_parallel_for_covers_each_item_once();
    test_parallel_for_rethrows_a_worker_exception();
    test_batch_is_thread_independent();
    test_core_refuses_sides_above_the_cap();
    return test::report("test_ifs");
}
