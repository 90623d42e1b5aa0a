// Kernel dispatch table. Each instruction set fills one of these in its own
// file (scalar.cpp is the reference every other one is tested against).
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant.h"

namespace embedq {

struct Kernels {
  const char* name;

  // Dot product of two f32 vectors of length n.
  float (*dot_f32)(const float* a, const float* b, size_t n);

  // Convert one weight row of n elements to f32. n is a multiple of the
  // type's block size (32 for Q8_0).
  void (*row_to_f32_f16)(const uint16_t* src, float* dst, size_t n);
  void (*row_to_f32_bf16)(const uint16_t* src, float* dst, size_t n);
  void (*row_to_f32_q8_0)(const BlockQ8_0* src, float* dst, size_t n);

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

  // 16-bit activations (see quant.h, "int16 activations"). One activation row
  // of k elements becomes int16 quants q with |q| <= kI16Max and one f32 scale
  // (returned): x ~ scale * q. x must be finite.
  float (*quantize_row_i16)(const float* x, int16_t* q, size_t k);
  // One Q8_0 weight row as its int8 quants widened to int16 plus its block
  // scales in f32 (n a multiple of 32): the operand layout gemm_i16_nt reads.
  void (*row_to_i16_q8_0)(const BlockQ8_0* src, int16_t* q, float* d, size_t n);
  // C[i*ldc + j] = ad[i] * sum_b bd[j*ldbd + b] * sum_{t in block b} A[i*lda + t] * B[j*ldb + t]
  // with exact int32 block sums. Preconditions: |A| <= kI16Max, B in [-128, 127]
  // (what the two functions above produce), k a multiple of 32.
  void (*gemm_i16_nt)(const int16_t* A, size_t lda, const float* ad, const int16_t* B, size_t ldb,
                      const float* bd, size_t ldbd, float* C, size_t ldc, size_t m, size_t n, size_t k);
};

// The reference implementation (always available).
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
