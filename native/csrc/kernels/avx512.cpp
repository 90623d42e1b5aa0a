// AVX-512 (F, BW, VL, DQ) kernels. Compiled with those flags plus AVX2/FMA/
// F16C; reached only after dispatch.cpp has checked the CPU and the OS.
#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/tiling.h"

#if defined(EMBEDQ_X86)
// GCC 12's AVX-512 headers make "undefined" vectors by self-initialisation,
// which -W(maybe-)uninitialized then reports inside inlined intrinsics (GCC
// PR 105593, fixed in 12.3). The pragmas have to precede the header the
// warnings point into.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>

namespace embedq {
namespace {

inline __mmask16 tail_mask16(size_t r) { return (__mmask16)((1u << r) - 1u); }  // r in [0, 16]

// {sum(a), sum(b), sum(c), sum(d)} with one shared reduction tree (13 ops for
// four outputs instead of ~7 each), landing as a contiguous slice of a C row.
inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 abcd = _mm512_add_ps(
      _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
      _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm512_extractf32x8_ps(abcd, 1));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Reduces NR accumulators of one output row and stores them, four at a time.
template <int NR>
inline void store_row(float* c, const __m512* acc) {
  const __m512 z = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int j0 = 0; j0 < NR; j0 += 4) {
    const int left = NR - j0;
    const __mmask8 m = (__mmask8)((1u << (left < 4 ? left : 4)) - 1u);
    const __m128 s = hsum4(acc[j0], left > 1 ? acc[j0 + 1] : z, left > 2 ? acc[j0 + 2] : z,
                           left > 3 ? acc[j0 + 3] : z);
    _mm_mask_storeu_ps(c + j0, m, s);
  }
}

float dot_f32(const float* a, const float* b, size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {  // four chains hide the FMA latency
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    // Masked lanes are not read, so this never touches memory past the row.
    const __mmask16 m = tail_mask16(n - i);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

void row_to_f32_f16(const void* src_v, float* dst, size_t n) {
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  if (i < n) {
    const __mmask16 m = tail_mask16(n - i);
    const __m256i h = _mm256_maskz_loadu_epi16(m, src + i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(h));
  }
}

void row_to_f32_bf16(const void* src_v, float* dst, size_t n) {
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  if (i < n) {
    const __mmask16 m = tail_mask16(n - i);
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src + i));
    _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
}

// 16 signed bytes -> 16 floats, times s (minus m).
template <bool kMin>
inline void emit16(__m128i q, float* y, float s, float m) {
  __m512 v = _mm512_mul_ps(_mm512_set1_ps(s), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
  if (kMin) v = _mm512_sub_ps(v, _mm512_set1_ps(m));
  _mm512_storeu_ps(y, v);
}

template <bool kMin>
inline void emit32(__m256i q, float* y, float s0, float s1, float m0, float m1) {
  emit16<kMin>(_mm256_castsi256_si128(q), y, s0, m0);
  emit16<kMin>(_mm256_extracti128_si256(q, 1), y + 16, s1, m1);
}

#include "kernels/dequant_x86.h"

using tiling::gemm_grid;

// --- f32 GEMM -------------------------------------------------------------
// Dot-product micro-kernel with MR*NR zmm accumulators along k, reduced once
// per tile. 6x4 uses 24 accumulators plus 4 B vectors and one A vector (29 of
// 32 registers): 10 loads feed 24 FMAs, so the loop is FMA-bound. (4x6
// measures the same; 8x3 and 3x8 are much slower.)
struct F32Tile {
  using Elem = float;
  static constexpr int MR = 6, NR = 4;

  template <int mr, int nr>
  static void run(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc, size_t k) {
    __m512 acc[mr][nr];
#pragma GCC unroll 8
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) acc[i][j] = _mm512_setzero_ps();
    size_t kk = 0;
    for (; kk + 16 <= k; kk += 16) {
      __m512 b[nr];
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) b[j] = _mm512_loadu_ps(B + j * ldb + kk);
#pragma GCC unroll 8
      for (int i = 0; i < mr; ++i) {
        const __m512 a = _mm512_loadu_ps(A + i * lda + kk);
#pragma GCC unroll 8
        for (int j = 0; j < nr; ++j) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
      }
    }
    if (kk < k) {
      const __mmask16 m = tail_mask16(k - kk);
      __m512 b[nr];
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) b[j] = _mm512_maskz_loadu_ps(m, B + j * ldb + kk);
#pragma GCC unroll 8
      for (int i = 0; i < mr; ++i) {
        const __m512 a = _mm512_maskz_loadu_ps(m, A + i * lda + kk);
#pragma GCC unroll 8
        for (int j = 0; j < nr; ++j) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; ++i) store_row<nr>(C + i * ldc, acc[i]);
  }
};

void gemm_f32_nt(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc,
                 size_t m, size_t n, size_t k) {
  gemm_grid<F32Tile>(A, lda, B, ldb, C, ldc, m, n, k);
}

// --- Q8_0 -----------------------------------------------------------------

// roundf semantics (halfway cases away from zero), which no single rounding
// mode provides: truncate, then step away from zero when the dropped
// fraction (computed exactly) is at least one half.
inline __m512 round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
  return _mm512_mask_add_ps(t, up, t, one);
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t k) {
  for (size_t b = 0; b < k / QK8_0; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * QK8_0), v1 = _mm512_loadu_ps(x + b * QK8_0 + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    // Same fp32 arithmetic as the reference, so the blocks are bit-identical.
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(v0, vid)));
    const __m512i q1 = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(v1, vid)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
  }
}

