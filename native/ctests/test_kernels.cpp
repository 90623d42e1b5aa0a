// Every kernel set this CPU supports is compared with the scalar reference on
// random data with awkward sizes; the scalar reference itself is checked
// against double-precision arithmetic. Prints "N passed, M failed" last.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "kernels/kernels.h"

using namespace embedq;

namespace {

std::mt19937 rng(12345);

float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }
int irand(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

std::vector<float> rand_vec(size_t n) {
  std::vector<float> v(n);
  for (float& x : v) x = uniform(-1.0f, 1.0f);
  return v;
}

// Same value, or both NaN: F16C quiets signalling NaNs and the portable
// converter keeps their bits, and both are correct conversions.
bool same_float(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return fp32_to_bits(a) == fp32_to_bits(b);
}

// Float sums in a different order differ by roughly sqrt(n) roundings of the
// magnitude sum. 8x headroom keeps the check stable, yet an average term
// (magnitude/n) is still over 10x the tolerance for every n tested, so a
// dropped or doubled element shows up.
double tolerance(double magnitude, size_t n) {
  return 8.0 * std::ldexp(1.0, -24) * (std::sqrt((double)n) + 4.0) * magnitude + 1e-30;
}

const size_t kF32Sizes[] = {1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 384, 1000};
const size_t kMN[] = {1, 2, 3, 5, 7, 13, 17, 31};
const size_t kBlockSizes[] = {32, 64, 96, 160, 384, 736, 1536, 3072};

// ---------------------------------------------------------------------------

void test_scalar_against_double() {
  const Kernels& s = kernels_scalar();
  for (size_t k : kF32Sizes) {
    const auto a = rand_vec(k), b = rand_vec(k);
    double ref = 0, mag = 0;
    for (size_t i = 0; i < k; ++i) {
      ref += (double)a[i] * b[i];
      mag += std::fabs((double)a[i] * b[i]);
    }
    const float got = s.dot_f32(a.data(), b.data(), k);
    // The reference sums sequentially, so its error bound is linear in k.
    CHECK_MSG(std::fabs(got - ref) <= 1.2e-7 * (double)(k + 1) * mag, "scalar dot_f32 k=%zu: %g vs %g", k,
          got, ref);
  }
  // The fp16 helpers against values whose encodings are known.
  struct { uint16_t h; float f; } cases[] = {
      {0x0000, 0.0f},        {0x8000, -0.0f},    {0x3c00, 1.0f},          {0xc000, -2.0f},
      {0x7bff, 65504.0f},    {0x0001, 5.9604644775390625e-08f},          {0x03ff, 6.097555160522461e-05f},
      {0x0400, 6.103515625e-05f}, {0x7c00, INFINITY}, {0xfc00, -INFINITY}, {0x3555, 0.333251953125f},
  };
  for (const auto& c : cases) {
    CHECK_MSG(same_float(fp16_to_fp32(c.h), c.f), "fp16_to_fp32(0x%04x)", c.h);
    CHECK_MSG(fp32_to_fp16(c.f) == c.h, "fp32_to_fp16(%g) = 0x%04x, want 0x%04x", c.f, fp32_to_fp16(c.f), c.h);
  }
  CHECK_MSG(std::isnan(fp16_to_fp32(0x7e00)) && std::isnan(fp16_to_fp32(0xfc01)), "fp16 NaN decodes to NaN");
  CHECK_MSG(fp32_to_fp16(65520.0f) == 0x7c00 && fp32_to_fp16(65519.0f) == 0x7bff, "fp16 overflow boundary");
  CHECK_MSG(fp32_to_fp16(2.98023223876953125e-08f) == 0x0000, "fp16 half of min subnormal rounds to even (0)");

  // Hand-worked Q8_0 block: amax 127 gives d = 1 exactly, so ties are exact.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = -1.5f;   // ties round away from zero: -2
  x[2] = 0.5f;    // 1
  x[3] = 2.5f;    // 3 (ties-to-even would give 2)
  x[4] = -0.49f;  // 0
  x[5] = -127.0f;
  BlockQ8_0 q;
  s.quantize_row_q8_0(x.data(), &q, 32);
  CHECK_MSG(q.d == 0x3c00 && q.qs[0] == 127 && q.qs[1] == -2 && q.qs[2] == 1 && q.qs[3] == 3 && q.qs[4] == 0 &&
            q.qs[5] == -127 && q.qs[6] == 0,
        "scalar quantize hand block");
  std::vector<float> zeros(64, 0.0f);
  BlockQ8_0 qz[2];
  std::memset(qz, 0x11, sizeof qz);
  s.quantize_row_q8_0(zeros.data(), qz, 64);
  bool all_zero = qz[0].d == 0 && qz[1].d == 0;
  for (int i = 0; i < QK8_0; ++i) all_zero = all_zero && qz[0].qs[i] == 0 && qz[1].qs[i] == 0;
  CHECK_MSG(all_zero, "scalar quantize of zeros gives d = 0, qs = 0");
}

// Each kernel against the scalar reference -----------------------------------

void test_dot(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  std::vector<size_t> sizes(std::begin(kF32Sizes), std::end(kF32Sizes));
  sizes.push_back(3072);
  for (size_t k : sizes) {
    const auto a = rand_vec(k), b = rand_vec(k);  // exact sizes: over-reads hit ASan redzones
    double mag = 0;
    for (size_t i = 0; i < k; ++i) mag += std::fabs((double)a[i] * b[i]);
    const float got = K.dot_f32(a.data(), b.data(), k), ref = R.dot_f32(a.data(), b.data(), k);
    CHECK_MSG(std::fabs((double)got - ref) <= tolerance(mag, k), "%s dot_f32 k=%zu: %.9g vs %.9g", K.name, k, got,
          ref);
  }
}

void test_f16(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  // Every half-precision value: subnormals, infinities, NaNs, the largest finite.
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = (uint16_t)i;
  for (int kind = 0; kind < 2; ++kind) {
    const size_t type = kind == 0 ? (size_t)DType::F16 : (size_t)DType::BF16;
    auto conv = K.row_to_f32[type];
    auto ref = R.row_to_f32[type];
    const char* what = kind == 0 ? "row_to_f32_f16" : "row_to_f32_bf16";
    std::vector<float> got(all.size()), want(all.size());
    conv(all.data(), got.data(), all.size());
    ref(all.data(), want.data(), all.size());
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < all.size(); ++i)
      if (!same_float(got[i], want[i]) && bad++ == 0) first = i;
    CHECK_MSG(bad == 0, "%s %s all 65536 values: %zu differ, first 0x%04zx", K.name, what, bad, first);
    // Short rows exercise the tail paths; the sentinel catches writes past n.
    for (size_t n = 1; n <= 19; ++n) {
      std::vector<uint16_t> src(n);
      for (auto& h : src) h = (uint16_t)irand(0, 65535);
      std::vector<float> g(n + 1, 12345.0f), w(n);
      conv(src.data(), g.data(), n);
      ref(src.data(), w.data(), n);
      bool ok = g[n] == 12345.0f;
      for (size_t i = 0; i < n; ++i) ok = ok && same_float(g[i], w[i]);
      CHECK_MSG(ok, "%s %s n=%zu", K.name, what, n);
    }
  }
}

