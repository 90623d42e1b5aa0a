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

  // 16-bit activations (see quant.h, "int16 activations"). One activation row
  // of k elements (a multiple of 32) becomes int16 quants q with |q| <= kI16Max
  // and one f32 scale per block of 32 in d: x ~ d[b] * q. A block holding inf
  // or NaN gets zero quants and a NaN scale, so the products come out NaN as
  // they would in f32 (and the model's output check refuses the vector)
  // instead of something finite.
  void (*quantize_row_i16)(const float* x, int16_t* q, float* d, size_t k);
  // Packs `rows` Q8_0 weight rows (row stride ldw_blocks) for gemm_i16_nt:
  // see kI16Group below for the layout; rows past `rows` in the last
  // group are zero (quants and scales).
  void (*pack_q8_0_i16)(const BlockQ8_0* W, size_t ldw_blocks, size_t rows, size_t k, int16_t* q, float* d);
  // C[i*ldc + j] = sum_b ad[i*ldad + b] * d_j,b * sum_{t in block b} A[i*lda + t] * w_j,t
  // for i < m, j < n, with exact int32 block sums, B packed by pack_q8_0_i16
  // (n rows). Preconditions: |A| <= kI16Max and k a multiple of 32.
  void (*gemm_i16_nt)(const int16_t* A, size_t lda, const float* ad, size_t ldad, const int16_t* Bq,
                      const float* Bd, float* C, size_t ldc, size_t m, size_t n, size_t k);

  // Whether gemm_i16_nt beats dequantizing to f32 with this set, which makes
  // int16 the default activations for Q8_0 weights: true only where a fused
  // 16-bit multiply-add (VPDPWSSD) exists. Without it vpmaddwd + vpaddd cost
  // as much per product as one FMA does, and the f32 path wins.
  bool prefer_i16;
};

// Packed int16 weights: rows go in groups of kI16Group; a group holds, per
// block of 32 columns, 16 vectors of kI16Group int16 pairs (vector p, lane
// l = columns 2p and 2p+1 of the group's row l) and then, separately, the
// block's kI16Group f32 scales. Pairs are what vpmaddwd / VPDPWSSD multiply,
// so with one activation pair broadcast, one instruction computes a partial
// dot product for 16 output columns at once, and a block's int32 sums are
// scaled once per 16 outputs instead of once per output.
constexpr size_t kI16Group = 16;
inline size_t i16_groups(size_t rows) { return (rows + kI16Group - 1) / kI16Group; }
// Packed sizes for `rows` rows of k columns: int16 quants and f32 scales.
inline size_t i16_packed_quants(size_t rows, size_t k) { return i16_groups(rows) * kI16Group * k; }
inline size_t i16_packed_scales(size_t rows, size_t k) { return i16_groups(rows) * kI16Group * (k / QK8_0); }
// Visits every slot of that layout for `rows` rows of k columns, in memory order:
// fn(row, b, qb, l, db) for row `row` (>= rows: the zero padding of the last group),
// block b of 32 columns, whose quant t goes to qb[i16_pair_index(l, t)] and scale to *db.
inline size_t i16_pair_index(size_t l, size_t t) { return (t / 2) * 2 * kI16Group + 2 * l + t % 2; }
template <class Fn>
void for_each_i16_slot(size_t rows, size_t k, int16_t* q, float* d, Fn&& fn) {
  const size_t nb = k / QK8_0;
  for (size_t g = 0; g < i16_groups(rows); ++g)
    for (size_t b = 0; b < nb; ++b)
      for (size_t l = 0; l < kI16Group; ++l)
        fn(g * kI16Group + l, b, q + (g * nb + b) * kI16Group * QK8_0, l, d + (g * nb + b) * kI16Group + l);
}

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
