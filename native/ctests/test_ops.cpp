// Element-wise ops (vectorized approximations, cloned per instruction set)
// against straightforward libm references on random data of odd sizes, and
// packed-batch attention (bidirectional, causal, grouped-query) against a
// direct double-precision reference.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "attention.h"
#include "check.h"
#include "kernels/kernels.h"
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

}  // namespace

int main() {
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