uint16_t rand_scale_bits() {
  // Mostly ordinary scales, sometimes the awkward encodings.
  static const uint16_t edge[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7d01};
  if (irand(0, 3) == 0) return edge[irand(0, (int)(sizeof(edge) / sizeof(edge[0])) - 1)];
  return fp32_to_fp16(uniform(-0.1f, 0.1f));
}

// Every block type the loader admits, on random blocks: random quant bytes
// (every bit pattern is a valid block) and random scales, the extreme fp16
// encodings included. Rows of odd block counts, in buffers of exactly their
// size so that a read past the last block hits an ASan redzone, and a sentinel
// after the output catches writes past n.
void test_block_dequant(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  const DType types[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                         DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (DType t : types) {
    const DTypeInfo& info = *dtype_info((uint32_t)t);
    for (size_t nb : {1, 2, 3, 7, 13}) {
      std::vector<uint8_t> blocks(nb * info.block_bytes);
      for (auto& b : blocks) b = (uint8_t)irand(0, 255);
      for (size_t b = 0; b < nb; ++b)
        for (int s = 0; s < info.n_scales; ++s) {
          const uint16_t h = rand_scale_bits();
          std::memcpy(blocks.data() + b * info.block_bytes + info.scale_offset[s], &h, 2);
        }
      const size_t n = nb * info.block_elems;
      std::vector<float> got(n + 1, 777.0f), want(n);
      K.row_to_f32[(size_t)t](blocks.data(), got.data(), n);
      R.row_to_f32[(size_t)t](blocks.data(), want.data(), n);
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < n; ++i)
        if (!same_float(got[i], want[i]) && bad++ == 0) first = i;
      CHECK_MSG(bad == 0 && got[n] == 777.0f, "%s row_to_f32 %s blocks=%zu: %zu differ, first at %zu (%.9g vs %.9g)",
                K.name, info.name, nb, bad, first, got[first], want[first]);
    }
  }
}

