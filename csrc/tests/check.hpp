// A tiny assertion helper for the C++ unit tests: CHECK records a failure and goes on; main returns report().
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>

namespace fdsl::test {
inline int& failures() {
    static int count = 0;
    return count;
}
inline int report(const char* name) {
    std::printf("%s: %s (%d failed checks)\n", name, failures() ? "FAILED" : "ok", failures());
    return failures() ? 1 : 0;
}

// What `call` throws as std::invalid_argument, or "" if it throws nothing.
template <class Call>
std::string invalid_argument_of(Call call) {
    try {
        call();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}
}  // namespace fdsl::test

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
            ++fdsl::test::failures();                                                \
        }                                                                            \
    } while (0)
