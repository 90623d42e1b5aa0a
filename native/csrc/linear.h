// Y = X W^T + b for a whole packed batch: every weight matrix is read once per
// batch whatever the number of sequences in it.
#pragma once
#include <cstddef>
#include <vector>

#include "gguf.h"
#include "kernels/kernels.h"
#include "threadpool.h"

namespace embedq {

// How matrix products treat activations when the weights are Q8_0.
//  F32: weights are dequantized panel by panel into f32 and multiplied with f32
//       activations: only the weight rounding costs accuracy.
//  INT8: activations are quantized to Q8_0 blocks and the products use integer
//       dot products, as llama.cpp does: faster on VNNI-less cores, less accurate.
enum class ActivationMode { F32, INT8 };

enum class Epilogue { NONE, GELU_ERF, GELU_TANH };

struct Runtime {
  Runtime(int threads, ActivationMode mode, const Kernels& kernels);
  ThreadPool pool;
  const Kernels& k;
  ActivationMode mode;
  // Per-thread scratch, grown on demand (one vector per pool thread).
  std::vector<std::vector<float>> scratch;
  std::vector<BlockQ8_0> qact;  // quantized activations, shared
  float* thread_scratch(int thread, size_t n);
};

// A weight matrix from the file: rows = output features, each row ne[0] = in features.
struct Weight {
  const TensorView* t = nullptr;
  const float* bias = nullptr;  // F32 bias or null
  size_t in() const { return (size_t)t->ne[0]; }
  size_t out() const { return (size_t)t->ne[1]; }
};

// X: m x in (row stride ldx), Y: m x out (row stride ldy).
void linear(Runtime& rt, const float* X, size_t ldx, size_t m, const Weight& w, float* Y, size_t ldy,
            Epilogue epi = Epilogue::NONE);

// Converts one row of any supported weight type to f32 (embedding lookups).
void weight_row_to_f32(const Kernels& k, const TensorView& t, size_t row, float* dst);
// A 1-D tensor (norm weight, bias) as f32; copies into `store` if it is not F32.
const float* vector_f32(const TensorView& t, std::vector<float>& store);

}  // namespace embedq