// The table has an entry for exactly the types the loader admits.
void test_table_covers_supported_types(const Kernels& K) {
  for (uint32_t t = 0; t < 64; ++t) {
    const bool has = t < kDTypeSlots && K.row_to_f32[t] != nullptr;
    CHECK_MSG(has == dtype_supported(t), "%s row_to_f32[%u] (%s): entry %s, supported %s", K.name, t, dtype_name(t),
              has ? "set" : "null", dtype_supported(t) ? "yes" : "no");
  }
}

// Hand-worked blocks for the scalar reference itself, one per layout detail
// the SIMD comparison cannot see (both sides could share a misreading).
void test_scalar_block_layouts() {
  const Kernels& s = kernels_scalar();
  float y[QK_K];
  {  // Q5_0: element 17 = high nibble of byte 1 with bit 17 of qh; d = 0.5
    BlockQ5_0 b{};
    b.d = fp32_to_fp16(0.5f);
    b.qs[1] = 0x30;                  // element 1: 0, element 17: 3
    const uint32_t qh = 1u << 17;    // element 17 gains 16
    std::memcpy(b.qh, &qh, 4);
    s.row_to_f32[(size_t)DType::Q5_0](&b, y, QK5_0);
    CHECK_MSG(y[17] == 0.5f * (19 - 16) && y[1] == 0.5f * -16 && y[0] == -8.0f, "Q5_0 layout: %g %g", y[17], y[1]);
  }
  {  // Q4_K: sub-block 5 = high nibbles of bytes 64..95, scale/min from the packed upper bits
    BlockQ4_K b{};
    b.d = fp32_to_fp16(1.0f);
    b.dmin = fp32_to_fp16(1.0f);
    b.scales[9] = 0x21;              // sub-block 5: scale low bits 1, min low bits 2
    b.scales[1] = 0x40;              // scale high bits 1 -> scale 17
    b.scales[5] = 0x80;              // min high bits 2 -> min 34
    b.qs[64] = 0x70;                 // element 5*32 + 0: quant 7
    s.row_to_f32[(size_t)DType::Q4_K](&b, y, QK_K);
    CHECK_MSG(y[160] == 17.0f * 7 - 34 && y[161] == -34.0f, "Q4_K layout: %g %g", y[160], y[161]);
  }
  {  // Q6_K: element 128 + 96 + 3 = high nibble of ql[64 + 32 + 3], bits 6..7 of qh[32 + 3], scale 14
    BlockQ6_K b{};
    b.d = fp32_to_fp16(2.0f);
    b.ql[99] = 0xA0;
    b.qh[35] = 0xC0;
    b.scales[14] = -3;
    s.row_to_f32[(size_t)DType::Q6_K](&b, y, QK_K);
    CHECK_MSG(y[227] == 2.0f * -3 * ((10 | 3 << 4) - 32), "Q6_K layout: %g", y[227]);
  }
}

void test_quantize(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  // Per-block magnitudes spanning fp16 subnormal scales, ordinary ones, and
  // scales that overflow fp16 (stored as inf while fp32 rounding continues).
  const float scales[] = {0.0f, 1e-12f, 1e-7f, 3e-6f, 1e-3f, 1.0f, 127.0f, 1e3f, 1e6f, 8.3e6f, 1e9f, 1e30f};
  for (size_t nb : {1, 2, 5, 16, 96, 1000}) {
    const size_t k = nb * QK8_0;
    std::vector<float> x(k);
    for (size_t b = 0; b < nb; ++b) {
      const float s = scales[irand(0, (int)(sizeof(scales) / sizeof(scales[0])) - 1)];
      const int mode = irand(0, 3);
      // Mode 2: values at (j + 1/2) d, so x * id sits within an ulp or two of
      // a tie and any deviation from the reference's exact fp32 steps
      // (amax / 127, then 1 / d) flips some quants.
      const float tie_amax = std::ldexp(uniform(1.0f, 2.0f), irand(-20, 20));
      const float tie_d = tie_amax / 127.0f;
      for (int i = 0; i < QK8_0; ++i) {
        float v = uniform(-1.0f, 1.0f) * s;
        // amax 127 gives d = 1 exactly, so half-integers land exactly on ties.
        if (mode == 0) v = (float)irand(-126, 126) + (irand(0, 1) ? 0.5f : -0.5f);
        if (mode == 1 && i % 5 == 0) v = -0.0f;
        if (mode == 2) v = ((float)irand(-127, 126) + 0.5f) * tie_d;
        x[b * QK8_0 + i] = v;
      }
      if (mode == 0) x[b * QK8_0 + (size_t)irand(0, 31)] = irand(0, 1) ? 127.0f : -127.0f;
      if (mode == 2) x[b * QK8_0 + (size_t)irand(0, 31)] = irand(0, 1) ? tie_amax : -tie_amax;
    }
    std::vector<BlockQ8_0> got(nb + 1), want(nb);
    std::memset(got.data(), 0x5a, got.size() * sizeof(BlockQ8_0));
    K.quantize_row_q8_0(x.data(), got.data(), k);
    R.quantize_row_q8_0(x.data(), want.data(), k);
    size_t bad = 0;
    for (size_t b = 0; b < nb; ++b)
      bad += got[b].d != want[b].d || std::memcmp(got[b].qs, want[b].qs, QK8_0) != 0;
    CHECK_MSG(bad == 0 && got[nb].d == 0x5a5a, "%s quantize_row_q8_0 blocks=%zu: %zu blocks differ", K.name, nb, bad);
  }
}

