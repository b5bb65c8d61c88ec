// A minimal parallel-for: items are handed out one by one from an atomic counter. Every item's result depends
// only on its own inputs, so the output is the same whatever the thread count or scheduling.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fdsl {

// Calls body(item, worker) for item in [0, count), on at most `threads` threads (worker in [0, threads)); worker 0
// is the calling thread. The first exception `body` throws, in any worker, stops the others from taking new items
// and is rethrown here once every thread has joined (an exception leaving a std::thread would be std::terminate).
template <class Body>
void parallel_for(int64_t count, int threads, const Body& body) {
    const int workers = int(std::max<int64_t>(1, std::min<int64_t>(threads, count)));
    std::atomic<int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&](int worker) {
        try {
            for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(i, worker);
        } catch (...) {
            {
                const std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
            }
            next.store(count);  // items already taken finish; no new ones start
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    for (int w = 1; w < workers; ++w) {
        try {
            pool.emplace_back(work, w);
        } catch (...) {  // std::system_error, or bad_alloc of the thread's state: leaving now would skip the joins
            break;       // fewer threads than asked: the remaining workers take the rest
        }
    }
    work(0);
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace fdsl
