// Persistent worker threads. parallel_for hands out task indices; the calling
// thread works too, so threads=1 runs inline.
//
// Completion is counted in tasks, not in threads: if a worker is descheduled
// (other processes share the cores), the caller claims the remaining tasks
// itself and returns as soon as every task is done, instead of waiting for
// the late worker to wake up and check in.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
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
  // thread_index < size() identifies per-thread scratch buffers. An exception
  // thrown by a task cancels the tasks not yet started and is rethrown here.
  void parallel_for(size_t n_tasks, const std::function<void(size_t, int)>& fn);

 private:
  void worker_loop(int index);
  // Claims and runs tasks of job `gen` until none are left; returns at once
  // if the pool has moved on to another job.
  void run_tasks(uint32_t gen, int index);
  void finish(size_t count);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_;

  // ticket_ = (generation << 32) | next task index. Claiming a task is a CAS
  // on the whole word, so a worker that woke up late for an old job can never
  // take (or skip) a task of the new one.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<size_t> done_{0};
  std::atomic<size_t> n_tasks_{0};
  std::atomic<const std::function<void(size_t, int)>*> job_{nullptr};
  std::atomic<bool> stop_{false};
  std::mutex error_mu_;
  std::exception_ptr error_;
};

}  // namespace embedq
