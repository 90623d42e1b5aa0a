// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; reached only
// after dispatch.cpp has checked the CPU).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "kernels/tiling.h"

#if defined(EMBEDQ_X86)
#include <immintrin.h>

#include <cstring>

namespace embedq {
namespace {

// Lanes past the end of a row are loaded through a mask rather than read: the
// mask form never touches (or faults on) memory beyond the row.
inline __m256i tail_mask(size_t r) {  // r in [1, 7]
  static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - r));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// {sum(a), sum(b), sum(c), sum(d)}: one reduction tree for four outputs is
// cheaper than four separate ones, and the result is a contiguous C row slice.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

template <int NR>
inline void store_row(float* c, __m128 s) {
  if (NR == 4) {
    _mm_storeu_ps(c, s);
  } else {
    alignas(16) float t[4];
    _mm_store_ps(t, s);
    for (int j = 0; j < NR; ++j) c[j] = t[j];
  }
}

float dot_f32(const float* a, const float* b, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  size_t i = 0;
  // Four chains hide the FMA latency.
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

void row_to_f32_f16(const void* src_v, float* dst, size_t n) {
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  if (i < n) {
    // The tail also goes through F16C so NaN payloads match the rest of the row.
    alignas(16) uint16_t h[8] = {0};
    alignas(32) float f[8];
    for (size_t t = 0; t < n - i; ++t) h[t] = src[i + t];
    _mm256_store_ps(f, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h))));
    for (size_t t = 0; t < n - i; ++t) dst[i + t] = f[t];
  }
}

void row_to_f32_bf16(const void* src_v, float* dst, size_t n) {
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

// 8 signed bytes -> 8 floats, times s (minus m).
template <bool kMin>
inline void emit8(__m128i q, float* y, __m256 s, __m256 m) {
  __m256 v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
  if (kMin) v = _mm256_sub_ps(v, m);
  _mm256_storeu_ps(y, v);
}

template <bool kMin>
inline void emit32(__m256i q, float* y, float s0, float s1, float m0, float m1) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m256 vs0 = _mm256_set1_ps(s0), vs1 = _mm256_set1_ps(s1);
  const __m256 vm0 = _mm256_set1_ps(m0), vm1 = _mm256_set1_ps(m1);
  emit8<kMin>(lo, y, vs0, vm0);
  emit8<kMin>(_mm_srli_si128(lo, 8), y + 8, vs0, vm0);
  emit8<kMin>(hi, y + 16, vs1, vm1);
  emit8<kMin>(_mm_srli_si128(hi, 8), y + 24, vs1, vm1);
}

#include "kernels/dequant_x86.h"

using tiling::gemm_grid;

template <int mr>
inline void zero(__m256 (&acc)[mr][4]) {
#pragma GCC unroll 8
  for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm256_setzero_ps();
}

// Accumulator arrays are always 4 wide so a row reduces with one hsum4; the
// unused ones stay zero and the compiler drops them.
template <int mr, int nr>
inline void store_tile(float* C, size_t ldc, const __m256 (&acc)[mr][4]) {
#pragma GCC unroll 8
  for (int i = 0; i < mr; ++i)
    store_row<nr>(C + i * ldc, hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
}

// --- f32 GEMM -------------------------------------------------------------
// Dot-product micro-kernel: MR*NR vector accumulators along k, reduced once
// at the end. With 16 ymm registers 3x4 (12 accumulators + 3 A + the B
// operand) is the largest tile that does not spill.
struct F32Tile {
  using Elem = float;
  static constexpr int MR = 3, NR = 4;

  template <int mr, int nr>
  static void run(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc, size_t k) {
    __m256 acc[mr][4];
    zero(acc);
    size_t kk = 0;
    for (; kk + 8 <= k; kk += 8) {
      __m256 b[nr];
#pragma GCC unroll 4
      for (int j = 0; j < nr; ++j) b[j] = _mm256_loadu_ps(B + j * ldb + kk);
#pragma GCC unroll 8
      for (int i = 0; i < mr; ++i) {
        const __m256 a = _mm256_loadu_ps(A + i * lda + kk);
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) acc[i][j] = _mm256_fmadd_ps(a, b[j], acc[i][j]);
      }
    }
    if (kk < k) {
      const __m256i m = tail_mask(k - kk);
      __m256 b[nr];
#pragma GCC unroll 4
      for (int j = 0; j < nr; ++j) b[j] = _mm256_maskload_ps(B + j * ldb + kk, m);
#pragma GCC unroll 8
      for (int i = 0; i < mr; ++i) {
        const __m256 a = _mm256_maskload_ps(A + i * lda + kk, m);
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) acc[i][j] = _mm256_fmadd_ps(a, b[j], acc[i][j]);
      }
    }
    store_tile<mr, nr>(C, ldc, acc);
  }
};

