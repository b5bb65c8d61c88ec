// The fast chain kernel, written once with GCC/Clang vector extensions and compiled twice (baseline x86-64 and
// AVX2, see CMakeLists). No FMA and no fast-math, so both builds give identical bytes. Included inside a namespace
// by fast_chain_{generic,avx2}.cpp, after <cmath>, <cstring>, core/ifs.hpp and core/rng.hpp.

// kLanes chains per vector: 8 with AVX2, 4 on baseline SSE2 (wider vectors there spill to the stack). Chain c is
// lane c % kLanes of group c / kLanes either way, so both builds compute the same chains in the same order.
constexpr int kLanes = FDSL_LANES;
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));
typedef uint32_t vu __attribute__((vector_size(4 * kLanes)));

static inline vu vmix32(vu h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static inline vf vselect(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

// table[j] per lane. AVX2 has a variable permute for this (vpermps); baseline x86-64 does not, and lane-wise loads
// from memory beat the compiler's generic lowering of __builtin_shuffle there.
#ifdef __AVX2__
static inline vf gather(vf table, const float*, vi j) { return __builtin_shuffle(table, j); }
#else
static inline vf gather(vf, const float* table, vi j) {
    vf v;
    for (int l = 0; l < kLanes; ++l) v[l] = table[j[l]];
    return v;
}
#endif

void fast_chain_kernel(const fdsl::IfsSystem& system, uint64_t seed, int64_t n, const fdsl::FastChainOptions& opt,
                       float* xs, float* ys, float bbox[4]) {
    constexpr float kLimit = 1e8f;
    const int n_maps = system.n_maps;
    // Per-map coefficient tables, one lane per map, gathered per chain with a variable shuffle.
    alignas(32) float coef[6][8] = {};
    for (int k = 0; k < n_maps; ++k) {
        const fdsl::AffineMap& m = system.maps[k];
        const double values[6] = {m.a, m.b, m.c, m.d, m.e, m.f};
        for (int q = 0; q < 6; ++q) coef[q][k] = float(values[q]);
    }
    vf ta = {}, tb = {}, tc = {}, td = {}, te = {}, tf = {};  // whole tables in registers (AVX2: 8 lanes)
    std::memcpy(&ta, coef[0], sizeof ta), std::memcpy(&tb, coef[1], sizeof tb), std::memcpy(&tc, coef[2], sizeof tc);
    std::memcpy(&td, coef[3], sizeof td), std::memcpy(&te, coef[4], sizeof te), std::memcpy(&tf, coef[5], sizeof tf);
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
    const vf start_x = vf{} + float(x0), start_y = vf{} + float(y0);

    const int groups = opt.chains / kLanes;
    const int64_t steps = (n + opt.chains - 1) / opt.chains;
    constexpr int kMaxGroups = 256 / kLanes;
    vf gx[kMaxGroups], gy[kMaxGroups];
    vu key[kMaxGroups];
    for (int g = 0; g < groups; ++g) {
        gx[g] = start_x, gy[g] = start_y;
        for (int l = 0; l < kLanes; ++l) key[g][l] = uint32_t(fdsl::stream_key(seed, uint64_t(g * kLanes + l)));
    }
    vf lo_x = vf{} + INFINITY, hi_x = vf{} - INFINITY, lo_y = lo_x, hi_y = hi_x;
    const int64_t total_steps = opt.burn_in + steps;
    for (int64_t s = 0; s < total_steps; ++s) {
        const uint32_t weyl = uint32_t(s) * 0x9E3779B9u;
        const bool keep = s >= opt.burn_in;
        const int64_t base = (s - opt.burn_in) * opt.chains;
        const bool full = keep && base + opt.chains <= n;
        for (int g = 0; g < groups; ++g) {
            const vi r = (vi)(vmix32(weyl ^ key[g]) >> 8);
            vi j = {};
            for (int k = 0; k < n_maps - 1; ++k) j -= (r >= thresholds[k]);
            const vf x = gx[g], y = gy[g];
            vf nx = x * gather(ta, coef[0], j) + y * gather(tb, coef[1], j) + gather(te, coef[4], j);
            vf ny = x * gather(tc, coef[2], j) + y * gather(td, coef[3], j) + gather(tf, coef[5], j);
            // Divergence guard: |v| <= limit is false for NaN too, so NaN and inf restart the chain.
            const vi ok = (nx <= kLimit) & (nx >= -kLimit) & (ny <= kLimit) & (ny >= -kLimit);
            nx = vselect(ok, nx, start_x);
            ny = vselect(ok, ny, start_y);
            gx[g] = nx, gy[g] = ny;
            if (full) {
                std::memcpy(xs + base + g * kLanes, &nx, sizeof nx);
                std::memcpy(ys + base + g * kLanes, &ny, sizeof ny);
                lo_x = nx < lo_x ? nx : lo_x, hi_x = nx > hi_x ? nx : hi_x;
                lo_y = ny < lo_y ? ny : lo_y, hi_y = ny > hi_y ? ny : hi_y;
            } else if (keep) {  // last, partial step: keep only the points below n
                for (int l = 0; l < kLanes; ++l) {
                    const int64_t i = base + g * kLanes + l;
                    if (i >= n) break;
                    xs[i] = nx[l], ys[i] = ny[l];
                }
            }
        }
    }
    float b[4] = {INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (int l = 0; l < kLanes; ++l) {
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