void test_gemm_f32(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  for (size_t m : kMN)
    for (size_t n : kMN)
      for (size_t k : kF32Sizes) {
        // Strides wider than k; the last row ends exactly at the allocation.
        const size_t lda = k + 3, ldb = k + 5, ldc = n + 2;
        const auto A = rand_vec((m - 1) * lda + k), B = rand_vec((n - 1) * ldb + k);
        std::vector<float> C((m - 1) * ldc + n + 1, -999.0f), Cr(C.size(), -999.0f);
        K.gemm_f32_nt(A.data(), lda, B.data(), ldb, C.data(), ldc, m, n, k);
        R.gemm_f32_nt(A.data(), lda, B.data(), ldb, Cr.data(), ldc, m, n, k);
        bool ok = true;
        for (size_t i = 0; i < m && ok; ++i)
          for (size_t j = 0; j < ldc && ok; ++j) {
            const size_t at = i * ldc + j;
            if (at >= C.size()) break;
            if (j >= n) {  // padding between rows (and one past the end) stays untouched
              ok = C[at] == -999.0f;
              continue;
            }
            double mag = 0;
            for (size_t t = 0; t < k; ++t) mag += std::fabs((double)A[i * lda + t] * B[j * ldb + t]);
            ok = std::fabs((double)C[at] - Cr[at]) <= tolerance(mag, k);
            if (!ok) std::printf("  C[%zu,%zu] = %.9g, reference %.9g\n", i, j, C[at], Cr[at]);
          }
        CHECK_MSG(ok, "%s gemm_f32_nt m=%zu n=%zu k=%zu", K.name, m, n, k);
      }
}

// Weight-like Q8_0 rows: full int8 range (-128 included), ordinary scales.
std::vector<BlockQ8_0> rand_weights(size_t blocks) {
  std::vector<BlockQ8_0> w(blocks);
  for (auto& b : w) {
    b.d = fp32_to_fp16(uniform(-0.05f, 0.05f));
    if (irand(0, 15) == 0) b.d = 0x0001;  // subnormal scale
    for (auto& q : b.qs) q = (int8_t)irand(-128, 127);
    if (irand(0, 3) == 0) std::memset(b.qs, 0x80, 8);  // runs of -128 stress the sign trick
  }
  return w;
}