void gemm_f32_nt(const float* A, size_t lda, const float* B, size_t ldb, float* C, size_t ldc,
                 size_t m, size_t n, size_t k) {
  gemm_grid<F32Tile>(A, lda, B, ldb, C, ldc, m, n, k);
}

// --- Q8_0 -----------------------------------------------------------------

// roundf semantics (halfway cases away from zero); _mm256_round_ps only offers
// ties-to-even, which would make blocks differ from the reference.
inline __m256 round_half_away(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));  // exact
  const __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
  const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, size_t k) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  // packs_epi32/packs_epi16 interleave 128-bit lanes; this restores element order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (size_t b = 0; b < k / QK8_0; ++b) {
    const float* xb = x + b * QK8_0;
    __m256 v[4];
    for (int g = 0; g < 4; ++g) v[g] = _mm256_loadu_ps(xb + 8 * g);
    const __m256 m8 = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                    _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int g = 0; g < 4; ++g) q[g] = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v[g], vid)));
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), _mm256_permutevar8x32_epi32(p, order));
  }
}

// Integer dot of one block pair, as 8 partial int32 sums. maddubs wants one
// unsigned operand, so |b| is paired with a carrying b's sign. Taking the
// absolute value of B (not A) keeps a weight of -128 exact: |-128| = 128 fits
// u8, and a (in [-127, 127]) never overflows when negated. Pair sums stay
// below 2*128*127 = 32512, so the int16 stage cannot saturate.
inline __m256i block_dot(__m256i b_abs, __m256i b, __m256i a) {
  const __m256i p16 = _mm256_maddubs_epi16(b_abs, _mm256_sign_epi8(a, b));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// 2 A rows x 4 B rows. The per-pair work (sign, maddubs, madd, convert,
// scale, FMA) dominates, so 3x4 and 3x3 measure the same and 2x3 or 4x2 a
// little slower; 2x4 spills least.
struct Q8Tile {
  using Elem = BlockQ8_0;
  static constexpr int MR = 2, NR = 4;

  template <int mr, int nr>
  static void run(const BlockQ8_0* A, size_t lda, const BlockQ8_0* B, size_t ldb, float* C, size_t ldc,
                  size_t nb) {
    __m256 acc[mr][4];
    zero(acc);
    for (size_t blk = 0; blk < nb; ++blk) {
      __m256i bq[nr], babs[nr];
      __m256 bd[nr];
#pragma GCC unroll 4
      for (int j = 0; j < nr; ++j) {
        const BlockQ8_0& bb = B[j * ldb + blk];
        bq[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bb.qs));
        babs[j] = _mm256_abs_epi8(bq[j]);
        bd[j] = _mm256_set1_ps(_cvtsh_ss(bb.d));
      }
#pragma GCC unroll 8
      for (int i = 0; i < mr; ++i) {
        const BlockQ8_0& ab = A[i * lda + blk];
        const __m256i aq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab.qs));
        const __m256 ad = _mm256_set1_ps(_cvtsh_ss(ab.d));
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) {
          const __m256 s = _mm256_cvtepi32_ps(block_dot(babs[j], bq[j], aq));
          acc[i][j] = _mm256_fmadd_ps(s, _mm256_mul_ps(ad, bd[j]), acc[i][j]);
        }
      }
    }
    store_tile<mr, nr>(C, ldc, acc);
  }
};

void gemm_q8_0_nt(const BlockQ8_0* A, size_t lda_blocks, const BlockQ8_0* B, size_t ldb_blocks,
                  float* C, size_t ldc, size_t m, size_t n, size_t k) {
  gemm_grid<Q8Tile>(A, lda_blocks, B, ldb_blocks, C, ldc, m, n, k / QK8_0);
}


// --- int16 activations ------------------------------------------------------

