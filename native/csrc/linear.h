// Y = X W^T + b for a whole packed batch: every weight matrix is read once per
// batch whatever the number of sequences in it.
#pragma once
#include <cstddef>
#include <vector>

#include "gguf.h"
#include "runtime.h"

namespace embedq {

enum class Epilogue { NONE, GELU_ERF, GELU_TANH, SILU };

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

// Prepares the matrices linear() will multiply for the runtime's mode: with int16 activations
// every non-F32 matrix is packed for gemm_i16_nt here, once, instead of on every call (at batch 1
// packing would cost as much as the products). `release_after` (a file mapping) gives the
// file's pages of those matrices back: the packed copy replaces them in resident memory.
void prepare_weights(Runtime& rt, const std::vector<const TensorView*>& matrices, bool release_after);

// Converts one row of any supported weight type to f32 (embedding lookups).
void weight_row_to_f32(const Kernels& k, const TensorView& t, size_t row, float* dst);
// A 1-D tensor (norm weight, bias) as f32; copies into `store` if it is not F32.
const float* vector_f32(const TensorView& t, std::vector<float>& store);

}  // namespace embedq
