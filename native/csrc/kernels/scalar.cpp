// Reference kernels. Every SIMD kernel set is tested against these, so they
// stay deliberately plain: one loop per definition, no reassociation tricks.
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"

namespace embedq {
namespace {

float dot_f32(const float* a, const float* b, size_t n) {
  float s = 0.0f;
  for (size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void row_to_f32_f32(const void* src, float* dst, size_t n) { std::memcpy(dst, src, n * sizeof(float)); }

void row_to_f32_f16(const void* src, float* dst, size_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (size_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
}

void row_to_f32_bf16(const void* src, float* dst, size_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
}

// The formulas and orders of operations below are ggml's (dequantize_row_*),
// written from the block layouts in quant.h.

void row_to_f32_q4_0(const void* src, float* y, size_t n) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(src);
  for (size_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
    const float d = fp16_to_fp32(x[b].d);
    for (int i = 0; i < QK4_0 / 2; ++i) {
      y[i] = d * (float)((x[b].qs[i] & 0xF) - 8);
      y[i + QK4_0 / 2] = d * (float)((x[b].qs[i] >> 4) - 8);
    }
  }
}

void row_to_f32_q4_1(const void* src, float* y, size_t n) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(src);
  for (size_t b = 0; b < n / QK4_1; ++b, y += QK4_1) {
    const float d = fp16_to_fp32(x[b].d), m = fp16_to_fp32(x[b].m);
    for (int i = 0; i < QK4_1 / 2; ++i) {
      y[i] = d * (float)(x[b].qs[i] & 0xF) + m;
      y[i + QK4_1 / 2] = d * (float)(x[b].qs[i] >> 4) + m;
    }
  }
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // the file is little-endian, like every host we build for
  return v;
}

void row_to_f32_q5_0(const void* src, float* y, size_t n) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(src);
  for (size_t b = 0; b < n / QK5_0; ++b, y += QK5_0) {
    const float d = fp16_to_fp32(x[b].d);
    const uint32_t qh = load_u32(x[b].qh);
    for (int i = 0; i < QK5_0 / 2; ++i) {
      const int lo = (x[b].qs[i] & 0xF) | (int)((qh >> i) & 1) << 4;
      const int hi = (x[b].qs[i] >> 4) | (int)((qh >> (i + 16)) & 1) << 4;
      y[i] = d * (float)(lo - 16);
      y[i + QK5_0 / 2] = d * (float)(hi - 16);
    }
  }
}

void row_to_f32_q5_1(const void* src, float* y, size_t n) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(src);
  for (size_t b = 0; b < n / QK5_1; ++b, y += QK5_1) {
    const float d = fp16_to_fp32(x[b].d), m = fp16_to_fp32(x[b].m);
    const uint32_t qh = load_u32(x[b].qh);
    for (int i = 0; i < QK5_1 / 2; ++i) {
      const int lo = (x[b].qs[i] & 0xF) | (int)((qh >> i) & 1) << 4;
      const int hi = (x[b].qs[i] >> 4) | (int)((qh >> (i + 16)) & 1) << 4;
      y[i] = d * (float)lo + m;
      y[i + QK5_1 / 2] = d * (float)hi + m;
    }
  }
}

void row_to_f32_q8_0(const void* src, float* dst, size_t n) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(src);
  for (size_t b = 0; b < n / QK8_0; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (int i = 0; i < QK8_0; ++i) dst[b * QK8_0 + i] = d * (float)x[b].qs[i];
  }
}

// K types: a 256-element super-block is two halves of 128; in each half,
// element 32*s + l takes bits (or nibbles) of byte l of the half's quants.

void row_to_f32_q2_k(const void* src, float* y, size_t n) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[b].qs + 32 * h;
      for (int s = 0; s < 4; ++s) {
        for (int l = 0; l < 32; ++l) {
          const uint8_t sc = x[b].scales[8 * h + 2 * s + l / 16];
          const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
          *y++ = dl * (float)((q[l] >> (2 * s)) & 3) - ml;
        }
      }
    }
  }
}

