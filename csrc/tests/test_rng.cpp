// Unit tests of csrc/core/rng.hpp.
#include <cstdint>
#include <set>
#include <vector>

#include "core/rng.hpp"
#include "tests/check.hpp"

using namespace fdsl;

int main() {
    // The C++ standard fixes the 10000th output of mt19937 seeded with 5489.
    Mt19937 mt(5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; ++i) v = mt.next_u32();
    CHECK(v == 4123659995u);

    // fill_doubles gives the same stream as next_double, across twist boundaries and odd block sizes.
    for (int block : {1, 7, 311, 312, 313, 1000}) {
        Mt19937 a(100), b(100);
        std::vector<double> bulk(5000);
        for (size_t i = 0; i < bulk.size(); i += block)
            b.fill_doubles(bulk.data() + i, std::min<size_t>(block, bulk.size() - i));
        bool same = true;
        for (double x : bulk) same &= x == a.next_double();
        CHECK(same);
    }
    // Doubles lie in [0, 1).
    Mt19937 c(1);
    bool in_range = true;
    for (int i = 0; i < 100000; ++i) {
        const double u = c.next_double();
        in_range &= u >= 0.0 && u < 1.0;
    }
    CHECK(in_range);

    // Counter hashes: distinct streams and counters give distinct values; bounded() stays in range and covers it.
    CHECK(stream_key(1, 0) != stream_key(1, 1) && stream_key(1, 0) != stream_key(2, 0));
    std::set<uint32_t> seen;
    for (uint32_t i = 0; i < 100000; ++i) seen.insert(hash32(12345u, i));
    CHECK(seen.size() == 100000);  // mix32 of a Weyl sequence is a bijection of the counter
    std::vector<int> hist(511, 0);
    for (uint32_t i = 0; i < 511 * 400; ++i) ++hist[bounded(hash32(7u, i), 511u)];
    int lo = 1 << 30, hi = 0;
    for (int h : hist) lo = std::min(lo, h), hi = std::max(hi, h);
    CHECK(lo > 300 && hi < 500);
    return test::report("test_rng");
}