void test_gemm_q8(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  for (size_t m : kMN)
    for (size_t n : kMN)
      for (size_t k : kBlockSizes) {
        if (m * n * k > 400000 && !(m == 31 && n == 31)) continue;  // keep the sanitizer run short
        const size_t nb = k / QK8_0, lda = nb + 1, ldb = nb + 2, ldc = n + 1;
        // Activations come from the quantizer, so their quants stay in [-127, 127].
        const auto x = rand_vec(m * lda * QK8_0);
        std::vector<BlockQ8_0> A((m - 1) * lda + nb);
        for (size_t i = 0; i < m; ++i) R.quantize_row_q8_0(x.data() + i * lda * QK8_0, A.data() + i * lda, k);
        for (size_t i = 0; i < m; ++i)  // make sure the extreme quant actually occurs
          A[i * lda].qs[irand(0, 31)] = (int8_t)(irand(0, 1) ? 127 : -127);
        const auto B = rand_weights((n - 1) * ldb + nb);
        std::vector<float> C((m - 1) * ldc + n + 1, -999.0f), Cr(C.size(), -999.0f);
        K.gemm_q8_0_nt(A.data(), lda, B.data(), ldb, C.data(), ldc, m, n, k);
        R.gemm_q8_0_nt(A.data(), lda, B.data(), ldb, Cr.data(), ldc, m, n, k);
        bool ok = true;
        for (size_t i = 0; i < m && ok; ++i)
          for (size_t j = 0; j < ldc && ok; ++j) {
            const size_t at = i * ldc + j;
            if (at >= C.size()) break;
            if (j >= n) {
              ok = C[at] == -999.0f;
              continue;
            }
            double mag = 0, exact = 0;
            for (size_t b = 0; b < nb; ++b) {
              const BlockQ8_0 &qa = A[i * lda + b], &qb = B[j * ldb + b];
              const double s = (double)fp16_to_fp32(qa.d) * fp16_to_fp32(qb.d);
              long isum = 0, iabs = 0;
              for (int t = 0; t < QK8_0; ++t) {
                isum += qa.qs[t] * qb.qs[t];
                iabs += std::abs(qa.qs[t] * qb.qs[t]);
              }
              mag += std::fabs(s) * (double)iabs;
              exact += s * (double)isum;
            }
            ok = std::fabs((double)C[at] - Cr[at]) <= tolerance(mag, nb) &&
                 std::fabs((double)Cr[at] - exact) <= tolerance(mag, nb);
            if (!ok) std::printf("  C[%zu,%zu] = %.9g, reference %.9g, exact %.9g\n", i, j, C[at], Cr[at], exact);
          }
        CHECK_MSG(ok, "%s gemm_q8_0_nt m=%zu n=%zu k=%zu", K.name, m, n, k);
      }
}

// int16 activations ---------------------------------------------------------

// Rows (k a multiple of 32) mixing ordinary values, exact ties at the
// reference scale, zeros and outliers; blocks of very different magnitudes;
// and rows that are zero, below kI16MinAmax, near the top of the float range,
// or hold an inf or a NaN.
std::vector<float> rand_i16_row(size_t k, int mode) {
  std::vector<float> x(k);
  for (size_t i = 0; i < k; ++i) x[i] = uniform(-1.0f, 1.0f);
  if (mode == 1) {  // amax = kI16Max makes id = 1, so half-integers are exact ties
    for (size_t i = 0; i < k; ++i) x[i] = (float)irand(-32000, 32000) + (irand(0, 1) ? 0.5f : -0.5f);
    for (size_t b = 0; b < k / QK8_0; ++b) x[b * QK8_0 + (size_t)irand(0, 31)] = irand(0, 1) ? kI16Max : -kI16Max;
  }
  if (mode == 2) x[(size_t)irand(0, (int)k - 1)] = 900.0f;  // outlier: its block quantizes coarsely
  if (mode == 3) for (float& v : x) v = 0.0f;
  if (mode == 4) for (float& v : x) v *= 1e-31f;  // under kI16MinAmax
  if (mode == 5) for (float& v : x) v *= 3e38f;
  if (mode == 6) for (float& v : x) v *= 1e-29f;  // tiny but above the threshold
  if (mode == 7) x[(size_t)irand(0, (int)k - 1)] = irand(0, 1) ? INFINITY : -INFINITY;
  if (mode == 8) x[(size_t)irand(0, (int)k - 1)] = NAN;
  if (mode == 9)  // block magnitudes from 1e-31 (zero) to 1e6, a zero block included
    for (size_t i = 0; i < k; ++i) x[i] *= (i / QK8_0) % 5 == 2 ? 0.0f : std::pow(10.0f, (float)((i / QK8_0) % 13) * 3 - 31);
  return x;
}

void test_quantize_i16(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  for (size_t k : {32, 64, 96, 384, 1536}) {
    for (int mode = 0; mode <= 9; ++mode) {
      const auto x = rand_i16_row(k, mode);
      const size_t nb = k / QK8_0;
      std::vector<int16_t> got(k + 1, 0x5a5a), want(k);
      std::vector<float> dg(nb + 1, -7.0f), dw(nb);
      K.quantize_row_i16(x.data(), got.data(), dg.data(), k);
      R.quantize_row_i16(x.data(), want.data(), dw.data(), k);
      size_t bad = 0;
      for (size_t i = 0; i < k; ++i) bad += got[i] != want[i];
      for (size_t b = 0; b < nb; ++b) bad += !same_float(dg[b], dw[b]);
      CHECK_MSG(bad == 0 && got[k] == 0x5a5a && dg[nb] == -7.0f,
                "%s quantize_row_i16 k=%zu mode=%d: %zu quants or scales differ", K.name, k, mode, bad);
    }
  }
}

