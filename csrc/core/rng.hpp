// Random numbers for the renderer. Two kinds, both pure functions of their seed:
//  - Mt19937: numpy's legacy RandomState stream (np.random.seed(s); np.random.random(n)), for reference mode.
//  - counter-based hashes (splitmix64, mix32): value = f(key, counter), so any sample, chain or point can be drawn
//    independently of thread count and order.
#pragma once
#include <algorithm>
#include <cstdint>

namespace fdsl {

inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Key for stream `stream` of a 64-bit seed: distinct streams of one seed are unrelated.
inline uint64_t stream_key(uint64_t seed, uint64_t stream) { return splitmix64(splitmix64(seed) ^ (stream * 0xD6E8FEB86659FD93ull)); }

// The 32-bit finaliser of murmur3 (a bijection with full avalanche) on a uint32 or on every lane of a GCC/Clang
// vector of uint32 (the SIMD kernels). Static: each kernel's translation unit (baseline or -mavx2) keeps its own
// copy, never one the linker picked from a build for another CPU.
template <class V>
static inline V mix32_lanes(V h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

inline uint32_t mix32(uint32_t h) { return mix32_lanes(h); }

// Counter-based 32-bit value number `counter` of the stream keyed by `key` (a Weyl sequence through mix32).
inline uint32_t hash32(uint32_t key, uint32_t counter) { return mix32((counter * 0x9E3779B9u) ^ key); }

// Uniform integer in [0, n) from a 32-bit hash (multiply-shift; bias below 2^-32 * n).
inline uint32_t bounded(uint32_t h, uint32_t n) { return static_cast<uint32_t>((static_cast<uint64_t>(h) * n) >> 32); }

// Uniform double in [0, 1) with 53 random bits from a 64-bit value.
inline double unit_double(uint64_t h) { return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0); }

// MT19937 building blocks (rng.cpp holds the block loops, vectorised, with AVX2 clones).
inline uint32_t mt19937_temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    return y ^ (y >> 18);
}
inline double mt19937_double(uint32_t a, uint32_t b) { return (a * 67108864.0 + b) / 9007199254740992.0; }
// Regenerates the 624-word state.
void mt19937_twist(uint32_t* state);
// out[i] = the double of words 2i, 2i+1 (tempered), i < count.
void mt19937_doubles(const uint32_t* words, int64_t count, double* out);

// MT19937 seeded like numpy's legacy np.random.seed(int) (init_genrand), drawing doubles like
// RandomState.random(): (a >> 5, b >> 6) -> (a * 2^26 + b) / 2^53.
class Mt19937 {
  public:
    explicit Mt19937(uint32_t seed) {
        state_[0] = seed;
        for (uint32_t i = 1; i < kN; ++i) state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + i;
        index_ = kN;
    }
    uint32_t next_u32() {
        if (index_ >= kN) twist();
        return temper(state_[index_++]);
    }
    double next_double() {
        const uint32_t a = next_u32() >> 5, b = next_u32() >> 6;
        return to_double(a, b);
    }
    // Moves the stream past `words` 32-bit draws without tempering them (a skipped block costs one twist).
    void skip(uint64_t words) {
        while (words > 0) {
            if (index_ >= kN) twist();
            const uint64_t k = std::min<uint64_t>(words, kN - index_);
            index_ += uint32_t(k), words -= k;
        }
    }
    // The next `count` doubles, as next_double() would give them; whole blocks at a time so the loop vectorises.
    void fill_doubles(double* out, int64_t count) {
        while (count > 0) {
            if (index_ >= kN) twist();
            if ((kN - index_) % 2 != 0) {  // a double straddles a twist
                *out++ = next_double(), --count;
                continue;
            }
            const int64_t k = std::min<int64_t>(count, (kN - index_) / 2);
            mt19937_doubles(state_ + index_, k, out);
            out += k, count -= k, index_ += uint32_t(2 * k);
        }
    }

  private:
    static constexpr uint32_t kN = 624, kM = 397;
    static uint32_t temper(uint32_t y) { return mt19937_temper(y); }
    static double to_double(uint32_t a, uint32_t b) { return mt19937_double(a, b); }
    void twist() {
        mt19937_twist(state_);
        index_ = 0;
    }
    uint32_t state_[kN];
    uint32_t index_;
};

}  // namespace fdsl
