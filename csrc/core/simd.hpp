// FDSL_MULTIVERSION: compile a hot loop for AVX2 and for baseline x86-64, the CPU picking at load time (GCC/Clang
// target_clones through an ifunc). Only for loops whose integer and IEEE float operations give the same results
// either way: no FMA is enabled, and the build forbids contraction and fast-math.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__AVX2__) && defined(__ELF__)
#define FDSL_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define FDSL_MULTIVERSION
#endif

namespace fdsl {
// Whether the kernels compiled twice (baseline and -mavx2: the fast chain, the cached draw) take their AVX2 build:
// the CPU has AVX2 and FDSL_FORCE_GENERIC is unset or "0". Decided once per process.
bool use_avx2_kernels();
}  // namespace fdsl
