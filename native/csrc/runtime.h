// The compute context a forward pass runs in: the thread pool, the kernel set
// chosen for this CPU, how Q8_0 products treat activations, and per-thread
// scratch space. One per model; used by one forward pass at a time.
#pragma once
#include <chrono>
#include <cstddef>
#include <unordered_map>
#include <vector>

#include "kernels/kernels.h"
#include "threadpool.h"

namespace embedq {

struct TensorView;

// How matrix products treat activations when the weights are not F32.
//  F32: weights are dequantized panel by panel into f32 and multiplied with f32
//       activations: only the weight rounding costs accuracy.
//  INT8: activations are quantized to Q8_0 blocks and the products use integer
//       dot products, as llama.cpp does: faster on VNNI-less cores, less accurate.
//  INT16: activations are quantized to int16 per block of 32 (error ~2^-16
//       of the block's largest value) and multiplied in exact integer block sums with
//       the weights packed once at load (Q8_0's int8 quants as they are, other non-F32
//       types as 12-bit blocks, quant.h): the accuracy of F32 at integer speed.
//  AUTO (an option, never a runtime's mode): INT16 where the kernel set says
//       it is faster (Kernels::prefer_i16), F32 elsewhere.
enum class ActivationMode { F32, INT8, INT16, AUTO };

// Where forward passes spend their time, summed since the model was loaded (or the last reset):
// what `embedq bench runtime` splits forward time by and rates the matrix products with.
struct OpTimes {
  double linear_ms = 0;    // linear(): weight conversion/packing, GEMM, fused epilogues, its barriers
  double linear_ops = 0;   // 2 * m * in * out per linear() call
  double attention_ms = 0; // attention(): scores, softmax, weighted values, its barriers
};

// Adds the wall time of its scope to a counter (one thread runs a forward pass's layers in order).
class ScopedMs {
 public:
  explicit ScopedMs(double& into) : into_(into), t0_(std::chrono::steady_clock::now()) {}
  ~ScopedMs() { into_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count(); }
  ScopedMs(const ScopedMs&) = delete;
  ScopedMs& operator=(const ScopedMs&) = delete;

 private:
  double& into_;
  std::chrono::steady_clock::time_point t0_;
};

struct Runtime {
  Runtime(int threads, ActivationMode mode, const Kernels& kernels);
  OpTimes times;
  ThreadPool pool;
  const Kernels& k;
  ActivationMode mode;
  // Per-thread scratch, grown on demand (one vector per pool thread).
  std::vector<std::vector<float>> scratch;
  std::vector<BlockQ8_0> qact;  // quantized activations, shared
  std::vector<int16_t> i16act;  // int16 activations and their block scales, shared
  std::vector<float> i16scale;
  // Weight matrices packed for gemm_i16_nt (linear.cpp), each once for the model's life.
  struct PackedI16 {
    std::vector<int16_t> q;
    std::vector<float> d;
  };
  std::unordered_map<const TensorView*, PackedI16> packed;
  float* thread_scratch(int thread, size_t n);
};

}  // namespace embedq
