// AVX2 build of the cached-draw kernel (compiled with -mavx2, no FMA); chosen at run time where the CPU has AVX2.
#include <cstdint>
#include <cstring>
#if defined(__SSE__)
#include <immintrin.h>
#endif

#include "core/cache_draw.hpp"
#include "core/rng.hpp"

namespace fdsl::avx2 {
#define FDSL_LANES 8
#include "core/cache_draw_impl.hpp"
#undef FDSL_LANES
}  // namespace fdsl::avx2