// Two consecutive blocks of a row in one zmm (the low half holds the first);
// with ONE = true only the first exists and the high half is zero.
template <bool ONE>
inline __m512i load_qs(const BlockQ8_0* p) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[0].qs));
  if (ONE) return _mm512_inserti64x4(_mm512_setzero_si512(), lo, 0);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[1].qs)), 1);
}

// The matching scales, each broadcast over the 8 int32 partial sums of its
// block: both fp16 values go through one conversion and one permute. With
// ONE the second value is 0 (the load's upper half), zeroing the high lanes.
template <bool ONE>
inline __m512 load_d(const BlockQ8_0* p) {
  const uint32_t pair = ONE ? p[0].d : (uint32_t)p[0].d | (uint32_t)p[1].d << 16;
  const __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128((int)pair));
  const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(d));
}

template <int mr, int nr>
inline void zero(__m512 (&acc)[mr][nr]) {
#pragma GCC unroll 8
  for (int i = 0; i < mr; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < nr; ++j) acc[i][j] = _mm512_setzero_ps();
}

template <int mr, int nr>
inline void store_tile(float* C, size_t ldc, const __m512 (&acc)[mr][nr]) {
#pragma GCC unroll 8
  for (int i = 0; i < mr; ++i) store_row<nr>(C + i * ldc, acc[i]);
}

// Both Q8_0 tiles walk the blocks two at a time (one zmm per row), then a
// lone last block. The block loop is repeated in each rather than shared: a
// shared template would lack the VNNI target and could not inline its step.

// Without VNNI: maddubs needs an unsigned operand, so |b| is paired with a
// carrying b's sign. Using |b| rather than |a| keeps a weight of -128 exact
// (128 fits u8) while a, in [-127, 127], never overflows when negated. Pair
// sums stay below 2*128*127 = 32512, so the int16 stage cannot saturate.
// 4x4: 16 accumulators plus |b|, scale and sign mask (a k register) per B row.
struct Q8Tile {
  using Elem = BlockQ8_0;
  static constexpr int MR = 4, NR = 4;

  template <int mr, int nr, bool ONE>
  static inline void step(const BlockQ8_0* A, size_t lda, const BlockQ8_0* B, size_t ldb,
                          __m512 (&acc)[mr][nr]) {
    const __m512i ones = _mm512_set1_epi16(1);
    __m512i babs[nr];
    __mmask64 bneg[nr];
    __m512 bd[nr];
#pragma GCC unroll 8
    for (int j = 0; j < nr; ++j) {
      const __m512i bq = load_qs<ONE>(B + j * ldb);
      babs[j] = _mm512_abs_epi8(bq);
      bneg[j] = _mm512_movepi8_mask(bq);
      bd[j] = load_d<ONE>(B + j * ldb);
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; ++i) {
      const __m512i aq = load_qs<ONE>(A + i * lda);
      const __m512 ad = load_d<ONE>(A + i * lda);
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) {
        const __m512i a_signed = _mm512_mask_sub_epi8(aq, bneg[j], _mm512_setzero_si512(), aq);
        const __m512i isum = _mm512_madd_epi16(_mm512_maddubs_epi16(babs[j], a_signed), ones);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(ad, bd[j]), acc[i][j]);
      }
    }
  }

  template <int mr, int nr>
  static void run(const BlockQ8_0* A, size_t lda, const BlockQ8_0* B, size_t ldb, float* C, size_t ldc,
                  size_t nb) {
    __m512 acc[mr][nr];
    zero(acc);
    size_t blk = 0;
    for (; blk + 2 <= nb; blk += 2) step<mr, nr, false>(A + blk, lda, B + blk, ldb, acc);
    if (blk < nb) step<mr, nr, true>(A + blk, lda, B + blk, ldb, acc);
    store_tile(C, ldc, acc);
  }
};

