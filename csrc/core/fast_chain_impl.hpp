// The fast chain kernel, written once with GCC/Clang vector extensions and compiled twice (baseline x86-64 and
// AVX2, see CMakeLists). No FMA and no fast-math, so both builds give identical bytes. Included inside a namespace
// by fast_chain_{generic,avx2}.cpp, after <cmath>, <cstring>, core/ifs.hpp and core/rng.hpp.

// kLanes chains per vector: 8 with AVX2, 4 on baseline SSE2 (wider vectors there spill to the stack). Chain c is
// lane c % kLanes of group c / kLanes either way, so both builds compute the same chains in the same order.
constexpr int kLanes = FDSL_LANES;
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));
typedef uint32_t vu __attribute__((vector_size(4 * kLanes)));

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

// The per-system tables and one chain step for a vector of kLanes chains.
struct ChainStep {
    alignas(32) float coef[6][8] = {};  // a b c d e f, one lane per map
    vf ta = {}, tb = {}, tc = {}, td = {}, te = {}, tf = {};  // the same tables in registers (AVX2: all 8 maps)
    int32_t thresholds[fdsl::kMaxMaps - 1] = {};  // cumulative probabilities on a 2^24 grid
    int n_thresholds = 0;
    vf start_x = {}, start_y = {};

    ChainStep(const fdsl::IfsSystem& system, bool start_at_fixed_point) {
        const int n_maps = system.n_maps;
        double total = 0.0, cum = 0.0;
        for (int k = 0; k < n_maps; ++k) {
            const fdsl::AffineMap& m = system.maps[k];
            const double values[6] = {m.a, m.b, m.c, m.d, m.e, m.f};
            for (int q = 0; q < 6; ++q) coef[q][k] = float(values[q]);
            total += m.p;
        }
        std::memcpy(&ta, coef[0], sizeof ta), std::memcpy(&tb, coef[1], sizeof tb);
        std::memcpy(&tc, coef[2], sizeof tc), std::memcpy(&td, coef[3], sizeof td);
        std::memcpy(&te, coef[4], sizeof te), std::memcpy(&tf, coef[5], sizeof tf);
        n_thresholds = n_maps - 1;
        for (int k = 0; k < n_thresholds; ++k) {
            cum += system.maps[k].p / total;
            thresholds[k] = int32_t(std::lround(cum * 16777216.0));
        }
        double x0 = 0.0, y0 = 0.0;
        if (start_at_fixed_point) fdsl::fixed_point(system.maps[0], &x0, &y0);
        start_x = vf{} + float(x0), start_y = vf{} + float(y0);
    }

    // One step of the chains keyed by `key` at step counter `weyl` (= step * golden ratio).
    inline void operator()(uint32_t weyl, vu key, vf& x, vf& y) const {
        constexpr float kLimit = 1e8f;
        const vi r = (vi)(mix32_lanes(weyl ^ key) >> 8);
        vi j = {};
        for (int k = 0; k < n_thresholds; ++k) j -= (r >= thresholds[k]);  // map = thresholds <= r
        vf nx = x * gather(ta, coef[0], j) + y * gather(tb, coef[1], j) + gather(te, coef[4], j);
        vf ny = x * gather(tc, coef[2], j) + y * gather(td, coef[3], j) + gather(tf, coef[5], j);
        // Divergence guard: |v| <= limit is false for NaN too, so NaN and inf restart the chain.
        const vi ok = (nx <= kLimit) & (nx >= -kLimit) & (ny <= kLimit) & (ny >= -kLimit);
        x = vselect(ok, nx, start_x);
        y = vselect(ok, ny, start_y);
    }
};

// Steps [s0, s1), in which every chain keeps its point: stored step-major, bounds tracked per lane.
void run_kept_steps(const ChainStep& step, int groups, vf* gx, vf* gy, const vu* key, int64_t s0, int64_t s1,
                    int64_t burn_in, float* xs, float* ys, vf bounds[4]) {
    const int64_t chains = int64_t(groups) * kLanes;
    vf lo_x = bounds[0], hi_x = bounds[1], lo_y = bounds[2], hi_y = bounds[3];
    for (int64_t s = s0; s < s1; ++s) {
        const uint32_t weyl = uint32_t(s) * 0x9E3779B9u;
        float* out_x = xs + (s - burn_in) * chains;
        float* out_y = ys + (s - burn_in) * chains;
        for (int g = 0; g < groups; ++g) {
            step(weyl, key[g], gx[g], gy[g]);
            const vf cx = gx[g], cy = gy[g];
            std::memcpy(out_x + g * kLanes, &cx, sizeof cx);
            std::memcpy(out_y + g * kLanes, &cy, sizeof cy);
            lo_x = cx < lo_x ? cx : lo_x, hi_x = cx > hi_x ? cx : hi_x;
            lo_y = cy < lo_y ? cy : lo_y, hi_y = cy > hi_y ? cy : hi_y;
        }
    }
    bounds[0] = lo_x, bounds[1] = hi_x, bounds[2] = lo_y, bounds[3] = hi_y;
}

void fast_chain_kernel(const fdsl::IfsSystem& system, uint64_t seed, int64_t n, const fdsl::FastChainOptions& opt,
                       float* xs, float* ys, float bbox[4]) {
    const ChainStep step(system, opt.start_at_fixed_point);
    const int groups = opt.chains / kLanes;
    const int64_t steps = (n + opt.chains - 1) / opt.chains, full_steps = n / opt.chains;
    constexpr int kMaxGroups = 256 / kLanes;
    vf gx[kMaxGroups], gy[kMaxGroups];
    vu key[kMaxGroups];
    for (int g = 0; g < groups; ++g) {
        gx[g] = step.start_x, gy[g] = step.start_y;
        for (int l = 0; l < kLanes; ++l) key[g][l] = uint32_t(fdsl::stream_key(seed, uint64_t(g * kLanes + l)));
    }
    for (int64_t s = 0; s < opt.burn_in; ++s)  // burn-in: points not kept
        for (int g = 0; g < groups; ++g) step(uint32_t(s) * 0x9E3779B9u, key[g], gx[g], gy[g]);

    vf bounds[4] = {vf{} + INFINITY, vf{} - INFINITY, vf{} + INFINITY, vf{} - INFINITY};
    const int64_t s0 = opt.burn_in, s1 = opt.burn_in + full_steps;
    run_kept_steps(step, groups, gx, gy, key, s0, s1, opt.burn_in, xs, ys, bounds);
    float b[4] = {INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (int l = 0; l < kLanes; ++l) {
        b[0] = std::fmin(b[0], bounds[0][l]), b[1] = std::fmax(b[1], bounds[1][l]);
        b[2] = std::fmin(b[2], bounds[2][l]), b[3] = std::fmax(b[3], bounds[3][l]);
    }
    if (steps > full_steps) {  // the last, partial step keeps only the points below n
        const int64_t s = opt.burn_in + full_steps, base = full_steps * opt.chains;
        for (int g = 0; g < groups; ++g) {
            step(uint32_t(s) * 0x9E3779B9u, key[g], gx[g], gy[g]);
            for (int l = 0; l < kLanes && base + g * kLanes + l < n; ++l) {
                const float px = gx[g][l], py = gy[g][l];
                xs[base + g * kLanes + l] = px, ys[base + g * kLanes + l] = py;
                b[0] = std::fmin(b[0], px), b[1] = std::fmax(b[1], px);
                b[2] = std::fmin(b[2], py), b[3] = std::fmax(b[3], py);
            }
        }
    }
    std::memcpy(bbox, b, sizeof b);
}
