#include "core/raster.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/rng.hpp"

namespace fdsl {

void color_wheel(int index, uint8_t rgb[3]) {
    // Same float64 operations, in the same order, as the reference's convert_color.
    const double pi = 3.141592653589793;
    const double S = 0.75, I0 = 0.75;
    double H = 2.0 * pi * (double(index % 128) / 128.0);
    if (H >= 2.0 * pi) H -= 2.0 * pi;
    const double h = std::floor((3.0 / pi) * H);
    const double P = I0 * (1.0 - S);
    const double Q = I0 * (1.0 - S * ((3.0 / pi) * H - h));
    const double T = I0 * (1.0 - S * ((1.0 - (3.0 / pi) * H) + h));
    const uint8_t i = uint8_t(I0 * 255.0), p = uint8_t(P * 255.0), q = uint8_t(Q * 255.0), t = uint8_t(T * 255.0);
    const uint8_t table[6][3] = {{p, t, i}, {p, i, q}, {t, i, p}, {i, q, p}, {i, p, t}, {q, p, i}};
    std::memcpy(rgb, table[int(h)], 3);
}

namespace {

// Final position of reference pixel (row, col) after the base top-bottom flip and the variant flip.
struct Orientation {
    int row0, row_step, col0, col_step, width;
    Orientation(const Canvas& c, int flip) {
        const bool top_bottom = (flip & 1) == 0;  // base flip, undone by variant 1 and 3
        const bool left_right = (flip & 2) != 0;
        row0 = top_bottom ? c.height - 1 : 0, row_step = top_bottom ? -1 : 1;
        col0 = left_right ? c.width - 1 : 0, col_step = left_right ? -1 : 1;
        width = c.width;
    }
    int64_t offset(int row, int col) const { return int64_t(row0 + row_step * row) * width + (col0 + col_step * col); }
};

struct Painter {
    const Canvas& canvas;
    bool color;
    uint8_t wheel[128][3];
    Painter(const Canvas& c, bool use_color) : canvas(c), color(use_color) {
        if (color)
            for (int k = 0; k < 128; ++k) color_wheel(k, wheel[k]);
    }
    void put(int64_t pixel, int64_t point, bool on) const {
        uint8_t* px = canvas.data + pixel * canvas.channels;
        if (canvas.channels == 1) {
            *px = on ? kGray : 0;
        } else if (!on) {
            px[0] = px[1] = px[2] = 0;
        } else if (color) {
            std::memcpy(px, wheel[point % 128], 3);
        } else {
            px[0] = px[1] = px[2] = kGray;
        }
    }
};

void draw_points(const int32_t* cols, const int32_t* rows, int64_t n, const Orientation& o, const Painter& paint) {
    if (paint.canvas.channels == 1) {  // the hot path: gray, one byte per pixel
        uint8_t* data = paint.canvas.data;
        for (int64_t i = 0; i < n; ++i) data[o.offset(rows[i], cols[i])] = kGray;
        return;
    }
    for (int64_t i = 0; i < n; ++i) paint.put(o.offset(rows[i], cols[i]), i, true);
}

// Stamps a 3x3 mask at (row+1.., col+1..); `overwrite` also writes the zero cells (PIL paste), else a union.
template <class MaskOf>
void draw_patches(const int32_t* cols, const int32_t* rows, int64_t n, const Orientation& o, const Painter& paint,
                  bool overwrite, MaskOf mask_of) {
    const int h = paint.canvas.height, w = paint.canvas.width;
    uint8_t* data = paint.canvas.data;
    const bool gray1 = paint.canvas.channels == 1;
    const int64_t row_stride = int64_t(o.row_step) * o.width;
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t mask = mask_of(i);
        const int r0 = rows[i] + 1, c0 = cols[i] + 1;
        if (gray1 && r0 + 2 < h && c0 + 2 < w) {  // the hot path: gray, patch inside the image, 9 stores
            const int64_t base = o.offset(r0, c0);
            for (int cell = 0; cell < 9; ++cell) {
                const uint8_t on = uint8_t(-((mask >> (8 - cell)) & 1u)) & kGray;
                uint8_t& px = data[base + (cell / 3) * row_stride + (cell % 3) * o.col_step];
                px = overwrite ? on : uint8_t(px | on);  // pixels hold 0 or 127 only, so | is a union
            }
            continue;
        }
        for (int cell = 0; cell < 9; ++cell) {
            const bool on = (mask >> (8 - cell)) & 1u;
            if (!on && !overwrite) continue;
            const int r = r0 + cell / 3, c = c0 + cell % 3;
            if (r >= h || c >= w) continue;  // rows and cols are >= 0, so only the far border clips
            paint.put(o.offset(r, c), i, on);
        }
    }
}

void draw_density(const int32_t* cols, const int32_t* rows, int64_t n, const Orientation& o, const Canvas& canvas,
                  uint32_t* counts) {
    const int64_t pixels = int64_t(canvas.height) * canvas.width;
    std::fill(counts, counts + pixels, 0u);
    for (int64_t i = 0; i < n; ++i) ++counts[o.offset(rows[i], cols[i])];
    const uint32_t peak = *std::max_element(counts, counts + pixels);
    if (peak == 0) return;
    for (int64_t p = 0; p < pixels; ++p) {
        // Rounded share of the peak, but a pixel that was hit never rounds to black.
        const uint32_t c = counts[p];
        const uint8_t v = c == 0 ? 0 : uint8_t(std::max<uint64_t>(1, (uint64_t(c) * 255u + peak / 2) / peak));
        std::memset(canvas.data + p * canvas.channels, v, canvas.channels);
    }
}

}  // namespace

void rasterise(const int32_t* cols, const int32_t* rows, int64_t n, const Canvas& canvas, const RasterOptions& options,
               uint64_t patch_seed, uint32_t* counts) {
    std::memset(canvas.data, 0, size_t(canvas.height) * canvas.width * canvas.channels);
    const Orientation o(canvas, options.flip);
    if (options.raster == Raster::Density) return draw_density(cols, rows, n, o, canvas, counts);
    const Painter paint(canvas, options.color);
    switch (options.raster) {
        case Raster::Point:
            return draw_points(cols, rows, n, o, paint);
        case Raster::Patch: {
            const uint32_t key = uint32_t(stream_key(patch_seed, 1));
            return draw_patches(cols, rows, n, o, paint, true,
                                [key](int64_t i) { return 1u + bounded(hash32(key, uint32_t(i)), 511u); });
        }
        case Raster::UnionPatch: {
            const uint32_t mask = 1u + bounded(uint32_t(stream_key(patch_seed, 2)), 511u);
            return draw_patches(cols, rows, n, o, paint, false, [mask](int64_t) { return mask; });
        }
        case Raster::FullPatch:
            return draw_patches(cols, rows, n, o, paint, true, [](int64_t) { return 511u; });
        case Raster::Density:
            break;
    }
}

}  // namespace fdsl
