// A minimal parallel-for: items are handed out one by one from an atomic counter. Every item's result depends
// only on its own inputs, so the output is the same whatever the thread count or scheduling.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <system_error>
#include <thread>
#include <vector>

namespace fdsl {

// Calls body(item, worker) for item in [0, count), on at most `threads` threads (worker in [0, threads)).
template <class Body>
void parallel_for(int64_t count, int threads, const Body& body) {
    const int workers = int(std::max<int64_t>(1, std::min<int64_t>(threads, count)));
    std::atomic<int64_t> next{0};
    auto work = [&](int worker) {
        for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(i, worker);
    };
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    for (int w = 1; w < workers; ++w) {
        try {
            pool.emplace_back(work, w);
        } catch (const std::system_error&) {
            break;  // fewer threads than asked: the remaining workers take the rest
        }
    }
    work(0);
    for (auto& t : pool) t.join();
}

}  // namespace fdsl
