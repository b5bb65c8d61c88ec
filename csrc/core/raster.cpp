#include "core/raster.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "core/rng.hpp"
#include "core/simd.hpp"

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

// The bitmap is addressed as bytes and as 32-bit words: bit p is bit p % 8 of byte p / 8 only on little-endian CPUs.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the raster bitmap assumes a little-endian CPU");

// Per-pixel bit helpers. A 3-cell patch row is one 3-bit field written with an unaligned 16-bit access: the
// field starts at bit (pixel & 7) <= 7 of byte pixel >> 3, so it never leaves those two bytes.
inline void write_bit(uint8_t* bits, int64_t pixel, bool on) {
    const uint8_t bit = uint8_t(1u << (pixel & 7));
    bits[pixel >> 3] = on ? uint8_t(bits[pixel >> 3] | bit) : uint8_t(bits[pixel >> 3] & ~bit);
}
inline void write_field(uint8_t* bits, int64_t pixel, uint32_t field, bool overwrite) {
    uint16_t word;
    std::memcpy(&word, bits + (pixel >> 3), 2);
    const int shift = int(pixel & 7);
    if (overwrite) word = uint16_t(word & ~(7u << shift));
    word = uint16_t(word | (field << shift));
    std::memcpy(bits + (pixel >> 3), &word, 2);
}
constexpr uint8_t kReverse3[8] = {0, 4, 2, 6, 1, 5, 3, 7};

// Bitmap -> gray pixels (0 or 127): 8 pixels per bitmap byte through a 256-entry table.
void expand_bits(const uint8_t* bits, int64_t pixels, int channels, uint8_t* out) {
    static const auto table = [] {
        std::array<uint64_t, 256> t{};
        for (int byte = 0; byte < 256; ++byte)
            for (int b = 0; b < 8; ++b)
                if (byte >> b & 1) t[byte] |= uint64_t(kGray) << (8 * b);  // little-endian: bit b -> pixel b
        return t;
    }();
    const int64_t whole = pixels / 8;
    if (channels == 1) {
        for (int64_t k = 0; k < whole; ++k) std::memcpy(out + 8 * k, &table[bits[k]], 8);
    } else {
        for (int64_t p = 0; p < whole * 8; ++p) {
            const uint8_t v = uint8_t(-((bits[p >> 3] >> (p & 7)) & 1)) & kGray;
            out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = v;
        }
    }
    for (int64_t p = whole * 8; p < pixels; ++p) {
        const uint8_t v = uint8_t(-((bits[p >> 3] >> (p & 7)) & 1)) & kGray;
        for (int c = 0; c < channels; ++c) out[p * channels + c] = v;
    }
}

FDSL_MULTIVERSION
void point_offsets(const int32_t* cols, const int32_t* rows, int64_t n, int32_t row0, int32_t row_step, int32_t col0,
                   int32_t col_step, int32_t width, int32_t* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = (row0 + row_step * rows[i]) * width + col0 + col_step * cols[i];
}

bool uses_bitmap(const RasterOptions& o) { return !o.color && o.raster != Raster::Density; }

}  // namespace

RasterScratch::RasterScratch(int height, int width, const RasterOptions& options) {
    const int64_t pixels = int64_t(height) * width;
    if (uses_bitmap(options)) bits.resize((pixels + 31) / 32 + 1);  // +1: slack for the 16-bit field writes
    if (options.raster == Raster::Density) counts.resize(pixels);
}

Rasteriser::Rasteriser(const Canvas& canvas, const RasterOptions& options, uint64_t patch_seed, RasterScratch& scratch)
    : canvas_(canvas), options_(options), scratch_(scratch), bitmap_(uses_bitmap(options)) {
    if (bitmap_) std::fill(scratch.bits.begin(), scratch.bits.end(), 0u);
    else std::memset(canvas.data, 0, size_t(canvas.height) * canvas.width * canvas.channels);
    if (options.raster == Raster::Density) std::fill(scratch.counts.begin(), scratch.counts.end(), 0u);
    patch_key_ = uint32_t(stream_key(patch_seed, 1));
    union_mask_ = 1u + bounded(uint32_t(stream_key(patch_seed, 2)), 511u);
    // The base top-bottom flip of the reference, undone by variants 1 and 3.
    const bool top_bottom = (options.flip & 1) == 0, left_right = (options.flip & 2) != 0;
    orient_ = Orientation{top_bottom ? canvas.height - 1 : 0, top_bottom ? -1 : 1, left_right ? canvas.width - 1 : 0,
                          left_right ? -1 : 1, canvas.width};
    if (options.color)
        for (int k = 0; k < 128; ++k) color_wheel(k, wheel_[k]);
}

uint32_t Rasteriser::mask_of(int64_t point) const {
    switch (options_.raster) {
        case Raster::Patch:
            return 1u + bounded(hash32(patch_key_, uint32_t(point)), 511u);
        case Raster::UnionPatch:
            return union_mask_;
        default:
            return 511u;
    }
}

void Rasteriser::draw(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first) {
    if (bitmap_) draw_bitmap(cols, rows, n, first);
    else draw_bytes(cols, rows, n, first);
}

