#include "core/published_search.hpp"

#include <cmath>
#include <stdexcept>

namespace fdsl {

int64_t legacy_randint(Mt19937& rng, int64_t low, int64_t high) {
    const uint64_t span = uint64_t(high - low - 1);  // numpy's `rng`: the largest offset
    if (high <= low || span > 0xFFFFFFFFull) throw std::invalid_argument("legacy_randint: need low < high <= low + 2^32");
    if (span == 0) return low;  // numpy draws nothing for a single value
    uint64_t mask = span;
    for (int shift = 1; shift < 64; shift <<= 1) mask |= mask >> shift;
    uint64_t value;
    do value = rng.next_u32() & mask;
    while (value > span);
    return low + int64_t(value);
}

void PublishedStream::next(IfsSystem* system, Mt19937* chain) {
    const int n = int(legacy_randint(rng_, draw_.min_maps, int64_t(draw_.max_maps) + 1));
    system->n_maps = n;
    // uniform(low, high, 6) is low + (high - low) * random(); p as the script: |a d - b c| summed in map order, then
    // each divided by the sum.
    const double low = -draw_.param_range, scale = draw_.param_range - low;
    double total = 0.0;
    for (int k = 0; k < n; ++k) {
        double v[6];
        for (double& x : v) x = low + scale * rng_.next_double();
        const double p = std::fabs(v[0] * v[3] - v[1] * v[2]);
        system->maps[k] = AffineMap{v[0], v[1], v[2], v[3], v[4], v[5], p};
        total += p;
    }
    for (int k = 0; k < n; ++k) system->maps[k].p /= total;
    if (chain != nullptr) *chain = rng_;
    rng_.skip(2 * uint64_t(draw_.n_points));  // random(n_points): two words per double
    ++consumed_;
}

}  // namespace fdsl
