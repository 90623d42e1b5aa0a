#include "threadpool.h"

namespace embedq {

namespace {
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
// How long an idle worker spins before sleeping: a forward pass issues
// dozens of parallel regions back to back, and a futex wake-up per region
// costs more than the work in small batches.
constexpr int kSpinIterations = 1 << 16;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::finish(size_t count) { done_.fetch_add(count, std::memory_order_acq_rel); }

void ThreadPool::run_tasks(uint32_t gen, int index) {
  for (;;) {
    uint64_t t = ticket_.load(std::memory_order_acquire);
    if ((uint32_t)(t >> 32) != gen) return;
    const size_t n = n_tasks_.load(std::memory_order_acquire);
    const size_t i = (size_t)(t & 0xffffffffu);
    if (i >= n) return;
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
    // The CAS succeeded on this generation, so the job is still live and
    // job_ / n_tasks_ belong to it.
    try {
      (*job_.load(std::memory_order_acquire))(i, index);
      finish(1);
    } catch (...) {
      {
        std::lock_guard<std::mutex> lk(error_mu_);
        if (!error_) error_ = std::current_exception();
      }
      // Cancel the tasks nobody has claimed; they count as done.
      uint64_t cur = ticket_.load(std::memory_order_acquire);
      while ((uint32_t)(cur >> 32) == gen && (size_t)(cur & 0xffffffffu) < n) {
        const uint64_t end = ((uint64_t)gen << 32) | n;
        if (ticket_.compare_exchange_weak(cur, end, std::memory_order_acq_rel)) {
          finish(n - (size_t)(cur & 0xffffffffu));
          break;
        }
      }
      finish(1);
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      cpu_relax();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    run_tasks(gen, index);
  }
}

void ThreadPool::parallel_for(size_t n_tasks, const std::function<void(size_t, int)>& fn) {
  if (n_tasks == 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (size_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  if (n_tasks >= 0xffffffffu) throw std::length_error("too many tasks for one parallel_for");
  uint32_t gen;
  {
    std::lock_guard<std::mutex> lk(mu_);
    gen = generation_.load(std::memory_order_relaxed) + 1;
    job_.store(&fn, std::memory_order_relaxed);
    n_tasks_.store(n_tasks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    ticket_.store((uint64_t)gen << 32, std::memory_order_release);
    generation_.store(gen, std::memory_order_release);
  }
  cv_start_.notify_all();
  run_tasks(gen, 0);
  while (done_.load(std::memory_order_acquire) < n_tasks) cpu_relax();
  // Close the job so late workers see nothing to claim.
  ticket_.store(((uint64_t)gen << 32) | 0xffffffffu, std::memory_order_release);
  if (error_) std::rethrow_exception(error_);
}

}  // namespace embedq
