// Element-wise ops (vectorized approximations, cloned per instruction set)
// against straightforward libm references on random data of odd sizes, and
// packed-batch attention (bidirectional, causal, grouped-query) against a
// direct double-precision reference.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "attention.h"
#include "check.h"
#include "gguf.h"
#include "kernels/kernels.h"
#include "linear.h"
#include "ops.h"

using namespace embedq;

namespace {

// Sequences longer than the 64-row query chunk, one of length 1, heads sharing
// key/value heads; every output compared with softmax(q k^T * scale) v.
void test_attention(const Kernels& kern, bool causal, size_t window) {
  std::mt19937 rng(causal ? 11 : 12);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const std::vector<size_t> start = {0, 1, 71, 201, 206};
  const size_t T = start.back(), n_head = 4, n_kv = 2, d = 6, ldq = n_head * d + 3, ldk = n_kv * d + 1;
  std::vector<float> q(T * ldq), k(T * ldk), v(T * ldk), out(T * ldq, 0.0f);
  for (auto* buf : {&q, &k, &v})
    for (float& x : *buf) x = dist(rng);
  Runtime rt(3, ActivationMode::F32, kern);
  AttentionShape as;
  as.n_head = n_head;
  as.n_head_kv = n_kv;
  as.head_dim = d;
  as.scale = 0.4f;
  as.causal = causal;
  as.window = window;
  attention(rt, as, start, q.data(), ldq, k.data(), ldk, v.data(), ldk, out.data(), ldq);
  double err = 0;
  for (size_t s = 0; s + 1 < start.size(); ++s) {
    const size_t o = start[s], len = start[s + 1] - o;
    for (size_t i = 0; i < len; ++i)
      for (size_t h = 0; h < n_head; ++h) {
        const size_t hk = h / (n_head / n_kv);
        std::vector<double> p(len, 0.0);
        double mx = -1e300, sum = 0;
        for (size_t j = 0; j < len; ++j) {
          const size_t dist_ij = i > j ? i - j : j - i;
          if ((causal && j > i) || (window && len > window && dist_ij >= window)) continue;
          double dot = 0;
          for (size_t c = 0; c < d; ++c) dot += (double)q[(o + i) * ldq + h * d + c] * k[(o + j) * ldk + hk * d + c];
          p[j] = dot * as.scale;
          mx = std::fmax(mx, p[j]);
        }
        for (size_t j = 0; j < len; ++j) {
          const size_t dist_ij = i > j ? i - j : j - i;
          const bool masked = (causal && j > i) || (window && len > window && dist_ij >= window);
          p[j] = masked ? 0.0 : std::exp(p[j] - mx);
          sum += p[j];
        }
        for (size_t c = 0; c < d; ++c) {
          double ref = 0;
          for (size_t j = 0; j < len; ++j) ref += p[j] / sum * v[(o + j) * ldk + hk * d + c];
          err = std::fmax(err, std::fabs(out[(o + i) * ldq + h * d + c] - ref));
        }
      }
  }
  CHECK_MSG(err < 1e-5, "attention (%s, causal=%d, window=%zu) err=%g", kern.name, causal, window, err);
}


// Random bytes of `rows` rows of k elements of a block type whose fp16 scales (the first
// info.n_scales offsets) are set to small finite values, so every element is finite.
std::vector<uint8_t> random_weights(DType type, size_t rows, size_t k, std::mt19937& rng) {
  const DTypeInfo& info = *dtype_info((uint32_t)type);
  std::vector<uint8_t> buf(rows * k / info.block_elems * info.block_bytes);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  if (type == DType::F16 || type == DType::BF16) {
    for (size_t i = 0; i < buf.size() / 2; ++i) {
      const float x = dist(rng) * (i % 97 == 0 ? 40.0f : 1.0f);  // a few outliers per row
      uint32_t bits;
      std::memcpy(&bits, &x, 4);
      const uint16_t h = type == DType::F16 ? fp32_to_fp16(x) : (uint16_t)(bits >> 16);
      std::memcpy(&buf[2 * i], &h, 2);
    }
    return buf;
  }
  for (uint8_t& b : buf) b = (uint8_t)rng();
  for (size_t blk = 0; blk < buf.size() / info.block_bytes; ++blk)
    for (size_t s = 0; s < info.n_scales; ++s) {
      const uint16_t h = fp32_to_fp16(std::fabs(dist(rng)) * 0.05f + 1e-4f);
      std::memcpy(&buf[blk * info.block_bytes + info.scale_offset[s]], &h, 2);
    }
  return buf;
}

// linear() with int16 activations on every non-F32 weight type: Q8_0 exactly (its int8
// quants), the others through load-time 12-bit blocks (quant.h, kI16WeightMax). Against a
// double-precision product of the activations with the dequantized weights, each output's error
// must stay inside the bound those roundings imply: per block of 32, max|w|/4094 * sum|x| for the
// weights (0 for Q8_0) plus max|x|/65534 * sum|w| for the activations, plus f32 summation.
// Odd row counts (partial 16-row groups and 32-row panels), m across the 64-token blocks.
// Rows of k not a multiple of 32 are not packed: they take the f32 path (error ~0).
void test_linear_int16(const Kernels& kern, DType type, size_t k, size_t n, size_t m) {
  std::mt19937 rng((unsigned)type * 131 + (unsigned)k + (unsigned)n);
  std::vector<uint8_t> wbuf = random_weights(type, n, k, rng);
  TensorView t;
  t.name = "w";
  t.type = type;
  t.n_dims = 2;
  t.ne[0] = (int64_t)k;
  t.ne[1] = (int64_t)n;
  t.data = wbuf.data();
  t.nbytes = wbuf.size();
  std::vector<float> W(n * k);
  for (size_t r = 0; r < n; ++r) weight_row_to_f32(kernels_scalar(), t, r, W.data() + r * k);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t ldx = k + 5, ldy = n + 3;
  std::vector<float> X(m * ldx), Y(m * ldy, 0.0f), Y2(m * ldy, 0.0f);
  for (float& x : X) x = dist(rng);
  Runtime rt(3, ActivationMode::INT16, kern);
  prepare_weights(rt, {&t}, false);
  const size_t packs = k % 32 == 0 ? 1 : 0;
  CHECK_MSG(rt.packed.count(&t) == packs, "%s: prepare_weights packs the matrix (k=%zu)", dtype_name((uint32_t)type), k);
  Weight w;
  w.t = &t;
  linear(rt, X.data(), ldx, m, w, Y.data(), ldy);
  linear(rt, X.data(), ldx, m, w, Y2.data(), ldy);
  CHECK_MSG(Y == Y2 && rt.packed.size() == packs, "%s: the packed copy is reused", dtype_name((uint32_t)type));
  const bool exact_weights = type == DType::Q8_0;
  int bad = 0;
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) {
      double ref = 0, bound = 0, mag = 0;
      for (size_t b = 0; b < (k + 31) / 32; ++b) {
        double xa = 0, wa = 0, xs = 0, ws = 0;
        for (size_t c = b * 32; c < std::min(k, b * 32 + 32); ++c) {
          const double x = X[i * ldx + c], wv = W[j * k + c];
          ref += x * wv;
          mag += std::fabs(x * wv);
          xa = std::fmax(xa, std::fabs(x)), wa = std::fmax(wa, std::fabs(wv));
          xs += std::fabs(x), ws += std::fabs(wv);
        }
        bound += (exact_weights ? 0.0 : wa / 4094.0 * xs) + xa / 65534.0 * ws;
      }
      if (!packs) bound = 0;
      bound = bound * 1.01 + 1e-5 * mag + 1e-30;
      if (std::fabs(Y[i * ldy + j] - ref) > bound && bad++ < 3)
        std::printf("  %s %s m=%zu n=%zu k=%zu: y[%zu,%zu]=%.8g ref %.8g bound %.3g\n", kern.name,
                    dtype_name((uint32_t)type), m, n, k, i, j, Y[i * ldy + j], ref, bound);
    }
  CHECK_MSG(bad == 0, "%s %s: %d outputs outside the bound", kern.name, dtype_name((uint32_t)type), bad);
}

