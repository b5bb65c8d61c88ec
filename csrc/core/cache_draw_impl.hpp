// The kernel of one cached draw (cache.hpp), written once with GCC/Clang vector extensions and compiled twice:
// cache_draw_generic.cpp (baseline, 4 lanes) and cache_draw_avx2.cpp (-mavx2, 8 lanes). Every output value is the
// same sequence of IEEE float operations in either build (lanes never mix; no FMA, no fast-math), so both give the
// same bytes. Included inside a namespace after <cstdint>, <cstring>, <immintrin.h> (x86), core/cache_draw.hpp and
// core/rng.hpp.
//
// A draw, for a crop of w x h pixels to T x T:
//  1. lit rows: the crop's lit pixels, one bit each, bit 0 = the crop's left column (patch hashes, union masks);
//  2. per block of kLanes output rows, the vertical pass: colsum[c][l] = sum over taps t of wy(i0 + l, t) *
//     lit(lo_y + t, c), the bits turned into weights by a mask table, then transposed so that lanes are rows;
//  3. the horizontal pass, kLanes rows at once: acc[j][l] = sum over taps k of wx(j, k) * colsum[lo_x(j) + k][l];
//  4. tiles of kLanes x kLanes transposed back in registers, converted to gray and written flipped.
// Taps past an output's window have weight 0 and add exact zeros. Spans of the crop's columns with no lit bit in a
// block's rows skip the vertical pass.

constexpr int kLanes = FDSL_LANES;
static_assert(kLanes == 4 || kLanes == 8, "4 or 8 lanes");
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));
typedef uint32_t vu __attribute__((vector_size(4 * kLanes)));

using cache_detail::DrawJob;
using cache_detail::DrawScratch;
using cache_detail::round_up;

// x in every lane (a plain lane-by-lane loop can compile to one insert per lane).
static inline vf splat(float x) {
#if FDSL_LANES == 8 && defined(__AVX__)
    return (vf)_mm256_set1_ps(x);
#elif FDSL_LANES == 4 && defined(__SSE__)
    return (vf)_mm_set1_ps(x);
#else
    vf v;
    for (int l = 0; l < kLanes; ++l) v[l] = x;
    return v;
#endif
}
static inline vu splat(uint32_t x) { return vu{} + x; }

