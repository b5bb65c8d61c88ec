// The one-image render behind the batch entry points (render.cpp), for other batch loops of the core (cache.cpp).
// Internal to the core: the bindings use render.hpp.
#pragma once
#include <cstdint>
#include <memory>

#include "core/raster.hpp"
#include "core/render.hpp"

namespace fdsl::detail {

// Per-thread buffers, allocated before the threads start so that an allocation failure reaches the caller.
// An uninitialised array: every element is written before it is read, so zero-filling megabytes would be waste.
template <class T>
struct Buffer {
    std::unique_ptr<T[]> memory;
    explicit Buffer(int64_t n = 0) : memory(n > 0 ? new T[size_t(n)] : nullptr) {}
    T* data() { return memory.get(); }
};

// The scratch of render_one for images of height x width rendered with options `o`.
struct Scratch {
    Buffer<double> xd, yd;  // reference chain
    Buffer<float> xf, yf;   // fast chain
    Buffer<int32_t> cols, rows;
    RasterScratch raster;
    Scratch(const IfsRenderOptions& o, int height, int width);
};

// Renders one image into `canvas` (points, pixels, raster); returns the number of points drawn. `crop`: null, or
// (left, top, width, height) of IfsBatch::crops (fast mode). `chain`: reference mode draws its uniforms from (a copy
// of) this stream instead of a fresh Mt19937(seed).
int64_t render_one(const IfsSystem& system, uint64_t seed, uint64_t patch_seed, int flip, const float* crop,
                   const IfsRenderOptions& o, const Canvas& canvas, Scratch& s, const Mt19937* chain = nullptr);

// The core's own guard of the side cap, whoever calls it: the int32 pixel offsets of raster.cpp rely on it.
// Throws std::invalid_argument for a side outside [1, kMaxSide].
void check_sides(int height, int width);

// Threads worth starting for `items` items.
int worker_count(int threads, int64_t items);

}  // namespace fdsl::detail
