// Reference kernels. Every SIMD kernel set is tested against these, so they
// stay deliberately plain: one loop per definition, no reassociation tricks.
#include <cmath>

#include "kernels/kernels.h"

namespace embedq {
namespace {

float dot_f32(const float* a, const float* b, size_t n) {
  float s = 0.0f;
  for (size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void row_to_f32_f16(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

void row_to_f32_bf16(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

void row_to_f32_q8_0(const BlockQ8_0* src, float* dst, size_t n) {
  for (size_t b = 0; b < n / QK8_0; ++b) {
    const float d = fp16_to_fp32(src[b].d);
    for (int i = 0; i < QK8_0; ++i) dst[b * QK8_0 + i] = d * (float)src[b].qs[i];
  }
}

void gemm_f32_nt(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc,
                 size_t m, size_t n, size_t k) {
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) C[i * ldc + j] = dot_f32(A + i * lda, B + j * ldb, k);
}

// x must be finite: an inf or NaN has no meaningful int8 quant (and the
// float-to-int conversion below would be undefined for it).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t k) {
  for (size_t b = 0; b < k / QK8_0; ++b) {
    const float* xb = x + b * QK8_0;
    float amax = 0.0f;
    for (int i = 0; i < QK8_0; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    // The scale is used at fp32 precision for rounding (only the stored copy
    // is fp16); SIMD versions replicate exactly this so blocks are identical.
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int i = 0; i < QK8_0; ++i) y[b].qs[i] = (int8_t)std::roundf(xb[i] * id);
  }
}

// Precondition shared by all kernel sets: A's quants lie in [-127, 127] (which
// quantize_row_q8_0 guarantees); B may use the full int8 range.
void gemm_q8_0_nt(const BlockQ8_0* A, size_t lda_blocks, const BlockQ8_0* B, size_t ldb_blocks,
                  float* C, size_t ldc, size_t m, size_t n, size_t k) {
  const size_t nb = k / QK8_0;
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const BlockQ8_0* a = A + i * lda_blocks;
      const BlockQ8_0* b = B + j * ldb_blocks;
      float s = 0.0f;
      for (size_t blk = 0; blk < nb; ++blk) {
        int32_t isum = 0;
        for (int t = 0; t < QK8_0; ++t) isum += (int32_t)a[blk].qs[t] * (int32_t)b[blk].qs[t];
        s += fp16_to_fp32(a[blk].d) * fp16_to_fp32(b[blk].d) * (float)isum;
      }
      C[i * ldc + j] = s;
    }
  }
}

// Ties to even (nearbyint under the default rounding mode), which is what the
// SIMD conversions do, so every kernel set produces identical quants.
void quantize_row_i16(const float* x, int16_t* q, float* d, size_t k) {
  for (size_t b = 0; b < k / QK8_0; ++b) {
    const float* xb = x + b * QK8_0;
    int16_t* qb = q + b * QK8_0;
    float amax = 0.0f;
    bool finite = true;
    for (int i = 0; i < QK8_0; ++i) {
      amax = std::fmax(amax, std::fabs(xb[i]));
      finite = finite && std::isfinite(xb[i]);
    }
    if (!finite || !(amax >= kI16MinAmax)) {
      for (int i = 0; i < QK8_0; ++i) qb[i] = 0;
      d[b] = finite ? 0.0f : NAN;
      continue;
    }
    const float id = kI16Max / amax;
    for (int i = 0; i < QK8_0; ++i) {
      // x * id can land an ulp above kI16Max; the clamp keeps the bound exact.
      const float r = std::nearbyint(xb[i] * id);
      qb[i] = (int16_t)std::fmin(std::fmax(r, -kI16Max), kI16Max);
    }
    d[b] = amax / kI16Max;
  }
}

void pack_q8_0_i16(const BlockQ8_0* W, size_t ldw_blocks, size_t rows, size_t k, int16_t* q, float* d) {
  const size_t nb = k / QK8_0;
  for (size_t g = 0; g < i16_groups(rows); ++g)
    for (size_t b = 0; b < nb; ++b) {
      int16_t* qb = q + (g * nb + b) * kI16Group * QK8_0;
      float* db = d + (g * nb + b) * kI16Group;
      for (size_t l = 0; l < kI16Group; ++l) {
        const size_t row = g * kI16Group + l;
        const BlockQ8_0* src = row < rows ? &W[row * ldw_blocks + b] : nullptr;
        db[l] = src ? fp16_to_fp32(src->d) : 0.0f;
        for (int t = 0; t < QK8_0; ++t) qb[(t / 2) * 2 * kI16Group + 2 * l + t % 2] = src ? src->qs[t] : 0;
      }
    }
}

void gemm_i16_nt(const int16_t* A, size_t lda, const float* ad, size_t ldad, const int16_t* Bq, const float* Bd,
                 float* C, size_t ldc, size_t m, size_t n, size_t k) {
  const size_t nb = k / QK8_0;
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const size_t g = j / kI16Group, l = j % kI16Group;
      float s = 0.0f;
      for (size_t blk = 0; blk < nb; ++blk) {
        const int16_t* qb = Bq + (g * nb + blk) * kI16Group * QK8_0;
        int32_t isum = 0;
        for (size_t t = 0; t < QK8_0; ++t)
          isum += (int32_t)A[i * lda + blk * QK8_0 + t] * qb[(t / 2) * 2 * kI16Group + 2 * l + t % 2];
        s += ad[i * ldad + blk] * Bd[(g * nb + blk) * kI16Group + l] * (float)isum;
      }
      C[i * ldc + j] = s;
    }
  }
}

}  // namespace

const Kernels& kernels_scalar() {
  static const Kernels k = {
      "scalar",        dot_f32,     row_to_f32_f16,    row_to_f32_bf16,
      row_to_f32_q8_0, gemm_f32_nt, quantize_row_q8_0, gemm_q8_0_nt,
      quantize_row_i16, pack_q8_0_i16, gemm_i16_nt, false,
  };
  return k;
}

}  // namespace embedq