// The largest block sums there can be: every weight quant at +-kI16WeightMax and every activation
// quant at +-kI16Max with matching signs sum to 32 * 32767 * 2047 per block, one step under int32's
// limit; a wider weight range or an accumulation across blocks would wrap around.
void test_linear_int16_extremes(const Kernels& kern) {
  const size_t k = 64, n = 17, m = 3;
  std::vector<uint16_t> wbits(n * k);
  for (size_t i = 0; i < wbits.size(); ++i) wbits[i] = fp32_to_fp16((i / k) % 2 ? -0.75f : 0.75f);
  TensorView t;
  t.name = "w";
  t.type = DType::F16;
  t.n_dims = 2;
  t.ne[0] = (int64_t)k;
  t.ne[1] = (int64_t)n;
  t.data = wbits.data();
  t.nbytes = wbits.size() * 2;
  std::vector<float> X(m * k), Y(m * n);
  for (size_t i = 0; i < X.size(); ++i) X[i] = (i / k) == 1 ? -1e3f : 1e3f;
  Runtime rt(2, ActivationMode::INT16, kern);
  Weight w;
  w.t = &t;
  linear(rt, X.data(), k, m, w, Y.data(), n);
  bool ok = true;
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) {
      const double ref = (double)k * 750.0 * ((i == 1) != (j % 2 == 1) ? -1.0 : 1.0);
      ok = ok && std::fabs(Y[i * n + j] - ref) <= 1e-5 * std::fabs(ref);
    }
  CHECK_MSG(ok, "%s: extreme block sums stay exact", kern.name);
}

}  // namespace