// The scalar quantizer against its definition: the bound, the error, ties.
void test_quantize_i16_reference() {
  const Kernels& s = kernels_scalar();
  for (int mode = 0; mode <= 9; ++mode) {
    const size_t k = 384, nb = k / QK8_0;
    const auto x = rand_i16_row(k, mode);
    std::vector<int16_t> q(k);
    std::vector<float> d(nb);
    s.quantize_row_i16(x.data(), q.data(), d.data(), k);
    bool ok = true;
    for (size_t b = 0; b < nb; ++b) {
      double amax = 0;
      bool finite = true;
      int qmax = 0;
      for (size_t i = b * QK8_0; i < (b + 1) * QK8_0; ++i) {
        amax = std::fmax(amax, std::fabs((double)x[i]));
        finite = finite && std::isfinite(x[i]);
        qmax = std::max(qmax, std::abs((int)q[i]));
      }
      if (!finite) {  // non-finite blocks poison their products
        ok = ok && std::isnan(d[b]) && qmax == 0;
      } else if (amax < kI16MinAmax) {
        ok = ok && d[b] == 0.0f && qmax == 0;
      } else {
        ok = ok && qmax == 32767 && std::fabs(d[b] - amax / 32767) <= 1e-6 * d[b];
        // Half a step of rounding plus the float arithmetic's few ulps.
        for (size_t i = b * QK8_0; i < (b + 1) * QK8_0; ++i)
          ok = ok && std::fabs((double)q[i] * d[b] - x[i]) <= 0.5 * d[b] * (1 + 1e-5) + amax * 1e-6;
      }
    }
    CHECK_MSG(ok, "scalar quantize_row_i16 mode=%d: error within half a step, |q| <= 32767 reached", mode);
  }
  // Ties go to even: with amax = 32767 the scale is 1.
  std::vector<float> x(32, 0.0f);
  x[0] = 32767.0f, x[1] = 2.5f, x[2] = -2.5f, x[3] = 3.5f, x[4] = -0.5f, x[5] = 1.5f;
  std::vector<int16_t> q(x.size());
  float d = 0;
  s.quantize_row_i16(x.data(), q.data(), &d, x.size());
  CHECK_MSG(d == 1.0f && q[0] == 32767 && q[1] == 2 && q[2] == -2 && q[3] == 4 && q[4] == 0 && q[5] == 2,
            "scalar quantize_row_i16 hand row");
}

// Packing against the scalar reference (bit for bit) and the reference
// against the layout's definition, with partial last groups and row strides.
void test_pack_i16(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  for (size_t rows : {1, 5, 16, 17, 31, 32, 33}) {
    for (size_t k : {32, 96, 384}) {
      const size_t nb = k / QK8_0, ldw = nb + 1;
      const auto W = rand_weights((rows - 1) * ldw + nb);
      const size_t nq = i16_packed_quants(rows, k), nd = i16_packed_scales(rows, k);
      std::vector<int16_t> qg(nq + 1, 0x5a5a), qw(nq, 0x1111);
      std::vector<float> dg(nd + 1, -7.0f), dw(nd, -3.0f);
      K.pack_q8_0_i16(W.data(), ldw, rows, k, qg.data(), dg.data());
      R.pack_q8_0_i16(W.data(), ldw, rows, k, qw.data(), dw.data());
      bool ok = std::equal(qw.begin(), qw.end(), qg.begin()) && qg[nq] == 0x5a5a && dg[nd] == -7.0f;
      for (size_t t = 0; t < nd; ++t) ok = ok && same_float(dg[t], dw[t]);
      CHECK_MSG(ok, "%s pack_q8_0_i16 rows=%zu k=%zu", K.name, rows, k);
      if (&K != &R) continue;
      bool def = true;
      for (size_t g = 0; g < i16_groups(rows); ++g)
        for (size_t b = 0; b < nb; ++b)
          for (size_t l = 0; l < kI16Group; ++l) {
            const size_t row = g * kI16Group + l;
            const float want_d = row < rows ? fp16_to_fp32(W[row * ldw + b].d) : 0.0f;
            def = def && same_float(dw[(g * nb + b) * kI16Group + l], want_d);
            for (size_t t = 0; t < (size_t)QK8_0; ++t) {
              const int want = row < rows ? W[row * ldw + b].qs[t] : 0;
              def = def && qw[(g * nb + b) * kI16Group * QK8_0 + (t / 2) * 2 * kI16Group + 2 * l + t % 2] == want;
            }
          }
      CHECK_MSG(def, "scalar pack_q8_0_i16 follows the layout, rows=%zu k=%zu", rows, k);
    }
  }
}

