// Baseline x86-64 (or any CPU) build of the cached-draw kernel.
#include <cstdint>
#include <cstring>
#if defined(__SSE__)
#include <immintrin.h>
#endif

#include "core/cache_draw.hpp"
#include "core/rng.hpp"

namespace fdsl::generic {
#define FDSL_LANES 4
#include "core/cache_draw_impl.hpp"
#undef FDSL_LANES
}  // namespace fdsl::generic