int main() {
  size_t n_sets = 0;
  const char* const* sets = kernels_available(&n_sets);
  for (size_t s = 0; s < n_sets; ++s)
    for (DType type : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q5_1, DType::Q4_K, DType::Q6_K}) {
      const size_t k = dtype_block_elems(type) == 256 ? 512 : 96;
      test_linear_int16(*kernels_by_name(sets[s]), type, k, 37, 5);
      test_linear_int16(*kernels_by_name(sets[s]), type, k, 16, 70);
      if (type == DType::F16) test_linear_int16(*kernels_by_name(sets[s]), type, 40, 9, 3);
    }
  for (size_t s = 0; s < n_sets; ++s) test_linear_int16_extremes(*kernels_by_name(sets[s]));

  for (const Kernels* kern : {&kernels_scalar(), &kernels_best()})
    for (bool causal : {false, true})
      for (size_t window : {(size_t)0, (size_t)9}) test_attention(*kern, causal, window);

  std::mt19937 rng(42);
  const size_t sizes[] = {1, 3, 7, 15, 16, 17, 31, 33, 64, 65, 383, 384, 1000, 1536};
  for (size_t n : sizes) {
    for (float scale : {0.1f, 1.0f, 4.0f, 30.0f}) {
      std::normal_distribution<float> dist(0.0f, scale);
      std::vector<float> x(n);
      for (auto& v : x) v = dist(rng);

      std::vector<float> y = x;
      gelu_erf(y.data(), n);
      double err = 0;
      for (size_t i = 0; i < n; ++i) {
        const double ref = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
        err = std::fmax(err, std::fabs(y[i] - ref) / (1.0 + std::fabs(ref)));
      }
      CHECK_MSG(err < 1e-6, "gelu_erf n=%zu err=%g", n, err);

      y = x;
      gelu_tanh(y.data(), n);
      err = 0;
      for (size_t i = 0; i < n; ++i) {
        const double v = x[i];
        const double ref = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        err = std::fmax(err, std::fabs(y[i] - ref) / (1.0 + std::fabs(ref)));
      }
      CHECK_MSG(err < 1e-6, "gelu_tanh n=%zu err=%g", n, err);

      y = x;
      silu(y.data(), n);
      err = 0;
      for (size_t i = 0; i < n; ++i) {
        const double ref = (double)x[i] / (1.0 + std::exp(-(double)x[i]));
        err = std::fmax(err, std::fabs(y[i] - ref) / (1.0 + std::fabs(ref)));
      }
      CHECK_MSG(err < 1e-6, "silu n=%zu err=%g", n, err);

      // RoPE on 3 heads of head size 2n: pair (i, i + n) turns by pos * inv_freq[i].
      {
        const size_t hd = 2 * n, heads = 3, pos = 1 + n % 37;
        std::vector<float> r(heads * hd), inv(n);
        for (auto& val : r) val = dist(rng);
        for (size_t i = 0; i < n; ++i) inv[i] = (float)std::pow(10000.0, -2.0 * (double)i / (double)hd);
        std::vector<float> got = r;
        rope_neox(got.data(), heads, hd, pos, inv.data());
        err = 0;
        for (size_t h = 0; h < heads; ++h)
          for (size_t i = 0; i < n; ++i) {
            const double ang = (double)pos * inv[i], a = r[h * hd + i], b = r[h * hd + i + n];
            err = std::fmax(err, std::fabs(got[h * hd + i] - (a * std::cos(ang) - b * std::sin(ang))));
            err = std::fmax(err, std::fabs(got[h * hd + i + n] - (b * std::cos(ang) + a * std::sin(ang))));
          }
        CHECK_MSG(err < 2e-5 * (1.0 + scale), "rope_neox n=%zu err=%g", n, err);
      }

      y = x;
      softmax(y.data(), n);
      double mx = x[0];
      for (float v : x) mx = std::fmax(mx, v);
      double sum = 0;
      for (float v : x) sum += std::exp((double)v - mx);
      err = 0;
      double total = 0;
      for (size_t i = 0; i < n; ++i) {
        const double ref = std::exp((double)x[i] - mx) / sum;
        err = std::fmax(err, std::fabs(y[i] - ref) / (ref + 1e-30) * (ref > 1e-30));
        total += y[i];
      }
      CHECK_MSG(err < 1e-5, "softmax n=%zu err=%g", n, err);
      CHECK_NEAR(total, 1.0, 1e-5);

      std::vector<float> w(n), b(n);
      for (size_t i = 0; i < n; ++i) { w[i] = 1.0f + 0.1f * dist(rng) / scale; b[i] = 0.1f * dist(rng) / scale; }
      if (n > 1) {
        y = x;
        layer_norm(y.data(), n, w.data(), b.data(), 1e-12f);
        double mean = 0, var = 0;
        for (float v : x) mean += v;
        mean /= n;
        for (float v : x) var += (v - mean) * (v - mean);
        var /= n;
        err = 0;
        for (size_t i = 0; i < n; ++i) {
          const double ref = (x[i] - mean) / std::sqrt(var + 1e-12) * w[i] + b[i];
          err = std::fmax(err, std::fabs(y[i] - ref));
        }
        CHECK_MSG(err < 1e-5, "layer_norm n=%zu err=%g", n, err);
      }

      y = x;
      rms_norm(y.data(), n, w.data(), 1e-6f, 1.0f);
      double sq = 0;
      for (float v : x) sq += (double)v * v;
      err = 0;
      for (size_t i = 0; i < n; ++i) {
        const double ref = x[i] / std::sqrt(sq / n + 1e-6) * (1.0 + w[i]);
        err = std::fmax(err, std::fabs(y[i] - ref) / (1.0 + std::fabs(ref)));
      }
      CHECK_MSG(err < 1e-5, "rms_norm n=%zu err=%g", n, err);
    }
  }
  // Extremes must not overflow into NaN.
  std::vector<float> big = {-1e30f, -100.0f, 0.0f, 100.0f, 1e30f};
  std::vector<float> y = big;
  gelu_erf(y.data(), y.size());
  CHECK_MSG(y[0] == 0.0f && y[2] == 0.0f && y[3] == 100.0f && std::isfinite(y[4]), "gelu_erf extremes");
  y = big;
  gelu_tanh(y.data(), y.size());
  CHECK_MSG(std::fabs(y[0]) < 1e-6f && std::fabs(y[1]) < 1e-6f && y[3] == 100.0f && std::isfinite(y[4]),
            "gelu_tanh extremes");
  // NaN (from a corrupt model's overflow) must come out as NaN, for the
  // output check to refuse the vector, and without undefined behaviour
  // on the way (UBSan watches the exp's exponent arithmetic).
  const float nan = std::nanf("");
  std::vector<float> bad = {1.0f, nan, -2.0f};
  y = bad;
  gelu_tanh(y.data(), y.size());
  CHECK(std::isnan(y[1]) && std::isfinite(y[0]) && std::isfinite(y[2]));
  y = bad;
  gelu_erf(y.data(), y.size());
  CHECK(std::isnan(y[1]) && std::isfinite(y[0]) && std::isfinite(y[2]));
  y = bad;
  silu(y.data(), y.size());
  CHECK(std::isnan(y[1]) && std::isfinite(y[0]) && std::isfinite(y[2]));
  y = big;
  silu(y.data(), y.size());
  // exp saturates at e^88, so -1e30 comes out as -6e-9 rather than 0.
  CHECK_MSG(std::fabs(y[0]) < 1e-6f && std::fabs(y[1]) < 1e-30f && y[3] == 100.0f && std::isfinite(y[4]), "silu extremes");
  y = bad;
  softmax(y.data(), y.size());
  CHECK(std::isnan(y[0] + y[1] + y[2]));
  return report();
}