void quantize_row_i16(const float* x, int16_t* q, float* d, size_t k) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i lo = _mm256_set1_epi32(-(int)kI16Max), hi = _mm256_set1_epi32((int)kI16Max);
  for (size_t b = 0; b < k / QK8_0; ++b) {
    const float* xb = x + b * QK8_0;
    __m256 v[4];
    for (int g = 0; g < 4; ++g) v[g] = _mm256_loadu_ps(xb + 8 * g);
    const __m256 m8 = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                    _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    // x - x is 0 for finite x and NaN otherwise (max_ps alone can drop a NaN).
    const __m256 nf = _mm256_add_ps(_mm256_add_ps(_mm256_sub_ps(v[0], v[0]), _mm256_sub_ps(v[1], v[1])),
                                    _mm256_add_ps(_mm256_sub_ps(v[2], v[2]), _mm256_sub_ps(v[3], v[3])));
    const bool finite = _mm256_movemask_ps(_mm256_cmp_ps(nf, nf, _CMP_UNORD_Q)) == 0;
    __m256i* qb = reinterpret_cast<__m256i*>(q + b * QK8_0);
    if (!finite || !(amax >= kI16MinAmax)) {
      _mm256_storeu_si256(qb, _mm256_setzero_si256());
      _mm256_storeu_si256(qb + 1, _mm256_setzero_si256());
      d[b] = finite ? 0.0f : NAN;
      continue;
    }
    // cvtps rounds ties to even under the default MXCSR, like the reference's
    // nearbyint; the clamp (done in int32, same result) bounds an ulp overshoot.
    const __m256 vid = _mm256_set1_ps(kI16Max / amax);
    __m256i iq[4];
    for (int g = 0; g < 4; ++g)
      iq[g] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[g], vid)), lo), hi);
    // packs interleaves 128-bit lanes; the permute restores element order.
    _mm256_storeu_si256(qb, _mm256_permute4x64_epi64(_mm256_packs_epi32(iq[0], iq[1]), 0xd8));
    _mm256_storeu_si256(qb + 1, _mm256_permute4x64_epi64(_mm256_packs_epi32(iq[2], iq[3]), 0xd8));
    d[b] = amax / kI16Max;
  }
}

void pack_q8_0_i16(const BlockQ8_0* W, size_t ldw_blocks, size_t rows, size_t k, int16_t* q, float* d) {
  const size_t nb = k / QK8_0;
  for (size_t g = 0; g < i16_groups(rows); ++g)
    for (size_t b = 0; b < nb; ++b) {
      // Pair p of row l goes to lane l of vector p (kernels.h): a transpose of
      // 32-bit pairs through memory, cheap next to the GEMM that reuses it.
      int32_t* qb = reinterpret_cast<int32_t*>(q + (g * nb + b) * kI16Group * QK8_0);
      float* db = d + (g * nb + b) * kI16Group;
      for (size_t l = 0; l < kI16Group; ++l) {
        const size_t row = g * kI16Group + l;
        if (row >= rows) {
          db[l] = 0.0f;
          for (int p = 0; p < QK8_0 / 2; ++p) qb[p * kI16Group + l] = 0;
          continue;
        }
        const BlockQ8_0& src = W[row * ldw_blocks + b];
        db[l] = _cvtsh_ss(src.d);
        alignas(32) int32_t pairs[QK8_0 / 2];
        const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src.qs));
        const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src.qs + 16));
        _mm256_store_si256(reinterpret_cast<__m256i*>(pairs), _mm256_cvtepi8_epi16(lo));
        _mm256_store_si256(reinterpret_cast<__m256i*>(pairs + 8), _mm256_cvtepi8_epi16(hi));
        for (int p = 0; p < QK8_0 / 2; ++p) qb[p * kI16Group + l] = pairs[p];
      }
    }
}

