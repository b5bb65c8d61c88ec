#include "core/render.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/render_detail.hpp"
#include "core/threads.hpp"

namespace fdsl {

namespace {

constexpr int64_t kChunk = 2048;

// Pixels are mapped in chunks that stay in L1, except in the rare irregular reference case (NaN rule), which
// compacts all points at once: only reference mode needs pixel buffers for every point.
int64_t pixel_buffer_size(const IfsRenderOptions& o) {
    return o.mode == Mode::Reference ? o.n_points : std::min(kChunk, o.n_points);
}

}  // namespace

namespace detail {

Scratch::Scratch(const IfsRenderOptions& o, int height, int width)
    : xd(o.mode == Mode::Reference ? o.n_points : 0), yd(o.mode == Mode::Reference ? o.n_points : 0),
      xf(o.mode == Mode::Fast ? o.n_points : 0), yf(o.mode == Mode::Fast ? o.n_points : 0),
      cols(pixel_buffer_size(o)), rows(pixel_buffer_size(o)),
      raster(height, width, RasterOptions{o.raster, o.color, 0}) {}

int64_t render_one(const IfsSystem& system, uint64_t seed, uint64_t patch_seed, int flip, const float* crop,
                   const IfsRenderOptions& o, const Canvas& canvas, Scratch& s, const Mt19937* chain) {
    int64_t n = o.n_points;
    Rasteriser raster(canvas, RasterOptions{o.raster, o.color, flip}, patch_seed, s.raster);
    if (o.mode == Mode::Reference) {
        double bounds[4];
        if (chain != nullptr)
            reference_chain(system, *chain, n, s.xd.data(), s.yd.data(), bounds);
        else
            reference_chain(system, uint32_t(seed), n, s.xd.data(), s.yd.data(), bounds);
        if (reference_points_regular(s.xd.data(), s.yd.data(), n, bounds, o.pad)) {
            for (int64_t first = 0; first < n; first += kChunk) {
                const int64_t k = std::min(kChunk, n - first);
                reference_map_regular(s.xd.data() + first, s.yd.data() + first, k, bounds, canvas.width,
                                      canvas.height, o.pad, s.cols.data(), s.rows.data());
                raster.draw(s.cols.data(), s.rows.data(), k, first);
            }
        } else {
            n = reference_pixels(s.xd.data(), s.yd.data(), n, bounds, canvas.width, canvas.height, o.pad,
                                 s.cols.data(), s.rows.data());
            raster.draw(s.cols.data(), s.rows.data(), n, 0);
        }
    } else {
        float bbox[4];
        fast_chain(system, seed, n, o.fast, s.xf.data(), s.yf.data(), bbox);
        for (int64_t first = 0; first < n; first += kChunk) {
            const int64_t k = std::min(kChunk, n - first);
            const float* xs = s.xf.data() + first;
            const float* ys = s.yf.data() + first;
            if (crop == nullptr) {
                fast_pixels(xs, ys, k, bbox, canvas.width, canvas.height, o.pad, o.keep_aspect, s.cols.data(),
                            s.rows.data());
                raster.draw(s.cols.data(), s.rows.data(), k, first);
            } else {
                const CropWindow window{crop[0], crop[1], crop[2], crop[3], o.crop_pad_fraction};
                const int64_t kept = fast_pixels_cropped(xs, ys, k, bbox, canvas.width, canvas.height, o.keep_aspect,
                                                         window, s.cols.data(), s.rows.data());
                raster.draw(s.cols.data(), s.rows.data(), kept, first);  // patch masks keep their chunk offsets
            }
        }
    }
    raster.finish();
    return n;
}

void check_sides(int height, int width) {
    if (height < 1 || width < 1 || height > kMaxSide || width > kMaxSide)
        throw std::invalid_argument("image sides must be in [1, " + std::to_string(kMaxSide) + "] (kMaxSide), got " +
                                    std::to_string(height) + " x " + std::to_string(width));
}

int worker_count(int threads, int64_t items) { return int(std::max<int64_t>(1, std::min<int64_t>(threads, items))); }

}  // namespace detail

using detail::check_sides;
using detail::render_one;
using detail::Scratch;
using detail::worker_count;

void render_ifs_batch(const IfsBatch& b, const IfsRenderOptions& o, int threads) {
    check_sides(b.height, b.width);
    const int64_t image_bytes = int64_t(b.height) * b.width * b.channels;
    const int workers = worker_count(threads, b.size);
    std::vector<Scratch> scratch;
    scratch.reserve(workers);
    for (int w = 0; w < workers; ++w) scratch.emplace_back(o, b.height, b.width);
    parallel_for(b.size, workers, [&](int64_t i, int worker) {
        const Canvas canvas{b.out + i * image_bytes, b.height, b.width, b.channels};
        render_one(b.systems[i], b.seeds[i], b.patch_seeds[i], b.flips[i], b.crops ? b.crops + 4 * i : nullptr, o,
                   canvas, scratch[worker]);
    });
}

void fill_rate_batch(const IfsSystem* systems, int64_t size, const uint64_t* seeds, int64_t n_points, int image_size,
                     int pad, int threads, double* rates) {
    fill_rate_batch(systems, size, seeds, nullptr, n_points, image_size, pad, threads, rates);
}

void fill_rate_batch(const IfsSystem* systems, int64_t size, const uint64_t* seeds, const Mt19937* chains,
                     int64_t n_points, int image_size, int pad, int threads, double* rates) {
    check_sides(image_size, image_size);
    IfsRenderOptions o;
    o.mode = Mode::Reference, o.n_points = n_points, o.pad = pad, o.raster = Raster::Point;
    const int workers = worker_count(threads, size);
    const int64_t pixels = int64_t(image_size) * image_size;
    std::vector<Scratch> scratch;
    std::vector<std::vector<uint8_t>> images(workers, std::vector<uint8_t>(pixels));
    for (int w = 0; w < workers; ++w) scratch.emplace_back(o, image_size, image_size);
    parallel_for(size, workers, [&](int64_t i, int worker) {
        const Canvas canvas{images[worker].data(), image_size, image_size, 1};
        if (chains != nullptr) {
            render_one(systems[i], 0, 0, 0, nullptr, o, canvas, scratch[worker], &chains[i]);
        } else {
            render_one(systems[i], seeds[i], 0, 0, nullptr, o, canvas, scratch[worker]);
        }
        int64_t lit = 0;
        for (uint8_t v : images[worker]) lit += v != 0;
        rates[i] = double(lit) / double(pixels);
    });
}

void render_contour_batch(const ContourParams* params, int64_t size, ContourStyle style, const uint64_t* seeds,
                          double canvas_size, uint8_t* out, int height, int width, int channels, int threads) {
    check_sides(height, width);
    const int64_t image_bytes = int64_t(height) * width * channels;
    const int workers = worker_count(threads, size);
    int max_vertices = 0;
    for (int64_t i = 0; i < size; ++i) max_vertices = std::max(max_vertices, params[i].n_vertices);
    std::vector<ContourScratch> scratch(workers, ContourScratch(max_vertices));
    parallel_for(size, workers, [&](int64_t i, int worker) {
        render_contour(params[i], style, seeds[i], canvas_size, Canvas{out + i * image_bytes, height, width, channels},
                       scratch[worker]);
    });
}

}  // namespace fdsl
