// Drawing pixel coordinates onto an image: the raster variants of FractalDB and Anderson & Farrell.
#pragma once
#include <cstdint>

namespace fdsl {

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

// Clears the canvas and draws point i at (cols[i], rows[i]). As the reference, the image is then flipped
// top-bottom (y up) before `flip` applies; patches cover columns c+1..c+3 and rows r+1..r+3 (PIL paste at
// (x+1, y+1)), clipped at the border. Mask bits are row-major with the most significant bit top-left.
// `counts` (H*W) is scratch for Density. Patch masks come from a counter-based hash of (patch_seed, point index).
void rasterise(const int32_t* cols, const int32_t* rows, int64_t n, const Canvas& canvas, const RasterOptions& options,
               uint64_t patch_seed, uint32_t* counts);

// The reference's convert_color(i, 128) wheel: S = I = 0.75, values in the tuple order it returns.
void color_wheel(int index, uint8_t rgb[3]);

}  // namespace fdsl
