// Element-wise ops (vectorized approximations, cloned per instruction set)
// against straightforward libm references on random data of odd sizes.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "ops.h"

using namespace embedq;

int main() {
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
  softmax(y.data(), y.size());
  CHECK(std::isnan(y[0] + y[1] + y[2]));
  return report();
}
