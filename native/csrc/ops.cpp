#include "ops.h"

#include <cmath>

namespace embedq {

void layer_norm(float* x, size_t n, const float* w, const float* b, float eps) {
  // Two-pass in double: post-LN BERT residual streams can reach 1e3 and a
  // one-pass variance loses the digits the accuracy target needs.
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / (double)n;
  double sq = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = x[i] - mean;
    sq += d * d;
  }
  const float inv = (float)(1.0 / std::sqrt(sq / (double)n + eps));
  const float m = (float)mean;
  for (size_t i = 0; i < n; ++i) x[i] = (x[i] - m) * inv * w[i] + (b ? b[i] : 0.0f);
}

void rms_norm(float* x, size_t n, const float* w, float eps, float w_offset) {
  double sq = 0;
  for (size_t i = 0; i < n; ++i) sq += (double)x[i] * x[i];
  const float inv = (float)(1.0 / std::sqrt(sq / (double)n + eps));
  for (size_t i = 0; i < n; ++i) x[i] = x[i] * inv * (w_offset + w[i]);
}

void gelu_erf(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void gelu_tanh(float* x, size_t n) {
  const float c = 0.7978845608028654f;  // sqrt(2/pi)
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(c * (v + 0.044715f * v * v * v)));
  }
}

void softmax(float* x, size_t n) {
  float mx = x[0];
  for (size_t i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  float sum = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

void add_inplace(float* y, const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale_inplace(float* y, float s, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] *= s;
}

float l2_normalize(float* x, size_t n) {
  double sq = 0;
  for (size_t i = 0; i < n; ++i) sq += (double)x[i] * x[i];
  const double norm = std::sqrt(sq);
  if (norm > 0) {
    const float inv = (float)(1.0 / norm);
    for (size_t i = 0; i < n; ++i) x[i] *= inv;
  }
  return (float)norm;
}

}  // namespace embedq
