// Radial contours: a polygon whose vertices drift outward by Perlin noise, drawn once per step (RCDB, VisualAtom).
#include "core/contour.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "core/rng.hpp"

namespace fdsl {

namespace {

// Counter layout of the random draws; each is a pure function of (seed, counter), so an image depends only on
// (params, seed), never on threads or order:
//   gray of contour c (0-based):  bounded(hash32(uint32(stream_key(seed, 0)), c), levels), levels = 257 for RCDB
//                                 (its script draws randint(0, 256) and PIL clips 256 to 255), 256 for VisualAtom
//   noise position of contour c, vertex k, axis a (0 = x, 1 = y), with counter i = (c * n_vertices + k) * 2 + a:
//                                 1e4 * unit_double(splitmix64(stream_key(seed, 1) + i * kGamma))
// splitmix64(key + i * kGamma) is output i of the SplitMix64 generator started at `key`, so the positions of one
// image form one well-mixed 64-bit stream (53 bits each), addressed by counter.
constexpr uint64_t kStreamGray = 0, kStreamNoise = 1;
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;
constexpr double kNoiseSpan = 10000.0;  // the reference's random.uniform(0, 10000)

// Ken Perlin's permutation: the first period of the `noise` package's PERM table (base 0 only reads these).
constexpr uint8_t kPerm[256] = {
    151, 160, 137, 91,  90,  15,  131, 13,  201, 95,  96,  53,  194, 233, 7,   225, 140, 36,  103, 30,  69,  142,
    8,   99,  37,  240, 21,  10,  23,  190, 6,   148, 247, 120, 234, 75,  0,   26,  197, 62,  94,  252, 219, 203,
    117, 35,  11,  32,  57,  177, 33,  88,  237, 149, 56,  87,  174, 20,  125, 136, 171, 168, 68,  175, 74,  165,
    71,  134, 139, 48,  27,  166, 77,  146, 158, 231, 83,  111, 229, 122, 60,  211, 133, 230, 220, 105, 92,  41,
    55,  46,  245, 40,  244, 102, 143, 54,  65,  25,  63,  161, 1,   216, 80,  73,  209, 76,  132, 187, 208, 89,
    18,  169, 200, 196, 135, 130, 116, 188, 159, 86,  164, 100, 109, 198, 173, 186, 3,   64,  52,  217, 226, 250,
    124, 123, 5,   202, 38,  147, 118, 126, 255, 82,  85,  212, 207, 206, 59,  227, 47,  16,  58,  17,  182, 189,
    28,  42,  223, 183, 170, 213, 119, 248, 152, 2,   44,  154, 163, 70,  221, 153, 101, 155, 167, 43,  172, 9,
    129, 22,  39,  253, 19,  98,  108, 110, 79,  113, 224, 232, 178, 185, 112, 104, 218, 246, 97,  228, 251, 34,
    242, 193, 238, 210, 144, 12,  191, 179, 162, 241, 81,  51,  145, 235, 249, 14,  239, 107, 49,  192, 214, 31,
    181, 199, 106, 157, 184, 84,  204, 176, 115, 121, 50,  45,  127, 4,   150, 254, 138, 236, 205, 93,  222, 114,
    67,  29,  24,  72,  243, 141, 128, 195, 78,  66,  215, 61,  156, 180};

// The `noise` package's 1-D gradient: slope (h & 7) + 1, or -1 when bit 3 is set. The slopes are lopsided
// (1..8 up, only -1 down); that skew is part of the published datasets' noise distribution, so it is kept.
double gradient(uint8_t hash, double t) { return (hash & 8) ? -t : double((hash & 7) + 1) * t; }

// noise.pnoise1(x) with its defaults (octaves 1, repeat 1024, base 0), evaluated in double, for x >= 0.
// repeat 1024 is a multiple of the table's period 256, so the lattice hash reduces to PERM[i & 255].
// (Internal, so that grow() inlines it; perlin1() below is the exported copy for tests.)
double pnoise1(double x) {
    const double cell = std::floor(x);
    const uint64_t i = uint64_t(cell);
    const double t = x - cell;
    const double fade = t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
    const double g0 = gradient(kPerm[i & 255], t), g1 = gradient(kPerm[(i + 1) & 255], t - 1.0);
    return (g0 + fade * (g1 - g0)) * 0.4;
}

// Plots the segment like Pillow's ImageDraw.line(width=1), which both reference scripts use: Bresenham from
// (x0, y0) with ties stepping the minor axis, both ends included. Pixel j along the major axis has minor offset
// floor((2 j d_minor + d_major) / (2 d_major)), so the walk starts at the first column (or row) inside the canvas
// and stops at the last: at most width (height) steps however far the ends lie. Needs |coordinates| < 2^28 so
// that 2 j d_minor fits in int64.
void plot_line(const Canvas& canvas, int64_t x0, int64_t y0, int64_t x1, int64_t y1, uint8_t gray) {
    const bool x_major = std::llabs(x1 - x0) > std::llabs(y1 - y0);
    const int64_t a0 = x_major ? x0 : y0, b0 = x_major ? y0 : x0;
    const int64_t a_delta = x_major ? x1 - x0 : y1 - y0, b_delta = x_major ? y1 - y0 : x1 - x0;
    const int64_t da = std::llabs(a_delta), db = std::llabs(b_delta);
    const int64_t as = a_delta < 0 ? -1 : 1, bs = b_delta < 0 ? -1 : 1;
    const int64_t a_size = x_major ? canvas.width : canvas.height, b_size = x_major ? canvas.height : canvas.width;
    // Steps j in [0, da] whose major coordinate a0 + as * j lies in [0, a_size).
    const int64_t lo = std::max<int64_t>(0, as > 0 ? -a0 : a0 - (a_size - 1));
    const int64_t hi = std::min<int64_t>(da, as > 0 ? a_size - 1 - a0 : a0);
    if (lo > hi) return;
    const int64_t den = 2 * std::max<int64_t>(da, 1);  // da == 0: a single point, offset 0
    int64_t num = 2 * db * lo + da;
    int64_t offset = num / den, rem = num % den;
    const int channels = canvas.channels;
    for (int64_t j = lo; j <= hi; ++j) {
        const int64_t a = a0 + as * j, b = b0 + bs * offset;
        if (b >= 0 && b < b_size) {
            const int64_t row = x_major ? b : a, col = x_major ? a : b;
            uint8_t* px = canvas.data + (row * canvas.width + col) * channels;
            for (int c = 0; c < channels; ++c) px[c] = gray;
        }
        rem += 2 * db;  // 2 db <= den: the offset grows by at most one per step
        if (rem >= den) rem -= den, ++offset;
    }
}

// Liang-Barsky: shrinks the segment to the part inside [lo_x, hi_x] x [lo_y, hi_y]; false when none is. A clipped
// end is put exactly on the edge that cut it: with ends near 1e300, sx + t * dx would cancel to noise.
bool clip_segment(double& x0, double& y0, double& x1, double& y1, double lo_x, double hi_x, double lo_y,
                  double hi_y) {
    const double dx = x1 - x0, dy = y1 - y0;
    const double p[4] = {-dx, dx, -dy, dy};
    const double q[4] = {x0 - lo_x, hi_x - x0, y0 - lo_y, hi_y - y0};
    const double edge[4] = {lo_x, hi_x, lo_y, hi_y};
    double t0 = 0.0, t1 = 1.0;
    int e0 = -1, e1 = -1;
    for (int e = 0; e < 4; ++e) {
        if (p[e] == 0.0) {
            if (q[e] < 0.0) return false;
            continue;
        }
        const double t = q[e] / p[e];
        if (p[e] < 0.0 && t > t0) t0 = t, e0 = e;
        if (p[e] > 0.0 && t < t1) t1 = t, e1 = e;
        if (t0 > t1) return false;
    }
    const double sx = x0, sy = y0;
    x0 = e0 == 0 || e0 == 1 ? edge[e0] : sx + t0 * dx, y0 = e0 >= 2 ? edge[e0] : sy + t0 * dy;
    x1 = e1 == 0 || e1 == 1 ? edge[e1] : sx + t1 * dx, y1 = e1 >= 2 ? edge[e1] : sy + t1 * dy;
    return true;
}

constexpr double kExactLimit = 268435456.0;  // 2^28: plot_line's integer terms stay far below 2^63

bool within_exact_limit(double x0, double y0, double x1, double y1) {
    return std::fabs(x0) < kExactLimit && std::fabs(y0) < kExactLimit && std::fabs(x1) < kExactLimit &&
           std::fabs(y1) < kExactLimit;
}

// Draws a segment given in output pixels. Coordinates truncate toward zero like Pillow's (int) cast, so pixel c
// takes coordinates in (c - 1, c + 1) and only (-1, size) can reach the canvas. Far ends (vertices drift without
// bound) are first clipped in double to just outside the canvas; non-finite segments are skipped.
void draw_segment(const Canvas& canvas, double x0, double y0, double x1, double y1, uint8_t gray) {
    const double w = canvas.width, h = canvas.height;
    if (!(std::isfinite(x1 - x0) && std::isfinite(y1 - y0))) return;  // also catches NaN and infinite ends
    if (std::max(x0, x1) <= -1.0 || std::min(x0, x1) >= w || std::max(y0, y1) <= -1.0 || std::min(y0, y1) >= h)
        return;
    if (!within_exact_limit(x0, y0, x1, y1)) {
        if (!clip_segment(x0, y0, x1, y1, -2.0, w + 1.0, -2.0, h + 1.0)) return;
        // With ends near 1e300 the clipped ends carry huge rounding errors: recheck rather than trust them.
        if (!within_exact_limit(x0, y0, x1, y1)) return;
    }
    plot_line(canvas, int64_t(x0), int64_t(y0), int64_t(x1), int64_t(y1), gray);
}

// The polygon of one image, in a ContourScratch: vertex offsets from the centre, in reference-canvas pixels, plus
// per-vertex constants.
struct Polygon {
    int n;
    double *cos_t, *sin_t;  // direction of vertex k, th_k = (2 pi / n) * k as the reference computes it
    double* wave;           // VisualAtom: 0.5 sin(n1 th_k) + 0.5 sin(n2 th_k); zero for RCDB
    double *x, *y;
};

Polygon base_polygon(const ContourParams& p, ContourStyle style, ContourScratch& s) {
    const int n = p.n_vertices;
    Polygon poly{n, s.cos_t.data(), s.sin_t.data(), s.wave.data(), s.x.data(), s.y.data()};
    const double angle = (2.0 * 3.141592653589793) / n;
    for (int k = 0; k < n; ++k) {
        const double th = angle * k;
        poly.cos_t[k] = std::cos(th), poly.sin_t[k] = std::sin(th);
        poly.x[k] = poly.cos_t[k] * p.radius * p.oval_x;
        poly.y[k] = poly.sin_t[k] * p.radius * p.oval_y;
        poly.wave[k] = style == ContourStyle::VisualAtom ? 0.5 * std::sin(th * p.freq1) + 0.5 * std::sin(th * p.freq2)
                                                         : 0.0;
    }
    return poly;
}

// Moves every vertex outward for contour c: vertex -= dir * (d - w), with d = noise * gain - P - wave, where
// gain = 2P for RCDB (noise * 2P - P) and P for VisualAtom (noise * P - P - sines).
void grow(Polygon& poly, const ContourParams& p, ContourStyle style, uint64_t noise_key, uint64_t c) {
    const double gain = style == ContourStyle::Rcdb ? 2.0 * p.perlin_amp : p.perlin_amp;
    const uint64_t n = uint64_t(p.n_vertices);
    for (uint64_t k = 0; k < n; ++k) {
        const uint64_t i = (c * n + k) * 2;
        const double u_x = kNoiseSpan * unit_double(splitmix64(noise_key + i * kGamma));
        const double u_y = kNoiseSpan * unit_double(splitmix64(noise_key + (i + 1) * kGamma));
        const double d_x = pnoise1(u_x) * gain - p.perlin_amp - poly.wave[k];
        const double d_y = pnoise1(u_y) * gain - p.perlin_amp - poly.wave[k];
        poly.x[k] -= poly.cos_t[k] * (d_x - p.line_width);
        poly.y[k] -= poly.sin_t[k] * (d_y - p.line_width);
    }
}

// Closed polygon: segments k -> k + 1 and n - 1 -> 0, mapped from the reference canvas to output pixels.
void draw_polygon(const Polygon& poly, const ContourParams& p, double scale_x, double scale_y, uint8_t gray,
                  const Canvas& canvas) {
    const int n = poly.n;
    double px = (poly.x[n - 1] + p.center_x) * scale_x, py = (poly.y[n - 1] + p.center_y) * scale_y;
    for (int k = 0; k < n; ++k) {
        const double qx = (poly.x[k] + p.center_x) * scale_x, qy = (poly.y[k] + p.center_y) * scale_y;
        draw_segment(canvas, px, py, qx, qy, gray);
        px = qx, py = qy;
    }
}

}  // namespace

double perlin1(double x) { return pnoise1(x); }

ContourScratch::ContourScratch(int max_vertices) {
    const size_t n = size_t(std::max(max_vertices, 0));
    for (std::vector<double>* v : {&cos_t, &sin_t, &wave, &x, &y}) v->resize(n);
}

void render_contour(const ContourParams& params, ContourStyle style, uint64_t seed, double canvas_size,
                    const Canvas& canvas, ContourScratch& scratch) {
    const uint8_t background = style == ContourStyle::Rcdb ? 255 : 0;
    std::memset(canvas.data, background, size_t(canvas.height) * canvas.width * canvas.channels);
    if (params.n_vertices < 1) return;  // the binding asks for >= 3; the core only guards its indexing
    if (scratch.x.size() < size_t(params.n_vertices))
        throw std::invalid_argument("render_contour: the scratch holds fewer vertices than params.n_vertices");
    const double scale_x = canvas.width / canvas_size, scale_y = canvas.height / canvas_size;
    const uint32_t gray_key = uint32_t(stream_key(seed, kStreamGray));
    const uint32_t gray_levels = style == ContourStyle::Rcdb ? 257u : 256u;
    const uint64_t noise_key = stream_key(seed, kStreamNoise);
    Polygon poly = base_polygon(params, style, scratch);
    // As the references: each contour first moves the vertices, then draws them.
    for (int c = 0; c < params.n_contours; ++c) {
        const uint8_t gray = uint8_t(std::min(255u, bounded(hash32(gray_key, uint32_t(c)), gray_levels)));
        grow(poly, params, style, noise_key, uint64_t(c));
        draw_polygon(poly, params, scale_x, scale_y, gray, canvas);
    }
}

void render_contour(const ContourParams& params, ContourStyle style, uint64_t seed, double canvas_size,
                    const Canvas& canvas) {
    ContourScratch scratch(params.n_vertices);
    render_contour(params, style, seed, canvas_size, canvas, scratch);
}

}  // namespace fdsl