void test_gemm_i16(const Kernels& K) {
  const Kernels& R = kernels_scalar();
  const size_t kN[] = {1, 2, 3, 5, 7, 13, 16, 17, 31, 32, 33, 47};
  for (size_t m : kMN)
    for (size_t n : kN)
      for (size_t k : kBlockSizes) {
        if (m * n * k > 400000 && !(m == 31 && n == 31)) continue;  // keep the sanitizer run short
        const size_t nb = k / QK8_0, lda = k + 16, ldad = nb + 1, ldw = nb + 3, ldc = n + 1;
        std::vector<int16_t> A((m - 1) * lda + k);
        std::vector<float> ad((m - 1) * ldad + nb);
        const int extreme = irand(0, 2);  // 1: every product of row 0 at its largest magnitude
        for (size_t i = 0; i < m; ++i) {
          for (size_t t = 0; t < k; ++t)
            A[i * lda + t] = (int16_t)(extreme == 1 ? (irand(0, 1) ? 32767 : -32767) : irand(-32767, 32767));
          for (size_t b = 0; b < nb; ++b) ad[i * ldad + b] = (i + b) % 5 == 4 ? 0.0f : uniform(1e-6f, 1e-3f);
        }
        auto W = rand_weights((n - 1) * ldw + nb);
        if (extreme == 1)  // same sign as A's row 0: block sums reach 32 * 32767 * 128
          for (size_t j = 0; j < n; ++j)
            for (size_t b = 0; b < nb; ++b)
              for (int t = 0; t < QK8_0; ++t) W[j * ldw + b].qs[t] = A[b * QK8_0 + t] > 0 ? 127 : -128;
        // Exact sizes: a read past the packed panel hits ASan's redzone.
        std::vector<int16_t> Bq(i16_packed_quants(n, k));
        std::vector<float> Bd(i16_packed_scales(n, k));
        R.pack_q8_0_i16(W.data(), ldw, n, k, Bq.data(), Bd.data());
        std::vector<float> C((m - 1) * ldc + n + 1, -999.0f), Cr(C.size(), -999.0f);
        K.gemm_i16_nt(A.data(), lda, ad.data(), ldad, Bq.data(), Bd.data(), C.data(), ldc, m, n, k);
        R.gemm_i16_nt(A.data(), lda, ad.data(), ldad, Bq.data(), Bd.data(), Cr.data(), ldc, m, n, k);
        bool ok = true;
        for (size_t i = 0; i < m && ok; ++i)
          for (size_t j = 0; j < ldc && ok; ++j) {
            const size_t at = i * ldc + j;
            if (at >= C.size()) break;
            if (j >= n) {
              ok = C[at] == -999.0f;
              continue;
            }
            double mag = 0, exact = 0;
            for (size_t b = 0; b < nb; ++b) {
              long long isum = 0, iabs = 0;
              for (size_t t = 0; t < (size_t)QK8_0; ++t) {
                const long long p = (long long)A[i * lda + b * QK8_0 + t] * W[j * ldw + b].qs[t];
                isum += p;
                iabs += p < 0 ? -p : p;
              }
              const double s = (double)ad[i * ldad + b] * fp16_to_fp32(W[j * ldw + b].d);
              mag += std::fabs(s) * (double)iabs;
              exact += s * (double)isum;
            }
            // The reference rounds each block's int32 sum to float once more.
            ok = std::fabs((double)C[at] - Cr[at]) <= 2 * tolerance(mag, nb) &&
                 std::fabs((double)Cr[at] - exact) <= 2 * tolerance(mag, nb);
            if (!ok) std::printf("  C[%zu,%zu] = %.9g, reference %.9g, exact %.9g\n", i, j, C[at], Cr[at], exact);
          }
        CHECK_MSG(ok, "%s gemm_i16_nt m=%zu n=%zu k=%zu", K.name, m, n, k);
      }
}

// Dispatch -----------------------------------------------------------------

