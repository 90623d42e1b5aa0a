// Persistent worker threads. parallel_for hands out task indices from an
// atomic counter; the calling thread works too, so threads=1 runs inline.
#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace embedq {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Runs fn(task, thread_index) for every task in [0, n_tasks); returns when all are done.
  // An exception thrown by a task stops the remaining tasks and is rethrown here.
  // thread_index < size() identifies per-thread scratch buffers.
  void parallel_for(size_t n_tasks, const std::function<void(size_t, int)>& fn);

 private:
  void worker_loop(int index);
  void run_tasks(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_;
  std::condition_variable cv_done_;
  const std::function<void(size_t, int)>* job_ = nullptr;
  size_t n_tasks_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // first exception thrown by a task, rethrown by parallel_for
};

}  // namespace embedq