void row_to_f32_q3_k(const void* src, float* y, size_t n) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    int8_t scales[16];
    q3k_scales(x[b].scales, scales);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[b].qs + 32 * h;
      for (int s = 0; s < 4; ++s) {
        const int bit = 4 * h + s;  // the high bit of this group lives in bit `bit` of hmask[l]
        for (int l = 0; l < 32; ++l) {
          const float dl = d * (float)scales[8 * h + 2 * s + l / 16];
          // A set high bit means no offset; a clear one subtracts 4.
          const int v = ((q[l] >> (2 * s)) & 3) - ((x[b].hmask[l] >> bit) & 1 ? 0 : 4);
          *y++ = dl * (float)v;
        }
      }
    }
  }
}

void row_to_f32_q4_k(const void* src, float* y, size_t n) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k4_scale_min(x[b].scales, j, &sc, &m);
      const float dl = d * (float)sc, ml = dmin * (float)m;
      const uint8_t* q = x[b].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) *y++ = dl * (float)((q[l] >> shift) & 0xF) - ml;
    }
  }
}

void row_to_f32_q5_k(const void* src, float* y, size_t n) {
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k4_scale_min(x[b].scales, j, &sc, &m);
      const float dl = d * (float)sc, ml = dmin * (float)m;
      const uint8_t* q = x[b].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0xF) | ((x[b].qh[l] >> j) & 1) << 4;
        *y++ = dl * (float)v - ml;
      }
    }
  }
}

void row_to_f32_q6_k(const void* src, float* y, size_t n) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[b].ql + 64 * h;
      const uint8_t* qh = x[b].qh + 32 * h;
      for (int s = 0; s < 4; ++s) {
        // Groups 0 and 1 take the low nibbles of ql[0..63], groups 2 and 3 the high ones.
        const uint8_t* lo = ql + 32 * (s % 2);
        const int shift = 4 * (s / 2);
        for (int l = 0; l < 32; ++l) {
          const float dl = d * (float)x[b].scales[8 * h + 2 * s + l / 16];
          const int v = (((lo[l] >> shift) & 0xF) | ((qh[l] >> (2 * s)) & 3) << 4) - 32;
          *y++ = dl * (float)v;
        }
      }
    }
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
  for_each_i16_slot(rows, k, q, d, [&](size_t row, size_t b, int16_t* qb, size_t l, float* db) {
    const BlockQ8_0* src = row < rows ? &W[row * ldw_blocks + b] : nullptr;
    *db = src ? fp16_to_fp32(src->d) : 0.0f;
    for (size_t t = 0; t < QK8_0; ++t) qb[i16_pair_index(l, t)] = src ? src->qs[t] : 0;
  });
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
  static const Kernels k = [] {
    Kernels t{};
    t.name = "scalar";
    t.dot_f32 = dot_f32;
    t.gemm_f32_nt = gemm_f32_nt;
    t.quantize_row_q8_0 = quantize_row_q8_0;
    t.gemm_q8_0_nt = gemm_q8_0_nt;
    t.quantize_row_i16 = quantize_row_i16;
    t.pack_q8_0_i16 = pack_q8_0_i16;
    t.gemm_i16_nt = gemm_i16_nt;
    t.prefer_i16 = false;
    RowToF32* r = t.row_to_f32;
    r[(size_t)DType::F32] = row_to_f32_f32;
    r[(size_t)DType::F16] = row_to_f32_f16;
    r[(size_t)DType::BF16] = row_to_f32_bf16;
    r[(size_t)DType::Q4_0] = row_to_f32_q4_0;
    r[(size_t)DType::Q4_1] = row_to_f32_q4_1;
    r[(size_t)DType::Q5_0] = row_to_f32_q5_0;
    r[(size_t)DType::Q5_1] = row_to_f32_q5_1;
    r[(size_t)DType::Q8_0] = row_to_f32_q8_0;
    r[(size_t)DType::Q2_K] = row_to_f32_q2_k;
    r[(size_t)DType::Q3_K] = row_to_f32_q3_k;
    r[(size_t)DType::Q4_K] = row_to_f32_q4_k;
    r[(size_t)DType::Q5_K] = row_to_f32_q5_k;
    r[(size_t)DType::Q6_K] = row_to_f32_q6_k;
    return t;
  }();
  return k;
}

}  // namespace embedq
