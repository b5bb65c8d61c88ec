#include "core/ifs.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/rng.hpp"
#include "core/simd.hpp"

namespace fdsl {

namespace generic {
void fast_chain_kernel(const IfsSystem&, uint64_t, int64_t, const FastChainOptions&, float*, float*, float*);
}
#ifdef FDSL_HAVE_AVX2_KERNEL
namespace avx2 {
void fast_chain_kernel(const IfsSystem&, uint64_t, int64_t, const FastChainOptions&, float*, float*, float*);
}
#endif

namespace {

// choice[k] = the first j with u[k] <= cum[j] (n_maps if none), counted as the number of cum[j] < u[k], which is
// the same since cum is non-decreasing. Vectorised over k, off the chain's critical path.
FDSL_MULTIVERSION
void choose_maps(const double* u, int64_t n, const double* cum, int n_maps, int32_t* choice) {
    for (int64_t k = 0; k < n; ++k) choice[k] = 0;
    for (int m = 0; m < n_maps; ++m) {
        const double c = cum[m];
        for (int64_t k = 0; k < n; ++k) choice[k] += u[k] > c ? 1 : 0;
    }
}

}  // namespace

void reference_chain(const IfsSystem& system, Mt19937 rng, int64_t n, double* xs, double* ys, double bounds[4]) {
    const int n_maps = system.n_maps;
    double cum[kMaxMaps], a[kMaxMaps], b[kMaxMaps], c[kMaxMaps], d[kMaxMaps], e[kMaxMaps], f[kMaxMaps];
    double total = 0.0;  // running sum in the order Python's `temp_proba += proba` adds
    for (int k = 0; k < n_maps; ++k) {
        const AffineMap& m = system.maps[k];
        total += m.p;
        cum[k] = total, a[k] = m.a, b[k] = m.b, c[k] = m.c, d[k] = m.d, e[k] = m.e, f[k] = m.f;
    }
    double x = 0.0, y = 0.0;
    if (n > 0) xs[0] = 0.0, ys[0] = 0.0;
    // Uniforms come in blocks, drawn ahead of the chain: the chain is latency-bound and the generator is not.
    constexpr int64_t kBlock = 256;
    double u[kBlock];
    int32_t choice[kBlock];
    double lo_x = 0.0, hi_x = 0.0, lo_y = 0.0, hi_y = 0.0;  // the origin is point 0
    for (int64_t t0 = 1; t0 < n; t0 += kBlock) {
        const int64_t k_end = std::min(kBlock, n - t0);
        rng.fill_doubles(u, k_end);
        choose_maps(u, k_end, cum, n_maps, choice);
        for (int64_t k = 0; k < k_end; ++k) {
            const int j = choice[k];
            if (j < n_maps) {
                const double nx = x * a[j] + y * b[j] + e[j];
                const double ny = x * c[j] + y * d[j] + f[j];
                x = nx, y = ny;
            }
            xs[t0 + k] = x, ys[t0 + k] = y;
            // Bounds cost nothing here: the loop waits on the chain's latency, not on throughput.
            lo_x = x < lo_x ? x : lo_x, hi_x = x > hi_x ? x : hi_x;
            lo_y = y < lo_y ? y : lo_y, hi_y = y > hi_y ? y : hi_y;
        }
        // From a NaN in x or y on, every point is NaN in both (NaN * a = NaN, and a kept point stays NaN): write
        // the rest without running the chain. Divergent systems, common among search candidates, end here early.
        if (std::isnan(x) || std::isnan(y)) {
            const double nan = std::numeric_limits<double>::quiet_NaN();
            std::fill(xs + t0 + k_end, xs + n, nan);
            std::fill(ys + t0 + k_end, ys + n, nan);
            break;
        }
    }
    bounds[0] = lo_x, bounds[1] = hi_x, bounds[2] = lo_y, bounds[3] = hi_y;
}

namespace {

// The reference's NaN rule on one axis: remove [first NaN - 100, first NaN) and every NaN index of `key`, from
// both arrays. Indices below 0 are clamped; numpy would wrap them to the end, where every point is NaN already.
int64_t drop_nan_run(double* key, double* other, int64_t n) {
    int64_t first = 0;
    while (first < n && !std::isnan(key[first])) ++first;
    if (first == n) return n;
    const int64_t cut = std::max<int64_t>(0, first - 100);
    int64_t out = cut;
    for (int64_t i = first; i < n; ++i) {
        if (std::isnan(key[i])) continue;
        key[out] = key[i], other[out] = other[i], ++out;
    }
    return out;
}

// One axis of the reference rescale, in place: v becomes the unrounded pixel coordinate.
void scale_axis(double* v, int64_t n, int size, int pad) {
    double lo = v[0], hi = v[0];
    for (int64_t i = 1; i < n; ++i) lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    if (lo < 0.0) {  // `xs -= np.min(xs)`, element by element; min and max then shift the same way (rounding is
        for (int64_t i = 0; i < n; ++i) v[i] -= lo;  // monotone)
        hi = hi - lo, lo = 0.0;
    }
    const double span = hi - lo, scale = double(size - 2 * pad), offset = double(pad);
    if (span == 0.0) {
        std::fill(v, v + n, double(size / 2));
        return;
    }
    // numpy: xs / (xmax - xmin) * float(size - 2 pad) + float(pad); the divisions vectorise.
    for (int64_t i = 0; i < n; ++i) v[i] = v[i] / span * scale + offset;
}

}  // namespace

namespace {

// pixel = trunc((v - lo) / span * scale + pad): the divisions are what costs, and they vectorise.
FDSL_MULTIVERSION
void map_axis(const double* v, int64_t n, double lo, double span, double scale, double pad, int32_t* pixel) {
    for (int64_t i = 0; i < n; ++i) pixel[i] = int32_t((v[i] - lo) / span * scale + pad);
}

}  // namespace

bool reference_points_regular(const double* xs, const double* ys, int64_t n, const double b[4], int pad) {
    if (n == 0 || pad < 1 || std::isnan(xs[n - 1]) || std::isnan(ys[n - 1])) return false;  // NaN never recovers
    for (int k = 0; k < 4; ++k)
        if (!std::isfinite(b[k])) return false;
    return b[0] <= 0.0 && b[2] <= 0.0 && std::isfinite(b[1] - b[0]) && std::isfinite(b[3] - b[2]) && b[1] > b[0] &&
           b[3] > b[2];
}

void reference_map_regular(const double* xs, const double* ys, int64_t count, const double bounds[4], int width,
                           int height, int pad, int32_t* cols, int32_t* rows) {
    // Same operations as scale_axis: shift by the (negative or zero) minimum, then v / span * scale + pad.
    const double lo_x = bounds[0], lo_y = bounds[2];
    const double span_x = (bounds[1] - lo_x) - (lo_x - lo_x), span_y = (bounds[3] - lo_y) - (lo_y - lo_y);
    map_axis(xs, count, lo_x, span_x, double(width - 2 * pad), double(pad), cols);
    map_axis(ys, count, lo_y, span_y, double(height - 2 * pad), double(pad), rows);
}

int64_t reference_pixels(double* xs, double* ys, int64_t n, const double bounds[4], int width, int height, int pad,
                         int32_t* cols, int32_t* rows) {
    if (reference_points_regular(xs, ys, n, bounds, pad)) {
        reference_map_regular(xs, ys, n, bounds, width, height, pad, cols, rows);
        return n;
    }
    n = drop_nan_run(xs, ys, n);
    n = drop_nan_run(ys, xs, n);
    int64_t m = 0;  // our rule: points still non-finite (inf) are dropped
    for (int64_t i = 0; i < n; ++i)
        if (std::isfinite(xs[i]) && std::isfinite(ys[i])) xs[m] = xs[i], ys[m] = ys[i], ++m;
    if (m == 0) return 0;
    scale_axis(xs, m, width, pad);
    scale_axis(ys, m, height, pad);
    int64_t out = 0;  // branch-free compaction; the int cast truncates like the reference's np.uint16
    for (int64_t i = 0; i < m; ++i) {
        const double px = xs[i], py = ys[i];
        const bool inside = px >= 0.0 && px < double(width) && py >= 0.0 && py < double(height);
        cols[out] = inside ? int32_t(px) : 0, rows[out] = inside ? int32_t(py) : 0;
        out += inside;
    }
    return out;
}

void fixed_point(const AffineMap& m, double* x, double* y) {
    const double det = (1.0 - m.a) * (1.0 - m.d) - m.b * m.c;
    *x = 0.0, *y = 0.0;
    if (std::abs(det) < 1e-9) return;
    const double fx = ((1.0 - m.d) * m.e + m.b * m.f) / det;
    const double fy = (m.c * m.e + (1.0 - m.a) * m.f) / det;
    if (std::isfinite(fx) && std::isfinite(fy) && std::abs(fx) < 1e8 && std::abs(fy) < 1e8) *x = fx, *y = fy;
}

bool use_avx2_kernels() {
#ifdef FDSL_HAVE_AVX2_KERNEL
    static const bool yes = [] {
        const char* force = std::getenv("FDSL_FORCE_GENERIC");
        if (force != nullptr && force[0] != '\0' && force[0] != '0') return false;
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return yes;
#else
    return false;
#endif
}

namespace {

// room / span per axis, 0 for a zero span. A span below room / FLT_MAX (subnormal ones among them) overflows the
// scale to inf, and inf * 0 then gives NaN, whose conversion to int is undefined: such an axis is drawn as a zero
// span too, in the middle. Any other span keeps its float scale, so normal renders keep their bytes.
inline float axis_scale(float room, float span) {
    const float s = span > 0.0f ? room / span : 0.0f;
    return std::isfinite(s) ? s : 0.0f;
}

}  // namespace

const char* fast_kernel_name() { return use_avx2_kernels() ? "avx2" : "generic"; }

void fast_chain(const IfsSystem& system, uint64_t seed, int64_t n, const FastChainOptions& options, float* xs,
                float* ys, float bbox[4]) {
#ifdef FDSL_HAVE_AVX2_KERNEL
    if (use_avx2_kernels()) return avx2::fast_chain_kernel(system, seed, n, options, xs, ys, bbox);
#endif
    generic::fast_chain_kernel(system, seed, n, options, xs, ys, bbox);
}

FDSL_MULTIVERSION
void fast_pixels(const float* xs, const float* ys, int64_t n, const float bbox[4], int width, int height, int pad,
                 bool keep_aspect, int32_t* cols, int32_t* rows) {
    const float span_x = bbox[1] - bbox[0], span_y = bbox[3] - bbox[2];
    const float room_x = float(width - 2 * pad), room_y = float(height - 2 * pad);
    float sx = axis_scale(room_x, span_x), sy = axis_scale(room_y, span_y);
    if (keep_aspect) {
        const float s = (sx > 0.0f && sy > 0.0f) ? std::min(sx, sy) : std::max(sx, sy);
        sx = sy = s;
    }
    // Offsets centre the drawing in its room (exactly pad when the axis fills it; the middle for a zero span).
    const float ox = float(pad) + 0.5f * (room_x - sx * span_x), oy = float(pad) + 0.5f * (room_y - sy * span_y);
    const float x0 = bbox[0], y0 = bbox[2];
    const int max_c = width - 1, max_r = height - 1;
    for (int64_t i = 0; i < n; ++i) {  // vectorises: float math, truncation and clamping only
        const int32_t c = int32_t((xs[i] - x0) * sx + ox), r = int32_t((ys[i] - y0) * sy + oy);
        cols[i] = c < 0 ? 0 : (c > max_c ? max_c : c);
        rows[i] = r < 0 ? 0 : (r > max_r ? max_r : r);
    }
}

FDSL_MULTIVERSION
int64_t fast_pixels_cropped(const float* xs, const float* ys, int64_t n, const float bbox[4], int width, int height,
                            bool keep_aspect, const CropWindow& crop, int32_t* cols, int32_t* rows) {
    // Normalised coordinates of the full image: the attractor fills [p, 1 - p] per axis (or keeps its aspect).
    const float p = crop.pad_fraction, room = 1.0f - 2.0f * p;
    const float span_x = bbox[1] - bbox[0], span_y = bbox[3] - bbox[2];
    float sx = axis_scale(room, span_x), sy = axis_scale(room, span_y);
    if (keep_aspect) {
        const float s = (sx > 0.0f && sy > 0.0f) ? std::min(sx, sy) : std::max(sx, sy);
        sx = sy = s;
    }
    const float ox = p + 0.5f * (room - sx * span_x), oy = p + 0.5f * (room - sy * span_y);
    // Output pixel = (normalised - crop corner) / crop size * output size; y is up in the full image, so the
    // crop's top edge is at 1 - top and rows count from the bottom like fast_pixels' (the rasteriser flips them).
    const float kx = float(width) / crop.width, ky = float(height) / crop.height;
    const float cx0 = crop.left, cy0 = 1.0f - crop.top - crop.height;
    const float x0 = bbox[0], y0 = bbox[2], fw = float(width), fh = float(height);
    int64_t out = 0;
    for (int64_t i = 0; i < n; ++i) {  // branch-free compaction
        const float c = (((xs[i] - x0) * sx + ox) - cx0) * kx, r = (((ys[i] - y0) * sy + oy) - cy0) * ky;
        const bool inside = c >= 0.0f && c < fw && r >= 0.0f && r < fh;
        cols[out] = inside ? int32_t(c) : 0, rows[out] = inside ? int32_t(r) : 0;
        out += inside;
    }
    return out;
}

}  // namespace fdsl
