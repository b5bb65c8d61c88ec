// AVX2 build of the fast chain kernel (compiled with -mavx2, no FMA); chosen at run time where the CPU has AVX2.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/ifs.hpp"
#include "core/rng.hpp"

namespace fdsl::avx2 {
#define FDSL_LANES 8
#include "core/fast_chain_impl.hpp"
#undef FDSL_LANES
}  // namespace fdsl::avx2
