// Drawing pixel coordinates onto an image: the raster variants of FractalDB and Anderson & Farrell.
#pragma once
#include <cstdint>
#include <vector>

namespace fdsl {

// Largest image side, checked by the batch entry points (render.hpp) and the bindings. The rasteriser computes pixel
// offsets in int32 (point_offsets), which holds side^2 only for sides up to 46340.
constexpr int kMaxSide = 8192;

// A caller-owned image, H x W x C uint8 (C = 1 or 3), C-contiguous.
struct Canvas {
    uint8_t* data;
    int height, width, channels;
};

enum class Raster : int {
    Point = 0,       // one pixel per point (FractalDB point_*)
    Patch = 1,       // FractalDB patch: a fresh 3x3 mask in 1..511 per point, pasted over (zeros erase)
    UnionPatch = 2,  // Anderson: one 3x3 mask per image, in 1..511, stamped as a union (only sets pixels)
    FullPatch = 3,   // every cell of the 3x3 patch
    Density = 4,     // hit count per pixel, scaled so the busiest pixel is 255 and any hit >= 1 (gray only)
};

struct RasterOptions {
    Raster raster = Raster::Point;
    bool color = false;  // FractalDB's colour wheel by point index (i mod 128); else gray 127
    int flip = 0;        // 0 none, 1 top-bottom, 2 left-right, 3 both: the reference's 4 saved variants
};

constexpr uint8_t kGray = 127;

// Scratch memory of a Rasteriser, allocated once per thread: gray variants draw into a bitmap (one bit per pixel,
// so a 224 px image fits the L1 cache: random single-byte stores into a 50 KB image miss it), Density counts hits.
struct RasterScratch {
    std::vector<uint32_t> bits;  // also written byte-wise (char access to any object is allowed)
    std::vector<uint32_t> counts;
    RasterScratch(int height, int width, const RasterOptions& options);
};

// Draws points onto a canvas, in as many chunks as the caller likes (so that pixel coordinates can be produced
// in cache-sized pieces), then finish() writes the image. Point i lands at (cols[i], rows[i]); as in the
// reference, the image is then flipped top-bottom (y up) before `flip` applies. Patches cover columns c+1..c+3
// and rows r+1..r+3 (PIL paste at (x+1, y+1)), clipped at the border; mask bits are row-major, most significant
// bit top-left. Patch masks depend on the point's global index, from a counter-based hash of (patch_seed, index).
class Rasteriser {
  public:
    Rasteriser(const Canvas& canvas, const RasterOptions& options, uint64_t patch_seed, RasterScratch& scratch);
    // Draws points first .. first + n - 1.
    void draw(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first);
    // Writes every pixel of the canvas; call once, after the last draw.
    void finish();

  private:
    // Where reference pixel (row, col) lands. Hot loops copy this struct into a local: their byte stores may
    // alias any member, which would force the compiler to reload the members after every store.
    struct Orientation {
        int row0, row_step, col0, col_step, width;
        int64_t offset(int row, int col) const { return int64_t(row0 + row_step * row) * width + (col0 + col_step * col); }
    };
    Canvas canvas_;
    RasterOptions options_;
    RasterScratch& scratch_;
    bool bitmap_;  // gray and not density: draw bits, expand in finish()
    uint32_t patch_key_, union_mask_;
    Orientation orient_;
    uint8_t wheel_[128][3];

    uint32_t mask_of(int64_t point) const;
    void put(int64_t pixel, int64_t point, bool on);
    void draw_bitmap(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first);
    template <class MaskOf>
    void stamp(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first, bool overwrite, MaskOf mask_of);
    void draw_bytes(const int32_t* cols, const int32_t* rows, int64_t n, int64_t first);
};

// The reference's convert_color(i, 128) wheel: S = I = 0.75, values in the tuple order it returns.
void color_wheel(int index, uint8_t rgb[3]);

}  // namespace fdsl
