// AArch64 Advanced SIMD kernels. NEON is part of the AArch64 baseline, so no
// extra compiler flags or run-time checks are needed; only instructions of
// plain ARMv8.0 are used (no dot-product or fp16-arithmetic extensions).
#include "kernels/kernels.h"

#if defined(EMBEDQ_ARM)
#if !defined(__aarch64__)
#error "neon.cpp is written for AArch64 (EMBEDQ_ARM must only be set there)"
#endif
#include <arm_neon.h>

namespace embedq {
namespace {

float dot_f32(const float* a, const float* b, size_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {  // four chains hide the FMA latency
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
    s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
  }
  for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void row_to_f32_f16(const void* src_v, float* dst, size_t n) {
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
  if (i < n) {
    // The tail goes through the same instruction so NaN payloads match.
    uint16_t h[4] = {0, 0, 0, 0};
    float f[4];
    for (size_t t = 0; t < n - i; ++t) h[t] = src[i + t];
    vst1q_f32(f, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))));
    for (size_t t = 0; t < n - i; ++t) dst[i + t] = f[t];
  }
}

void row_to_f32_bf16(const void* src_v, float* dst, size_t n) {
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src + i), 16)));
  for (; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

#include "kernels/dequant_neon.h"

// f32 GEMM: 4 rows of A against 4 rows of B, 16 accumulators of 4 lanes
// (21 of the 32 vector registers with the loaded operands), reduced once at
// the end; k % 4 leftovers are added in scalar code.
template <int MR, int NR>
void tile_f32(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc, size_t k) {
  float32x4_t acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_f32(0.0f);
  size_t kk = 0;
  for (; kk + 4 <= k; kk += 4) {
    float32x4_t b[NR];
    for (int j = 0; j < NR; ++j) b[j] = vld1q_f32(B + j * ldb + kk);
    for (int i = 0; i < MR; ++i) {
      const float32x4_t a = vld1q_f32(A + i * lda + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = vfmaq_f32(acc[i][j], a, b[j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      float s = vaddvq_f32(acc[i][j]);
      for (size_t t = kk; t < k; ++t) s += A[i * lda + t] * B[j * ldb + t];
      C[i * ldc + j] = s;
    }
}

template <int MR>
void f32_row_block(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc, size_t n,
                   size_t k) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4) tile_f32<MR, 4>(A, lda, B + j * ldb, ldb, C + j, ldc, k);
  switch (n - j) {
    case 3: tile_f32<MR, 3>(A, lda, B + j * ldb, ldb, C + j, ldc, k); break;
    case 2: tile_f32<MR, 2>(A, lda, B + j * ldb, ldb, C + j, ldc, k); break;
    case 1: tile_f32<MR, 1>(A, lda, B + j * ldb, ldb, C + j, ldc, k); break;
    default: break;
  }
}

void gemm_f32_nt(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc, size_t m,
                 size_t n, size_t k) {
  size_t i = 0;
  for (; i + 4 <= m; i += 4) f32_row_block<4>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, n, k);
  switch (m - i) {
    case 3: f32_row_block<3>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, n, k); break;
    case 2: f32_row_block<2>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, n, k); break;
    case 1: f32_row_block<1>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, n, k); break;
    default: break;
  }
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t k) {
  for (size_t b = 0; b < k / QK8_0; ++b) {
    const float* xb = x + b * QK8_0;
    float32x4_t v[8];
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int g = 0; g < 8; ++g) {
      v[g] = vld1q_f32(xb + 4 * g);
      m = vmaxq_f32(m, vabsq_f32(v[g]));
    }
    // Same fp32 steps as the reference, so the blocks are bit-identical.
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int g = 0; g < 8; g += 2) {
      // FCVTAS rounds to nearest with ties away from zero, exactly roundf.
      const int32x4_t q0 = vcvtaq_s32_f32(vmulq_n_f32(v[g], id));
      const int32x4_t q1 = vcvtaq_s32_f32(vmulq_n_f32(v[g + 1], id));
      vst1_s8(y[b].qs + 4 * g, vqmovn_s16(vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1))));
    }
  }
}

// Integer dot product of one block pair. Each int16 lane holds two products;
// with a in [-127, 127] their sum stays within 2*127*128 = 32512.
inline int32_t block_dot(const BlockQ8_0& a, const BlockQ8_0& b) {
  const int8x16_t a0 = vld1q_s8(a.qs), a1 = vld1q_s8(a.qs + 16);
  const int8x16_t b0 = vld1q_s8(b.qs), b1 = vld1q_s8(b.qs + 16);
  int16x8_t p0 = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
  p0 = vmlal_s8(p0, vget_high_s8(a0), vget_high_s8(b0));
  int16x8_t p1 = vmull_s8(vget_low_s8(a1), vget_low_s8(b1));
  p1 = vmlal_s8(p1, vget_high_s8(a1), vget_high_s8(b1));
  return vaddvq_s32(vpadalq_s16(vpaddlq_s16(p0), p1));
}

// One A row against up to 4 B rows, so each A block is loaded once for four
// outputs; the float accumulation order matches the reference.
template <int NR>
void q8_tile(const BlockQ8_0* a, const BlockQ8_0* B, size_t ldb, float* c, size_t nb) {
  float s[NR] = {};
  for (size_t blk = 0; blk < nb; ++blk) {
    const float da = fp16_to_fp32(a[blk].d);
    for (int j = 0; j < NR; ++j) {
      const BlockQ8_0& bb = B[j * ldb + blk];
      s[j] += da * fp16_to_fp32(bb.d) * (float)block_dot(a[blk], bb);
    }
  }
  for (int j = 0; j < NR; ++j) c[j] = s[j];
}

void gemm_q8_0_nt(const BlockQ8_0* A, size_t lda_blocks, const BlockQ8_0* B, size_t ldb_blocks, float* C,
                  size_t ldc, size_t m, size_t n, size_t k) {
  const size_t nb = k / QK8_0;
  for (size_t i = 0; i < m; ++i) {
    const BlockQ8_0* a = A + i * lda_blocks;
    float* c = C + i * ldc;
    size_t j = 0;
    for (; j + 4 <= n; j += 4) q8_tile<4>(a, B + j * ldb_blocks, ldb_blocks, c + j, nb);
    switch (n - j) {
      case 3: q8_tile<3>(a, B + j * ldb_blocks, ldb_blocks, c + j, nb); break;
      case 2: q8_tile<2>(a, B + j * ldb_blocks, ldb_blocks, c + j, nb); break;
      case 1: q8_tile<1>(a, B + j * ldb_blocks, ldb_blocks, c + j, nb); break;
      default: break;
    }
  }
}

}  // namespace

const Kernels* kernels_neon() {
  static const Kernels k = [] {
    // int16 activations keep the scalar reference: nothing here has been measured on an ARM
    // machine yet, and embedding loads are x86 first.
    Kernels t = kernels_scalar();
    t.name = "neon";
    t.dot_f32 = dot_f32;
    t.gemm_f32_nt = gemm_f32_nt;
    t.quantize_row_q8_0 = quantize_row_q8_0;
    t.gemm_q8_0_nt = gemm_q8_0_nt;
    t.row_to_f32[(size_t)DType::F16] = row_to_f32_f16;
    t.row_to_f32[(size_t)DType::BF16] = row_to_f32_bf16;
    set_block_dequantizers(t);
    return t;
  }();
  return &k;
}

}  // namespace embedq

#endif  // EMBEDQ_ARM
