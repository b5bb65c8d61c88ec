// Baseline x86-64 (or any CPU) build of the fast chain kernel.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/ifs.hpp"
#include "core/rng.hpp"

namespace fdsl::generic {
#include "core/fast_chain_impl.hpp"
}  // namespace fdsl::generic