void gemm_q8_0_nt(const BlockQ8_0* A, size_t lda_blocks, const BlockQ8_0* B, size_t ldb_blocks,
                  float* C, size_t ldc, size_t m, size_t n, size_t k) {
  gemm_grid<Q8Tile>(A, lda_blocks, B, ldb_blocks, C, ldc, m, n, k / QK8_0);
}

// With AVX512-VNNI, vpdpbusd multiplies u8 by s8 and adds groups of four
// straight into int32, so no int16 stage can saturate and a cheaper trick
// works: a + 128 (a ^ 0x80) is unsigned, and sum((a + 128) b) - 128 sum(b)
// is the dot product. The correction depends on B alone, so it is computed
// once per B row and serves as the accumulator's starting value: one
// instruction per block pair, any int8 values on both sides. These functions
// carry their own target so only they may use VNNI; dispatch.cpp offers
// this set only when the CPU has it.
#define EMBEDQ_VNNI __attribute__((target("avx512vnni")))

// 4x4 needs 33 registers, so GCC keeps three accumulators on the stack;
// still faster than 3x4 (no spills, more B preparation per output). 6x4 and
// 8x4 gain another 3-5% on Zen 4 purely by spilling more, which is not worth
// betting on for other CPUs.
struct Q8TileVnni {
  using Elem = BlockQ8_0;
  static constexpr int MR = 4, NR = 4;

  template <int mr, int nr, bool ONE>
  EMBEDQ_VNNI static inline void step(const BlockQ8_0* A, size_t lda, const BlockQ8_0* B, size_t ldb,
                                      __m512 (&acc)[mr][nr]) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512i bq[nr], bcorr[nr];
    __m512 bd[nr];
#pragma GCC unroll 8
    for (int j = 0; j < nr; ++j) {
      bq[j] = load_qs<ONE>(B + j * ldb);
      bcorr[j] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                  _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, bq[j]));
      bd[j] = load_d<ONE>(B + j * ldb);
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; ++i) {
      const __m512i au = _mm512_xor_si512(load_qs<ONE>(A + i * lda), bias);
      const __m512 ad = load_d<ONE>(A + i * lda);
#pragma GCC unroll 8
      for (int j = 0; j < nr; ++j) {
        const __m512i isum = _mm512_dpbusd_epi32(bcorr[j], au, bq[j]);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(ad, bd[j]), acc[i][j]);
      }
    }
  }

  template <int mr, int nr>
  EMBEDQ_VNNI static void run(const BlockQ8_0* A, size_t lda, const BlockQ8_0* B, size_t ldb, float* C,
                              size_t ldc, size_t nb) {
    __m512 acc[mr][nr];
    zero(acc);
    size_t blk = 0;
    for (; blk + 2 <= nb; blk += 2) step<mr, nr, false>(A + blk, lda, B + blk, ldb, acc);
    if (blk < nb) step<mr, nr, true>(A + blk, lda, B + blk, ldb, acc);
    store_tile(C, ldc, acc);
  }
};

void gemm_q8_0_nt_vnni(const BlockQ8_0* A, size_t lda_blocks, const BlockQ8_0* B, size_t ldb_blocks,
                       float* C, size_t ldc, size_t m, size_t n, size_t k) {
  gemm_grid<Q8TileVnni>(A, lda_blocks, B, ldb_blocks, C, ldc, m, n, k / QK8_0);
}


// --- int16 activations ------------------------------------------------------

void quantize_row_i16(const float* x, int16_t* q, float* d, size_t k) {
  const __m512i lo = _mm512_set1_epi32(-(int)kI16Max), hi = _mm512_set1_epi32((int)kI16Max);
  for (size_t b = 0; b < k / QK8_0; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * QK8_0), v1 = _mm512_loadu_ps(x + b * QK8_0 + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    // x - x is 0 for finite x and NaN otherwise (max_ps alone can drop a NaN).
    const __m512 nf = _mm512_add_ps(_mm512_sub_ps(v0, v0), _mm512_sub_ps(v1, v1));
    const bool finite = _mm512_cmp_ps_mask(nf, nf, _CMP_UNORD_Q) == 0;
    __m256i* qb = reinterpret_cast<__m256i*>(q + b * QK8_0);
    if (!finite || !(amax >= kI16MinAmax)) {
      _mm256_storeu_si256(qb, _mm256_setzero_si256());
      _mm256_storeu_si256(qb + 1, _mm256_setzero_si256());
      d[b] = finite ? 0.0f : NAN;
      continue;
    }
    // cvtps rounds ties to even under the default MXCSR, like the reference's
    // nearbyint; the clamp (done in int32, same result) bounds an ulp overshoot.
    const __m512 vid = _mm512_set1_ps(kI16Max / amax);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
    _mm256_storeu_si256(qb, _mm512_cvtepi32_epi16(_mm512_min_epi32(_mm512_max_epi32(q0, lo), hi)));
    _mm256_storeu_si256(qb + 1, _mm512_cvtepi32_epi16(_mm512_min_epi32(_mm512_max_epi32(q1, lo), hi)));
    d[b] = amax / kI16Max;
  }
}

