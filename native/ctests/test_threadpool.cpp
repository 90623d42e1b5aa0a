// Thread pool: every task runs exactly once across many back-to-back jobs of
// odd sizes, exceptions propagate and cancel, and the pool stays usable.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "check.h"
#include "threadpool.h"

using namespace embedq;

int main() {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    bool all_once = true;
    for (size_t n : {1u, 2u, 3u, 7u, 64u, 1000u}) {
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<std::atomic<int>> hits(n);
        for (auto& h : hits) h = 0;
        std::atomic<int> bad_thread{0};
        pool.parallel_for(n, [&](size_t t, int th) {
          hits[t].fetch_add(1);
          if (th < 0 || th >= threads) bad_thread = 1;
        });
        for (auto& h : hits) all_once &= h.load() == 1;
        all_once &= bad_thread.load() == 0;
      }
    }
    CHECK(all_once);

    bool threw = false;
    std::atomic<int> ran{0};
    try {
      pool.parallel_for(10000, [&](size_t t, int) {
        ran.fetch_add(1);
        if (t == 5) throw std::runtime_error("task 5 failed");
        // Long enough that cancelling is observable: 10000 tasks take ~0.1 s.
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(10);
        while (std::chrono::steady_clock::now() < until) {
        }
      });
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()) == "task 5 failed";
    }
    CHECK(threw);
    CHECK(ran.load() < 10000);  // the rest were cancelled
    std::atomic<size_t> sum{0};
    pool.parallel_for(100, [&](size_t t, int) { sum.fetch_add(t); });
    CHECK(sum.load() == 4950);  // usable after an exception
  }
  return report();
}
