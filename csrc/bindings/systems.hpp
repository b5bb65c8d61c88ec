// IFS systems from Python arrays, checked: shared by the render (ifs.cpp) and cache (cache.cpp) bindings.
#pragma once
#include <pybind11/pybind11.h>

#include <vector>

#include "core/ifs.hpp"

namespace fdsl::bind {

// params (B, K, 7) float64 rows `a b c d e f p` and n_maps (B,) int32 -> systems, checked (ValueError or TypeError
// naming the argument).
std::vector<IfsSystem> read_systems(const pybind11::object& params_obj, const pybind11::object& n_maps_obj);

}  // namespace fdsl::bind