static inline vf loadf(const float* p) {
    vf v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
static inline void storef(float* p, vf v) { std::memcpy(p, &v, sizeof v); }

// Entry v: lane l all ones where bit l of v is set; ANDed with a weight vector it selects the weight or +0.
struct MaskTable {
    alignas(32) uint32_t lanes[1 << kLanes][kLanes];
    constexpr MaskTable() : lanes() {
        for (int v = 0; v < (1 << kLanes); ++v)
            for (int l = 0; l < kLanes; ++l) lanes[v][l] = (v >> l & 1) ? 0xFFFFFFFFu : 0u;
    }
};
static constexpr MaskTable kMasks{};

static inline vu mask_of(unsigned bits) {
    vu m;
    std::memcpy(&m, kMasks.lanes[bits], sizeof m);
    return m;
}

// Bit l set where lane l of the comparison result is true (all ones).
static inline unsigned lane_bits(vi c) {
#if FDSL_LANES == 8 && defined(__AVX__)
    return unsigned(_mm256_movemask_ps((__m256)c));
#elif FDSL_LANES == 4 && defined(__SSE__)
    return unsigned(_mm_movemask_ps((__m128)c));
#else
    unsigned bits = 0;
    for (int l = 0; l < kLanes; ++l) bits |= unsigned(c[l] != 0) << l;
    return bits;
#endif
}

// v[a] lane b <-> v[b] lane a.
static inline void transpose(vf* v) {
#if FDSL_LANES == 8 && defined(__AVX__)
    __m256 t[8], s[8];
    for (int k = 0; k < 4; ++k) {
        t[2 * k] = _mm256_unpacklo_ps((__m256)v[2 * k], (__m256)v[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps((__m256)v[2 * k], (__m256)v[2 * k + 1]);
    }
    for (int k = 0; k < 2; ++k) {
        s[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        s[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
        s[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        s[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {
        v[k] = (vf)(_mm256_permute2f128_ps(s[k], s[k + 4], 0x20));
        v[k + 4] = (vf)(_mm256_permute2f128_ps(s[k], s[k + 4], 0x31));
    }
#elif FDSL_LANES == 4 && defined(__SSE__)
    __m128 a = (__m128)v[0], b = (__m128)v[1];
    __m128 c = (__m128)v[2], d = (__m128)v[3];
    _MM_TRANSPOSE4_PS(a, b, c, d);
    v[0] = (vf)a, v[1] = (vf)b;
    v[2] = (vf)c, v[3] = (vf)d;
#else
    for (int a = 0; a < kLanes; ++a)
        for (int b = a + 1; b < kLanes; ++b) {
            const float x = v[a][b];
            v[a][b] = v[b][a], v[b][a] = x;
        }
#endif
}

// Kind Patch keeps a cached pixel where hash32(key, pidx) < kPatchThreshold.
struct WeylTable {  // (pixel offset in the word) * golden, by group of kLanes pixels
    alignas(32) uint32_t lanes[64 / kLanes][kLanes];
    constexpr WeylTable() : lanes() {
        for (int p = 0; p < 64; ++p) lanes[p / kLanes][p % kLanes] = uint32_t(p) * 0x9E3779B9u;
    }
};
static constexpr WeylTable kWeyl{};

// The hashes of kind Patch, hash32(key, pidx) < kPatchThreshold, of the kLanes pixels from pidx `first` on, as bits.
static inline unsigned patch_group(uint32_t first, uint32_t key) {
    vu weyl;  // hash32(key, counter) = mix32(counter * golden ^ key)
    std::memcpy(&weyl, kWeyl.lanes[0], sizeof weyl);
    return lane_bits(mix32_lanes((splat(first * 0x9E3779B9u) + weyl) ^ key) < kPatchThreshold);
}

#if FDSL_LANES == 8 && defined(__AVX2__)
// AVX2: hash only the bytes (8-pixel groups) that hold a set bit, listed first without branches (a loop over each
// word's groups mispredicts its exit and serialises the multiply latency), then hashed in one predictable loop.
struct GroupLists {  // the set bits of a byte, lowest first
    uint8_t offsets[256][8];
    constexpr GroupLists() : offsets() {
        for (int v = 0; v < 256; ++v)
            for (int b = 0, n = 0; b < 8; ++b)
                if (v >> b & 1) offsets[v][n++] = uint8_t(b);
    }
};
static constexpr GroupLists kGroupLists{};

// words[0 .. count) of a row, pixel index of bit 0 of words[0]: base; each word ANDed with its pixels' hashes.
static inline void patch_words(uint64_t* words, int count, uint32_t base, uint32_t key, DrawScratch& s) {
    uint16_t* const list = s.groups.data();
    uint8_t* const keep = s.keep.data();
    int n = 0;
    for (int m = 0; m < count; ++m) {
        const uint64_t x = words[m];
        const uint64_t top = (((x & 0x7F7F7F7F7F7F7F7Full) + 0x7F7F7F7F7F7F7F7Full) | x) & 0x8080808080808080ull;
        const unsigned bytes = unsigned(((top >> 7) * 0x0102040810204080ull) >> 56);  // bit b: byte b is not 0
        __m128i entry;
        std::memcpy(&entry, kGroupLists.offsets[bytes], 8);
        entry = _mm_add_epi16(_mm_cvtepu8_epi16(entry), _mm_set1_epi16(int16_t(8 * m)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(list + n), entry);
        n += __builtin_popcount(bytes);
    }
    for (int e = 0; e < n; ++e) keep[list[e]] = uint8_t(patch_group(base + 8u * list[e], key));
    for (int m = 0; m < count; ++m) {
        uint64_t k;
        std::memcpy(&k, keep + 8 * m, 8);
        words[m] &= k;  // bytes not hashed are 0 in the word: their stale keep bytes do not matter
    }
}
#else
// Baseline: the 64 hashes of each non-zero word.
static inline void patch_words(uint64_t* words, int count, uint32_t base, uint32_t key, DrawScratch&) {
    for (int m = 0; m < count; ++m) {
        if (words[m] == 0) continue;
        uint64_t keep = 0;
        for (int g = 0; g < 64 / kLanes; ++g)
            keep |= uint64_t(patch_group(base + uint32_t(64 * m + g * kLanes), key)) << (g * kLanes);
        words[m] &= keep;
    }
}
#endif

// Step 1: the crop's lit rows into s.lit, shifted so that bit 0 of word 0 is column `left`; bits past the crop's
// width are 0; then taps_y rows of zeros (the vertical pass reads them with weight 0).
template <CacheKind kKind>
__attribute__((noinline)) static void lit_rows(const DrawJob& j, DrawScratch& s) {
    const int S = j.side, W = j.words, stride = s.lit_stride;
    const int q0 = j.left >> 6, q1 = (j.left + j.width - 1) >> 6, shift = j.left & 63;
    const int nw = (j.width + 63) >> 6, count = q1 - q0 + 1;
    const int end = j.left + j.width;
    const uint64_t first_mask = ~0ull << shift, end_mask = (end & 63) ? (1ull << (end & 63)) - 1 : ~0ull;
    const uint64_t last_mask = (j.width & 63) ? (1ull << (j.width & 63)) - 1 : ~0ull;
    const uint32_t key = uint32_t(stream_key(j.patch_seed, 3));
    // Union: for each dr, the cells dc of its set mask bits 8 - (3 dr + dc), dc = 0 in the high bit.
    const uint32_t union_mask = 1u + bounded(uint32_t(stream_key(j.patch_seed, 2)), 511u);
    uint32_t cells[3];
    for (int dr = 0; dr < 3; ++dr) cells[dr] = (union_mask >> (6 - 3 * dr)) & 7u;
    uint64_t* const src = s.row_words.data();  // the lit words q0 .. q1 of a row (source frame), then 0
    for (int r = 0; r < j.height; ++r) {
        const int R = j.top + r;
        const uint64_t* row = j.cache + int64_t(R) * W + q0;
        if (kKind == CacheKind::Point || kKind == CacheKind::FullPatch) {
            std::memcpy(src, row, 8 * size_t(count));
        } else if (kKind == CacheKind::Patch) {
            std::memcpy(src, row, 8 * size_t(count));
            src[0] &= first_mask, src[count - 1] &= end_mask;  // only the crop's pixels are hashed
            patch_words(src, count, uint32_t(R) * uint32_t(S) + uint32_t(64 * q0), key, s);
        } else {
            for (int m = 0; m < count; ++m) {
                const int k = q0 + m;
                uint64_t v = 0;
                for (int dr = 0; dr < 3; ++dr) {  // (r, c) |= bit(r + 1 + dr, c - 1 - dc)
                    if (R + 1 + dr >= S || cells[dr] == 0) continue;
                    const uint64_t* below = j.cache + int64_t(R + 1 + dr) * W;
                    const uint64_t a = below[k], b = k > 0 ? below[k - 1] : 0;
                    for (int dc = 0; dc < 3; ++dc)
                        if (cells[dr] >> (2 - dc) & 1u) v |= (a << (1 + dc)) | (b >> (63 - dc));
                }
                src[m] = v;
            }
        }
        src[count] = 0;
        uint64_t* dst = s.lit.data() + int64_t(r) * stride;
        for (int m = 0; m < nw; ++m) dst[m] = shift == 0 ? src[m] : (src[m] >> shift) | (src[m + 1] << (64 - shift));
        dst[nw - 1] &= last_mask;
    }
    for (int r = j.height; r < j.height + j.taps_y; ++r) std::memset(s.lit.data() + int64_t(r) * stride, 0, 8 * nw);
}

// Gray levels of accumulated values: min(127, floor(127 acc + 0.5)) in float32; acc >= 0, so truncation floors.
static inline vi gray_of(vf acc) {
    vf y = acc * 127.0f + 0.5f;
#if FDSL_LANES == 8 && defined(__AVX__)
    y = (vf)_mm256_min_ps((__m256)y, _mm256_set1_ps(127.0f));  // y is never NaN: min is y < 127 ? y : 127
#elif FDSL_LANES == 4 && defined(__SSE__)
    y = (vf)_mm_min_ps((__m128)y, _mm_set1_ps(127.0f));
#else
    y = y < 127.0f ? y : 127.0f;
#endif
    return __builtin_convertvector(y, vi);
}

// The gray levels (0..127) of a tile's kLanes rows, row l's kLanes bytes at out[kLanes l ..], lane 0 first.
static inline void gray_tile(const vf* rows, uint8_t* out) {
#if FDSL_LANES == 8 && defined(__AVX2__)
    // In-lane packs give bytes [r0 0..3, r1 0..3, r2 0..3, r3 0..3 | r0 4..7, ...]; the dword permute orders them.
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int h = 0; h < 2; ++h) {
        const vf* r = rows + 4 * h;
        const __m256i a = _mm256_packs_epi32((__m256i)gray_of(r[0]), (__m256i)gray_of(r[1]));
        const __m256i b = _mm256_packs_epi32((__m256i)gray_of(r[2]), (__m256i)gray_of(r[3]));
        const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), order);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * h), bytes);
    }
#elif FDSL_LANES == 4 && defined(__SSE2__)
    const __m128i a = _mm_packs_epi32((__m128i)gray_of(rows[0]), (__m128i)gray_of(rows[1]));
    const __m128i b = _mm_packs_epi32((__m128i)gray_of(rows[2]), (__m128i)gray_of(rows[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(a, b));
#else
    for (int l = 0; l < kLanes; ++l) {
        const vi q = gray_of(rows[l]);
        for (int c = 0; c < kLanes; ++c) out[kLanes * l + c] = uint8_t(q[c]);
    }
#endif
}

// kLanes bytes in reverse order.
static inline uint64_t reversed(uint64_t bytes) {
    return kLanes == 8 ? __builtin_bswap64(bytes) : uint64_t(__builtin_bswap32(uint32_t(bytes)));
}

// Columns per pass of the vertical step: kChunks chunks of kLanes columns, each chunk one accumulator register.
constexpr int kChunks = 8;
constexpr int kSpan = kChunks * kLanes;  // 64 (one lit word) with AVX2, 32 (half a word) on baseline

// Step 2 for output rows i0 .. i0 + kLanes - 1: colsum[c][l] = sum over t of wy(i0 + l, t) * lit(lo_y + t, c) for
// the crop's columns (whole lit words), lanes = rows. Spans without a lit bit in the block's rows are zeros.
__attribute__((noinline)) static void vertical_block(const DrawJob& j, DrawScratch& s, int i0) {
    const int ty = j.taps_y, stride = s.lit_stride, nw = (j.width + 63) >> 6;
    const uint64_t* const lit = s.lit.data();
    const uint8_t* const lit_bytes = reinterpret_cast<const uint8_t*>(lit);
    float* const colsum = s.colsum.data();
    const float* const wy = s.w_y.data() + int64_t(i0) * ty;
    const int32_t* const lo = s.lo_y.data() + i0;
    const int r_lo = lo[0], r_hi = lo[kLanes - 1] + ty;
    for (int m = 0; m < nw; ++m) {
        uint64_t any = 0;
        for (int r = r_lo; r < r_hi; ++r) any |= lit[int64_t(r) * stride + m];
        for (int half = 0; half < 64 / kSpan; ++half) {
            const int first = 64 * m + kSpan * half;  // first column of this span
            float* const cs = colsum + int64_t(first) * kLanes;
            if (((any >> (kSpan * half)) & (~0ull >> (64 - kSpan))) == 0) {
                std::memset(cs, 0, sizeof(float) * kSpan * kLanes);
                continue;
            }
            vf sums[kLanes][kChunks];  // [row][chunk], lanes = columns
            for (int l = 0; l < kLanes; ++l) {
                vf a[kChunks];
                for (int q = 0; q < kChunks; ++q) a[q] = vf{};
                for (int t = 0; t < ty; ++t) {  // each sum in order of t
                    const vu w = (vu)splat(wy[l * ty + t]);
                    const uint8_t* src = lit_bytes + int64_t(lo[l] + t) * stride * 8 + first / 8;
                    for (int q = 0; q < kChunks; ++q) {
                        const unsigned bits = (src[q * kLanes / 8] >> ((q * kLanes) & 7)) & ((1u << kLanes) - 1);
                        a[q] += (vf)(w & mask_of(bits));
                    }
                }
                for (int q = 0; q < kChunks; ++q) sums[l][q] = a[q];
            }
            for (int q = 0; q < kChunks; ++q) {  // lanes = rows
                vf v[kLanes];
                for (int l = 0; l < kLanes; ++l) v[l] = sums[l][q];
                transpose(v);
                for (int c = 0; c < kLanes; ++c) storef(cs + (q * kLanes + c) * kLanes, v[c]);
            }
        }
    }
}

// Steps 3 and 4 for output rows i0 .. i0 + kLanes - 1, a tile of kLanes columns at a time: acc[x][l] = sum over k of
// wx(x, k) * colsum[lo_x(x) + k][l] (lanes = rows), transposed in registers (lanes = columns), gray, and written at
// the output rows and columns the flips put them.
// kTaps: the sample's taps when a specialisation has them (the tap loop unrolled), else 0 (taps_x at run time).
template <int kTaps>
__attribute__((noinline)) static void horizontal_block(const DrawJob& j, DrawScratch& s, int i0) {
    const int T = j.out_side, tx = kTaps > 0 ? kTaps : j.taps_x;
    const float* const colsum = s.colsum.data();
    const float* const wx = s.w_x.data();
    const int32_t* const lo = s.lo_x.data();
    const bool flip_cols = (j.flip & 2) != 0;
    uint8_t* rows[kLanes];
    for (int l = 0; l < kLanes; ++l) {
        const int i = i0 + l < T ? i0 + l : T - 1;  // padding rows of the last block are computed, not written
        rows[l] = j.out + int64_t((j.flip & 1) ? T - 1 - i : i) * T;
    }
    const int rows_written = T - i0 < kLanes ? T - i0 : kLanes;
    for (int x0 = 0; x0 < T; x0 += kLanes) {
        vf a[kLanes];
        const int cols = T - x0 < kLanes ? T - x0 : kLanes;
#pragma GCC unroll 8
        for (int c = 0; c < kLanes; ++c) {  // all kLanes (padding columns repeat the last): a[] stays in registers
            const int x = x0 + c < T ? x0 + c : T - 1;
            const float* w = wx + int64_t(x) * tx;
            const float* cs = colsum + int64_t(lo[x]) * kLanes;
            vf sum = {};
            for (int k = 0; k < tx; ++k) sum += loadf(cs + k * kLanes) * w[k];
            a[c] = sum;
        }
        transpose(a);
        alignas(32) uint8_t tile[kLanes * kLanes];
        gray_tile(a, tile);
        if (cols == kLanes) {
            const int at = flip_cols ? T - x0 - kLanes : x0;
            for (int l = 0; l < rows_written; ++l) {
                uint64_t bytes = 0;
                std::memcpy(&bytes, tile + kLanes * l, kLanes);
                if (flip_cols) bytes = reversed(bytes);
                std::memcpy(rows[l] + at, &bytes, kLanes);
            }
        } else {
            for (int l = 0; l < rows_written; ++l)
                for (int c = 0; c < cols; ++c) rows[l][flip_cols ? T - 1 - (x0 + c) : x0 + c] = tile[kLanes * l + c];
        }
    }
}

void draw_cached_one(const DrawJob& j, DrawScratch& s) {
    switch (j.kind) {
        case CacheKind::Point: lit_rows<CacheKind::Point>(j, s); break;
        case CacheKind::FullPatch: lit_rows<CacheKind::FullPatch>(j, s); break;
        case CacheKind::Patch: lit_rows<CacheKind::Patch>(j, s); break;
        case CacheKind::UnionPatch: lit_rows<CacheKind::UnionPatch>(j, s); break;
    }
    // Columns past the vertical pass' last word that the horizontal taps may read (with weight 0).
    const int nw = (j.width + 63) >> 6;
    std::memset(s.colsum.data() + int64_t(64 * nw) * kLanes, 0, sizeof(float) * size_t(j.taps_x) * kLanes);
    for (int i0 = 0; i0 < j.out_side; i0 += kLanes) {
        vertical_block(j, s, i0);
        switch (j.taps_x) {
            case 1: horizontal_block<1>(j, s, i0); break;
            case 2: horizontal_block<2>(j, s, i0); break;
            case 3: horizontal_block<3>(j, s, i0); break;
            case 4: horizontal_block<4>(j, s, i0); break;
            case 5: horizontal_block<5>(j, s, i0); break;
            case 6: horizontal_block<6>(j, s, i0); break;
            case 7: horizontal_block<7>(j, s, i0); break;
            default: horizontal_block<0>(j, s, i0); break;
        }
    }
}