// mr activation rows x one group of 16 columns (two ymm halves). Per block,
// 16 steps of: broadcast an activation pair, vpmaddwd against each half,
// add into int32 accumulators; then a conversion, a multiply and an FMA per
// accumulator apply the block's weight scales times the row's block scale. 3 rows: 6 int32 + 6 f32 accumulators,
// 2 weight halves and the broadcast fill 15 of the 16 registers.
template <int mr>
void i16_tile(const int16_t* A, size_t lda, const float* ad, size_t ldad, const int16_t* Bq, const float* Bd,
              size_t nb, float* C, size_t ldc, size_t cols) {
  __m256 acc[mr][2];
#pragma GCC unroll 4
  for (int i = 0; i < mr; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (size_t b = 0; b < nb; ++b) {
    __m256i iacc[mr][2];
#pragma GCC unroll 4
    for (int i = 0; i < mr; ++i) iacc[i][0] = iacc[i][1] = _mm256_setzero_si256();
    const int16_t* bq = Bq + b * kI16Group * QK8_0;
#pragma GCC unroll 16
    for (int p = 0; p < QK8_0 / 2; ++p) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bq + p * 2 * kI16Group));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bq + p * 2 * kI16Group + 16));
#pragma GCC unroll 4
      for (int i = 0; i < mr; ++i) {
        int32_t pair;
        std::memcpy(&pair, A + i * lda + b * QK8_0 + 2 * p, sizeof pair);
        const __m256i a = _mm256_set1_epi32(pair);
        iacc[i][0] = _mm256_add_epi32(iacc[i][0], _mm256_madd_epi16(a, w0));
        iacc[i][1] = _mm256_add_epi32(iacc[i][1], _mm256_madd_epi16(a, w1));
      }
    }
    const __m256 d0 = _mm256_loadu_ps(Bd + b * kI16Group), d1 = _mm256_loadu_ps(Bd + b * kI16Group + 8);
#pragma GCC unroll 4
    for (int i = 0; i < mr; ++i) {
      const __m256 s = _mm256_broadcast_ss(ad + i * ldad + b);
      acc[i][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i][0]), _mm256_mul_ps(d0, s), acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i][1]), _mm256_mul_ps(d1, s), acc[i][1]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < mr; ++i) {
    float* c = C + i * ldc;
    if (cols == kI16Group) {
      _mm256_storeu_ps(c, acc[i][0]);
      _mm256_storeu_ps(c + 8, acc[i][1]);
    } else {
      alignas(32) float t[16];
      _mm256_store_ps(t, acc[i][0]);
      _mm256_store_ps(t + 8, acc[i][1]);
      for (size_t j = 0; j < cols; ++j) c[j] = t[j];
    }
  }
}

void gemm_i16_nt(const int16_t* A, size_t lda, const float* ad, size_t ldad, const int16_t* Bq, const float* Bd,
                 float* C, size_t ldc, size_t m, size_t n, size_t k) {
  const size_t nb = k / QK8_0;
  for (size_t g = 0; g < i16_groups(n); ++g) {
    const size_t c0 = g * kI16Group, cols = std::min(n - c0, kI16Group);
    const int16_t* bq = Bq + g * nb * kI16Group * QK8_0;
    const float* bd = Bd + g * nb * kI16Group;
    size_t i = 0;
    for (; i + 3 <= m; i += 3)
      i16_tile<3>(A + i * lda, lda, ad + i * ldad, ldad, bq, bd, nb, C + i * ldc + c0, ldc, cols);
    if (m - i == 2) i16_tile<2>(A + i * lda, lda, ad + i * ldad, ldad, bq, bd, nb, C + i * ldc + c0, ldc, cols);
    if (m - i == 1) i16_tile<1>(A + i * lda, lda, ad + i * ldad, ldad, bq, bd, nb, C + i * ldc + c0, ldc, cols);
  }
}

}  // namespace

const Kernels* kernels_avx2() {
  static const Kernels k = [] {
    Kernels t = kernels_scalar();
    t.name = "avx2";
    t.dot_f32 = dot_f32;
    t.gemm_f32_nt = gemm_f32_nt;
    t.quantize_row_q8_0 = quantize_row_q8_0;
    t.gemm_q8_0_nt = gemm_q8_0_nt;
    t.quantize_row_i16 = quantize_row_i16;
    t.pack_q8_0_i16 = pack_q8_0_i16;
    t.gemm_i16_nt = gemm_i16_nt;
    t.row_to_f32[(size_t)DType::F16] = row_to_f32_f16;
    t.row_to_f32[(size_t)DType::BF16] = row_to_f32_bf16;
    set_block_dequantizers(t);  // F32 keeps the scalar memcpy
    return t;
  }();
  return &k;
}

}  // namespace embedq

#endif  // EMBEDQ_X86
