// Baseline x86-64 (or any CPU) build of the fast chain kernel.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/ifs.hpp"
#include "core/rng.hpp"

namespace fdsl::generic {
#define FDSL_LANES 4
#include "core/fast_chain_impl.hpp"
#undef FDSL_LANES
}  // namespace fdsl::generic