void Rasteriser::draw_bitmap(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first) {
    const Orientation o = orient_;
    switch (options_.raster) {
        case Raster::Point: {
            // Offsets in blocks (a loop that vectorises), then the scatter, OR-ing the bitmap a word at a time.
            constexpr int64_t kBlock = 512;
            int32_t offsets[kBlock];
            uint32_t* const words = scratch_.bits.data();
            for (int64_t start = 0; start < n; start += kBlock) {
                const int64_t k = std::min(kBlock, n - start);
                point_offsets(cols + start, rows + start, k, o.row0, o.row_step, o.col0, o.col_step, o.width, offsets);
                for (int64_t i = 0; i < k; ++i) words[offsets[i] >> 5] |= 1u << (offsets[i] & 31);
            }
            return;
        }
        case Raster::Patch: {
            const uint32_t key = patch_key_;
            return stamp(cols, rows, n, first, true, [key](int64_t i) { return 1u + bounded(hash32(key, uint32_t(i)), 511u); });
        }
        case Raster::UnionPatch: {
            const uint32_t mask = union_mask_;
            return stamp(cols, rows, n, first, false, [mask](int64_t) { return mask; });
        }
        default:
            return stamp(cols, rows, n, first, true, [](int64_t) { return 511u; });
    }
}

// Patches into the bitmap; `overwrite` also clears the zero cells (PIL paste), else a union.
template <class MaskOf>
void Rasteriser::stamp(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first, bool overwrite,
                       MaskOf mask_of) {
    uint8_t* const bits = reinterpret_cast<uint8_t*>(scratch_.bits.data());
    const Orientation o = orient_;
    const int h = canvas_.height, w = canvas_.width;
    const int64_t row_stride = int64_t(o.row_step) * w;
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t mask = mask_of(first + i);
        const int r0 = rows[i] + 1, c0 = cols[i] + 1;
        if (r0 + 2 < h && c0 + 2 < w) {  // the hot path: three 3-bit fields
            // Cells (r, c0..c0+2) land on pixels base, base + step, base + 2 step; a field holds them lowest first.
            const int64_t base = o.offset(r0, c0) - (o.col_step < 0 ? 2 : 0);
            for (int dr = 0; dr < 3; ++dr) {
                const uint32_t cells = (mask >> (6 - 3 * dr)) & 7u;  // left cell in the high bit
                write_field(bits, base + dr * row_stride, o.col_step < 0 ? cells : kReverse3[cells], overwrite);
            }
            continue;
        }
        for (int cell = 0; cell < 9; ++cell) {
            const bool on = (mask >> (8 - cell)) & 1u;
            const int r = r0 + cell / 3, c = c0 + cell % 3;
            if (r >= h || c >= w || (!on && !overwrite)) continue;  // rows, cols >= 0: only the far border clips
            write_bit(bits, o.offset(r, c), on);
        }
    }
}

void Rasteriser::put(int64_t pixel, int64_t point, bool on) {
    uint8_t* px = canvas_.data + pixel * canvas_.channels;
    if (canvas_.channels == 1) {
        *px = on ? kGray : 0;
    } else if (!on) {
        px[0] = px[1] = px[2] = 0;
    } else {
        std::memcpy(px, wheel_[point % 128], 3);
    }
}

// Colour and density: per-pixel bytes or counts.
void Rasteriser::draw_bytes(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first) {
    const Orientation o = orient_;
    if (options_.raster == Raster::Density) {
        uint32_t* const counts = scratch_.counts.data();
        for (int64_t i = 0; i < n; ++i) ++counts[o.offset(rows[i], cols[i])];
        return;
    }
    const bool overwrite = options_.raster != Raster::UnionPatch;
    const int h = canvas_.height, w = canvas_.width;
    for (int64_t i = 0; i < n; ++i) {
        if (options_.raster == Raster::Point) {
            put(o.offset(rows[i], cols[i]), first + i, true);
            continue;
        }
        const uint32_t mask = mask_of(first + i);
        for (int cell = 0; cell < 9; ++cell) {
            const bool on = (mask >> (8 - cell)) & 1u;
            const int r = rows[i] + 1 + cell / 3, c = cols[i] + 1 + cell % 3;
            if (r >= h || c >= w || (!on && !overwrite)) continue;
            put(o.offset(r, c), first + i, on);
        }
    }
}

void Rasteriser::finish() {
    const int64_t pixels = int64_t(canvas_.height) * canvas_.width;
    const int channels = canvas_.channels;
    uint8_t* const out = canvas_.data;
    if (bitmap_) {
        expand_bits(reinterpret_cast<const uint8_t*>(scratch_.bits.data()), pixels, channels, out);
        return;
    }
    if (options_.raster != Raster::Density) return;
    const uint32_t* const counts = scratch_.counts.data();
    const uint32_t peak = *std::max_element(counts, counts + pixels);
    if (peak == 0) return;
    const double scale = 255.0 / double(peak);  // a multiply per pixel, not a division
    for (int64_t p = 0; p < pixels; ++p) {
        // round(255 * count / peak), except that a pixel that was hit never rounds to black.
        const uint32_t c = counts[p];
        const uint8_t v = c == 0 ? 0 : uint8_t(std::max(1.0, double(c) * scale + 0.5));
        if (channels == 1) out[p] = v;
        else out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = v;
    }
}

}  // namespace fdsl
