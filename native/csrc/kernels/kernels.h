// Kernel dispatch table. Each instruction set fills one of these in its own
// file (scalar.cpp is the reference every other one is tested against).
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant.h"

namespace embedq {

using RowToF32 = void (*)(const void* src, float* dst, size_t n);

struct Kernels {
  const char* name;

  // Dot product of two f32 vectors of length n.
  float (*dot_f32)(const float* a, const float* b, size_t n);

  // Convert one weight row of n elements to f32, indexed by type id (null
  // for ids we do not support). n is a multiple of the type's block size;
  // src points at the row's first element or block. Results are the same
  // bits in every kernel set (every product in these formulas is exact in
  // f32, so the one rounding left is the same whichever order or FMA).
  RowToF32 row_to_f32[kDTypeSlots];

  // C[i*ldc + j] = sum_k A[i*lda + k] * B[j*ldb + k]   for i < m, j < n.
  // A holds activations (tokens x K), B holds f32 weight rows (rows x K).
  // This is the hot loop of every linear layer.
  void (*gemm_f32_nt)(const float* A, size_t lda, const float* B, size_t ldb,
                      float* C, size_t ldc, size_t m, size_t n, size_t k);

  // Activation quantization to Q8_0 blocks (k multiple of 32).
  void (*quantize_row_q8_0)(const float* x, BlockQ8_0* y, size_t k);
  // Integer dot products: C[i*ldc + j] = dot(Aq row i, Bq row j), k in elements.
  void (*gemm_q8_0_nt)(const BlockQ8_0* A, size_t lda_blocks, const BlockQ8_0* B, size_t ldb_blocks,
                       float* C, size_t ldc, size_t m, size_t n, size_t k);
};

// The reference implementation (always available). The SIMD sets start from a
// copy of it and replace what they speed up, so a type they leave alone runs
// the reference code.
const Kernels& kernels_scalar();
// Null when the ISA is not compiled into this build.
const Kernels* kernels_avx2();
const Kernels* kernels_avx512();
const Kernels* kernels_neon();

// Best kernels this CPU supports; EMBEDQ_KERNELS=scalar|avx2|avx512|neon overrides.
const Kernels& kernels_best();
// Names of the kernel sets this CPU can run, best last.
const char* const* kernels_available(size_t* count);
const Kernels* kernels_by_name(const char* name);  // null if unsupported here

}  // namespace embedq