// Packs each 16-row group block by block. Each row's block, widened to 32
// int16, is 16 int32 pairs; the packed layout (kernels.h) wants pair p of
// every row in vector p, a 16x16 transpose of 32-bit elements, done in
// registers: 32-bit and 64-bit unpacks transpose 4x4 tiles inside each
// 128-bit lane, then two rounds of 128-bit shuffles transpose the lanes.
void pack_q8_0_i16(const BlockQ8_0* W, size_t ldw_blocks, size_t rows, size_t k, int16_t* q, float* d) {
  const size_t nb = k / QK8_0;
  for (size_t g = 0; g < i16_groups(rows); ++g)
    for (size_t b = 0; b < nb; ++b) {
      __m512i r[kI16Group];
      float* db = d + (g * nb + b) * kI16Group;
      for (size_t l = 0; l < kI16Group; ++l) {
        const size_t row = g * kI16Group + l;
        if (row >= rows) {
          r[l] = _mm512_setzero_si512();
          db[l] = 0.0f;
          continue;
        }
        const BlockQ8_0& src = W[row * ldw_blocks + b];
        r[l] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src.qs)));
        db[l] = _cvtsh_ss(src.d);
      }
      __m512i t[kI16Group], u[kI16Group];
      for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
      }
      // u[4a + c], 128-bit lane L: rows 4a..4a+3 of column 4L + c.
      for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
      }
      __m512i* out = reinterpret_cast<__m512i*>(q + (g * nb + b) * kI16Group * QK8_0);
      for (int c = 0; c < 4; ++c) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 2, 3, 2));
        _mm512_storeu_si512(out + c, _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_si512(out + 4 + c, _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm512_storeu_si512(out + 8 + c, _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_si512(out + 12 + c, _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1)));
      }
    }
}

#define EMBEDQ_I16_NS i16_plain
#define EMBEDQ_I16_VNNI 0
#include "kernels/avx512_i16.inc"
#undef EMBEDQ_I16_NS
#undef EMBEDQ_I16_VNNI

#pragma GCC push_options
#pragma GCC target("avx512vnni")
#define EMBEDQ_I16_NS i16_vnni
#define EMBEDQ_I16_VNNI 1
#include "kernels/avx512_i16.inc"
#undef EMBEDQ_I16_NS
#undef EMBEDQ_I16_VNNI
#pragma GCC pop_options

}  // namespace

const Kernels* kernels_avx512() {
  static const Kernels k = [] {
    Kernels t = kernels_scalar();
    t.name = "avx512";
    t.dot_f32 = dot_f32;
    t.gemm_f32_nt = gemm_f32_nt;
    t.quantize_row_q8_0 = quantize_row_q8_0;
    t.gemm_q8_0_nt = gemm_q8_0_nt;
    t.quantize_row_i16 = quantize_row_i16;
    t.pack_q8_0_i16 = pack_q8_0_i16;
    t.gemm_i16_nt = i16_plain::gemm_i16_nt;
    t.row_to_f32[(size_t)DType::F16] = row_to_f32_f16;
    t.row_to_f32[(size_t)DType::BF16] = row_to_f32_bf16;
    set_block_dequantizers(t);  // F32 keeps the scalar memcpy
    return t;
  }();
  return &k;
}

// Same as "avx512" except for the VNNI integer GEMMs.
const Kernels* kernels_avx512vnni() {
  static const Kernels k = [] {
    Kernels t = *kernels_avx512();
    t.name = "avx512vnni";
    t.gemm_q8_0_nt = gemm_q8_0_nt_vnni;
    t.gemm_i16_nt = i16_vnni::gemm_i16_nt;
    t.prefer_i16 = true;  // VPDPWSSD: see Kernels::prefer_i16
    return t;
  }();
  return &k;
}

}  // namespace embedq

#endif  // EMBEDQ_X86
