#include "core/rng.hpp"

#include "core/simd.hpp"

namespace fdsl {

namespace {
constexpr int kN = 624, kM = 397;
inline uint32_t twist_one(uint32_t cur, uint32_t next, uint32_t far) {
    const uint32_t y = (cur & 0x80000000u) | (next & 0x7FFFFFFFu);
    return far ^ (y >> 1) ^ ((0u - (y & 1u)) & 0x9908B0DFu);  // branch-free: vectorises
}
}  // namespace

FDSL_MULTIVERSION
void mt19937_twist(uint32_t* state) {
    // Three loops whose reads never overlap their writes within a vector, so each vectorises.
    for (int i = 0; i < kN - kM; ++i) state[i] = twist_one(state[i], state[i + 1], state[i + kM]);
    for (int i = kN - kM; i < kN - 1; ++i) state[i] = twist_one(state[i], state[i + 1], state[i + kM - kN]);
    state[kN - 1] = twist_one(state[kN - 1], state[0], state[kM - 1]);
}

FDSL_MULTIVERSION
void mt19937_doubles(const uint32_t* words, int64_t count, double* out) {
    for (int64_t i = 0; i < count; ++i)
        out[i] = mt19937_double(mt19937_temper(words[2 * i]) >> 5, mt19937_temper(words[2 * i + 1]) >> 6);
}

}  // namespace fdsl
