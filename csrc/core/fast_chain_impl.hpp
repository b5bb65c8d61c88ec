// The fast chain kernel, written once with GCC/Clang vector extensions and compiled twice (baseline x86-64 and
// AVX2, see CMakeLists). No FMA and no fast-math, so both builds give identical bytes. Included inside a namespace
// by fast_chain_{generic,avx2}.cpp, after <cmath>, <cstring>, core/ifs.hpp and core/rng.hpp.

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

static inline v8u vmix32(v8u h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static inline v8f vselect(v8i mask, v8f a, v8f b) { return (v8f)(((v8i)a & mask) | ((v8i)b & ~mask)); }

void fast_chain_kernel(const fdsl::IfsSystem& system, uint64_t seed, int64_t n, const fdsl::FastChainOptions& opt,
                       float* xs, float* ys, float bbox[4]) {
    constexpr float kLimit = 1e8f;
    const int n_maps = system.n_maps;
    // Per-map coefficient tables, one lane per map, gathered per chain with a variable shuffle.
    v8f ta = {}, tb = {}, tc = {}, td = {}, te = {}, tf = {};
    for (int k = 0; k < n_maps; ++k) {
        const fdsl::AffineMap& m = system.maps[k];
        ta[k] = float(m.a), tb[k] = float(m.b), tc[k] = float(m.c);
        td[k] = float(m.d), te[k] = float(m.e), tf[k] = float(m.f);
    }
    // Integer thresholds of the cumulative probabilities on a 2^24 grid; map = number of thresholds <= r.
    int32_t thresholds[fdsl::kMaxMaps - 1];
    double total = 0.0;
    for (int k = 0; k < n_maps; ++k) total += system.maps[k].p;
    double cum = 0.0;
    for (int k = 0; k < n_maps - 1; ++k) {
        cum += system.maps[k].p / total;
        thresholds[k] = int32_t(std::lround(cum * 16777216.0));
    }
    double x0 = 0.0, y0 = 0.0;
    if (opt.start_at_fixed_point) fdsl::fixed_point(system.maps[0], &x0, &y0);
    const v8f start_x = v8f{} + float(x0), start_y = v8f{} + float(y0);

    const int groups = opt.chains / 8;
    const int64_t steps = (n + opt.chains - 1) / opt.chains;
    constexpr int kMaxGroups = 32;
    v8f gx[kMaxGroups], gy[kMaxGroups];
    v8u key[kMaxGroups];
    for (int g = 0; g < groups; ++g) {
        gx[g] = start_x, gy[g] = start_y;
        for (int l = 0; l < 8; ++l) key[g][l] = uint32_t(fdsl::stream_key(seed, uint64_t(g * 8 + l)));
    }
    v8f lo_x = v8f{} + INFINITY, hi_x = v8f{} - INFINITY, lo_y = lo_x, hi_y = hi_x;
    const int64_t total_steps = opt.burn_in + steps;
    for (int64_t s = 0; s < total_steps; ++s) {
        const uint32_t weyl = uint32_t(s) * 0x9E3779B9u;
        const bool keep = s >= opt.burn_in;
        const int64_t base = (s - opt.burn_in) * opt.chains;
        const bool full = keep && base + opt.chains <= n;
        for (int g = 0; g < groups; ++g) {
            const v8i r = (v8i)(vmix32(weyl ^ key[g]) >> 8);
            v8i j = {};
            for (int k = 0; k < n_maps - 1; ++k) j -= (r >= thresholds[k]);
            const v8f x = gx[g], y = gy[g];
            v8f nx = x * __builtin_shuffle(ta, j) + y * __builtin_shuffle(tb, j) + __builtin_shuffle(te, j);
            v8f ny = x * __builtin_shuffle(tc, j) + y * __builtin_shuffle(td, j) + __builtin_shuffle(tf, j);
            // Divergence guard: |v| <= limit is false for NaN too, so NaN and inf restart the chain.
            const v8i ok = (nx <= kLimit) & (nx >= -kLimit) & (ny <= kLimit) & (ny >= -kLimit);
            nx = vselect(ok, nx, start_x);
            ny = vselect(ok, ny, start_y);
            gx[g] = nx, gy[g] = ny;
            if (full) {
                std::memcpy(xs + base + g * 8, &nx, sizeof nx);
                std::memcpy(ys + base + g * 8, &ny, sizeof ny);
                lo_x = nx < lo_x ? nx : lo_x, hi_x = nx > hi_x ? nx : hi_x;
                lo_y = ny < lo_y ? ny : lo_y, hi_y = ny > hi_y ? ny : hi_y;
            } else if (keep) {  // last, partial step: keep only the points below n
                for (int l = 0; l < 8; ++l) {
                    const int64_t i = base + g * 8 + l;
                    if (i >= n) break;
                    xs[i] = nx[l], ys[i] = ny[l];
                }
            }
        }
    }
    float b[4] = {INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (int l = 0; l < 8; ++l) {
        b[0] = std::fmin(b[0], lo_x[l]), b[1] = std::fmax(b[1], hi_x[l]);
        b[2] = std::fmin(b[2], lo_y[l]), b[3] = std::fmax(b[3], hi_y[l]);
    }
    const int64_t tail = (steps - 1) * opt.chains;
    if (n % opt.chains != 0) {
        for (int64_t i = tail; i < n; ++i) {
            b[0] = std::fmin(b[0], xs[i]), b[1] = std::fmax(b[1], xs[i]);
            b[2] = std::fmin(b[2], ys[i]), b[3] = std::fmax(b[3], ys[i]);
        }
    }
    std::memcpy(bbox, b, sizeof b);
}
