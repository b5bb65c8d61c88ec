// A tiny assertion helper for the C++ unit tests: CHECK records a failure and goes on; main returns report().
#pragma once
#include <cstdio>

namespace fdsl::test {
inline int& failures() {
    static int count = 0;
    return count;
}
inline int report(const char* name) {
    std::printf("%s: %s (%d failed checks)\n", name, failures() ? "FAILED" : "ok", failures());
    return failures() ? 1 : 0;
}
}  // namespace fdsl::test

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
            ++fdsl::test::failures();                                                \
        }                                                                            \
    } while (0)