// kernels_best() caches its answer, so each EMBEDQ_KERNELS value is tried in
// a child process. Returns the chosen set's name and what it printed to stderr.
std::string best_in_child(const char* env, std::string* err) {
  int out[2], errp[2];
  if (pipe(out) != 0 || pipe(errp) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    dup2(errp[1], 2);
    close(out[0]);
    close(errp[0]);
    setenv("EMBEDQ_KERNELS", env, 1);
    const char* name = kernels_best().name;
    if (write(out[1], name, std::strlen(name)) < 0) _exit(2);
    _exit(0);
  }
  close(out[1]);
  close(errp[1]);
  auto slurp = [](int fd) {
    std::string s;
    char buf[256];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) s.append(buf, (size_t)r);
    close(fd);
    return s;
  };
  std::string name = slurp(out[0]);
  *err = slurp(errp[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return name;
}

void test_dispatch() {
  size_t count = 0;
  const char* const* names = kernels_available(&count);
  CHECK_MSG(count >= 1 && std::strcmp(names[0], "scalar") == 0, "kernels_available starts with scalar");
  for (size_t i = 0; i < count; ++i) {
    const Kernels* k = kernels_by_name(names[i]);
    CHECK_MSG(k && std::strcmp(k->name, names[i]) == 0, "kernels_by_name(%s)", names[i]);
  }
  // int16 activations become the default only where VPDPWSSD makes them faster.
  for (size_t i = 0; i < count; ++i)
    CHECK_MSG(kernels_by_name(names[i])->prefer_i16 == (std::strcmp(names[i], "avx512vnni") == 0),
              "%s prefer_i16", names[i]);
  CHECK_MSG(kernels_by_name("bogus") == nullptr && kernels_by_name(nullptr) == nullptr, "unknown name -> null");
#if defined(EMBEDQ_X86)
  // The compiler's own CPU check, independent of dispatch.cpp's (which also asks the OS).
  const bool has_cpu_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
             has_cpu_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  CHECK_MSG(kernels_neon() == nullptr, "no NEON kernels on x86");
  // Every x86 build compiles both sets, so a CPU that has the ISA lists it, and one that lacks it
  // does not. The accessors themselves build their tables with the ISA's code: only a CPU that
  // has it may call them (dispatch checks first).
  CHECK_MSG(has_cpu_avx2 == (kernels_by_name("avx2") != nullptr), "avx2 listed iff the CPU has it");
  CHECK_MSG(has_cpu_avx512 == (kernels_by_name("avx512") != nullptr), "avx512 listed iff the CPU has it");
  if (has_cpu_avx2) CHECK_MSG(kernels_avx2() == kernels_by_name("avx2"), "avx2 accessor");
  if (has_cpu_avx512) CHECK_MSG(kernels_avx512() == kernels_by_name("avx512"), "avx512 accessor");
#endif
#if defined(EMBEDQ_ARM)
  CHECK_MSG(kernels_avx2() == nullptr && kernels_avx512() == nullptr, "no x86 kernels on arm");
#endif
  // Only sets of the CPU's own architecture can be listed.
  const bool has_neon = kernels_by_name("neon") != nullptr, has_avx2 = kernels_by_name("avx2") != nullptr;
  CHECK_MSG(!(has_neon && has_avx2), "neon and avx2 never both available");

  const std::string best = names[count - 1];
  std::string err;
  CHECK_MSG(best_in_child("", &err) == best && err.empty(), "no override -> %s", best.c_str());
  for (size_t i = 0; i < count; ++i)
    CHECK_MSG(best_in_child(names[i], &err) == names[i] && err.empty(), "EMBEDQ_KERNELS=%s honoured", names[i]);
  const char* unsupported = has_neon ? "avx2" : "neon";
  std::string got = best_in_child(unsupported, &err);
  CHECK_MSG(got == best && err.find("EMBEDQ_KERNELS") != std::string::npos &&
            err.find('\n') == err.size() - 1,
        "EMBEDQ_KERNELS=%s falls back to %s with one warning (got %s, stderr '%s')", unsupported, best.c_str(),
        got.c_str(), err.c_str());
  got = best_in_child("no-such-set", &err);
  CHECK_MSG(got == best && !err.empty(), "EMBEDQ_KERNELS=no-such-set falls back to %s", best.c_str());
}

}  // namespace

int main() {
  test_scalar_against_double();
  test_quantize_i16_reference();
  test_scalar_block_layouts();
  test_dispatch();
  size_t count = 0;
  const char* const* names = kernels_available(&count);
  std::printf("kernel sets: ");
  for (size_t i = 0; i < count; ++i) std::printf("%s%s", names[i], i + 1 < count ? ", " : "\n");
  for (size_t i = 0; i < count; ++i) {
    const Kernels& K = *kernels_by_name(names[i]);
    const int before = check::failed;
    test_dot(K);
    test_f16(K);
    test_block_dequant(K);
    test_table_covers_supported_types(K);
    test_quantize(K);
    test_gemm_f32(K);
    test_gemm_q8(K);
    test_quantize_i16(K);
    test_pack_i16(K);
    test_gemm_i16(K);
    std::printf("%-12s %s\n", K.name, check::failed == before ? "ok" : "FAILED");
  }
  return report();
}
