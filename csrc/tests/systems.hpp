// IFS systems the C++ unit tests share.
#pragma once
#include "core/ifs.hpp"

namespace fdsl::test {
// Sierpinski's triangle: three half-scale maps, equal probabilities.
inline IfsSystem sierpinski() {
    IfsSystem s{};
    s.n_maps = 3;
    s.maps[0] = {0.5, 0, 0, 0.5, 0.0, 0.0, 1 / 3.0};
    s.maps[1] = {0.5, 0, 0, 0.5, 0.5, 0.0, 1 / 3.0};
    s.maps[2] = {0.5, 0, 0, 0.5, 0.25, 0.5, 1 / 3.0};
    return s;
}
}  // namespace fdsl::test
