#include "runtime.h"

namespace embedq {

Runtime::Runtime(int threads, ActivationMode m, const Kernels& kernels)
    : pool(threads), k(kernels), mode(m), scratch((size_t)pool.size()) {}

float* Runtime::thread_scratch(int thread, size_t n) {
  auto& s = scratch[(size_t)thread];
  if (s.size() < n) s.resize(n);
  return s.data();
}

}  // namespace embedq
