// Radial contours: RCDB (Kataoka et al., CVPR'22) and VisualAtom (Takashima et al., CVPR'23).
#pragma once
#include <cstdint>
#include <vector>

#include "core/raster.hpp"

namespace fdsl {

enum class ContourStyle : int {
    Rcdb = 0,        // gray polylines on white
    VisualAtom = 1,  // gray polylines on black, radius modulated by two sine frequencies
};

// Parameters of one image, in pixels of a reference canvas of `canvas_size` (512 in the papers).
struct ContourParams {
    int n_vertices;     // vertices of the base polygon (RCDB 3..200, VisualAtom 200..1000)
    int n_contours;     // nested contours drawn (1..200)
    double perlin_amp;  // Perlin-noise amplitude P
    double line_width;  // radial growth w per contour ("line width" in the reference scripts)
    double radius;      // start radius r0
    double oval_x, oval_y;      // oval factors ox, oy
    double center_x, center_y;  // centre in canvas pixels
    int freq1, freq2;           // VisualAtom sine frequencies n1, n2 (ignored for RCDB)
};

// The 1-D Perlin noise of the contours: the `noise` package's pnoise1(x) with its defaults (octaves 1, repeat 1024,
// base 0), which the reference scripts call, evaluated in double (the package computes in float32). Needs
// 0 <= x < 2^64 (the lattice cell converts to uint64); the renderer uses [0, 1e4). Exported for tests.
double perlin1(double x);

// Per-thread memory of render_contour: the polygon of one image, for images of up to `max_vertices` vertices.
// render_contour_batch allocates one per worker before its threads start, so that no image allocates.
struct ContourScratch {
    std::vector<double> cos_t, sin_t, wave, x, y;
    explicit ContourScratch(int max_vertices);
};

// Draws one image; every random draw (gray levels, noise) comes from a counter-based hash of `seed`. The scratch
// must hold params.n_vertices vertices (std::invalid_argument otherwise); its previous contents do not matter.
void render_contour(const ContourParams& params, ContourStyle style, uint64_t seed, double canvas_size,
                    const Canvas& canvas, ContourScratch& scratch);
// The same with a scratch of its own.
void render_contour(const ContourParams& params, ContourStyle style, uint64_t seed, double canvas_size,
                    const Canvas& canvas);

}  // namespace fdsl
