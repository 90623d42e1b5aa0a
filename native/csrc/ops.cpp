#include "ops.h"

#include <cmath>
#include <cstring>
#include <vector>

// The element-wise loops below are written branch-free so the compiler
// vectorizes them; on x86 each is cloned for AVX-512, AVX2+FMA and the
// baseline, and the loader picks the clone the CPU supports (ifunc). That
// keeps one readable definition instead of one per instruction set.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EMBEDQ_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define EMBEDQ_CLONES
#endif

namespace embedq {

namespace {

// exp(x) for float: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6
// polynomial (relative error ~2e-7), 2^n assembled in the exponent bits.
// NaN in gives NaN out, so the output check sees it, but computes from 0:
// converting NaN to an integer below would be undefined behaviour.
inline float exp_approx(float in) {
  const float x = in < -87.0f ? -87.0f : (in > 88.0f ? 88.0f : (in == in ? in : 0.0f));
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return in == in ? p * scale : in;
}

// erf(x) by Abramowitz & Stegun 7.1.28: 1 - (1 + a1 x + ... + a6 x^6)^-16,
// absolute error below 3e-7 and no exp, so it vectorizes to a few FMAs.
inline float erf_approx(float x) {
  const float ax = std::fabs(x) < 9.0f ? std::fabs(x) : 9.0f;
  float p = 0.0000430638f;
  p = p * ax + 0.0002765672f;
  p = p * ax + 0.0001520143f;
  p = p * ax + 0.0092705272f;
  p = p * ax + 0.0422820123f;
  p = p * ax + 0.0705230784f;
  p = p * ax + 1.0f;
  p *= p;  // ^2
  p *= p;  // ^4
  p *= p;  // ^8
  p *= p;  // ^16
  const float e = 1.0f - 1.0f / p;
  return std::copysign(e, x);
}

}  // namespace

EMBEDQ_CLONES
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
  if (b) {
    for (size_t i = 0; i < n; ++i) x[i] = (x[i] - m) * inv * w[i] + b[i];
  } else {
    for (size_t i = 0; i < n; ++i) x[i] = (x[i] - m) * inv * w[i];
  }
}

EMBEDQ_CLONES
void rms_norm(float* x, size_t n, const float* w, float eps, float w_offset) {
  double sq = 0;
  for (size_t i = 0; i < n; ++i) sq += (double)x[i] * x[i];
  const float inv = (float)(1.0 / std::sqrt(sq / (double)n + eps));
  for (size_t i = 0; i < n; ++i) x[i] = x[i] * inv * (w_offset + w[i]);
}

EMBEDQ_CLONES
void gelu_erf(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * 0.70710678118654752f));
}

EMBEDQ_CLONES
void silu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + exp_approx(-x[i]));
}

void rope_neox(float* x, size_t n_heads, size_t head_dim, size_t pos, const float* inv_freq) {
  const size_t half = head_dim / 2;
  for (size_t i = 0; i < half; ++i) {
    const float ang = (float)pos * inv_freq[i];
    const float c = std::cos(ang), s = std::sin(ang);
    for (size_t h = 0; h < n_heads; ++h) {
      float* v = x + h * head_dim;
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

EMBEDQ_CLONES
void gelu_tanh(float* x, size_t n) {
  const float c = 0.7978845608028654f;  // sqrt(2/pi)
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    // 0.5 (1 + tanh(y)) = 1 / (1 + exp(-2y)), the form that cannot overflow.
    const float y = c * (v + 0.044715f * v * v * v);
    x[i] = v / (1.0f + exp_approx(-2.0f * y));
  }
}

EMBEDQ_CLONES
void softmax(float* x, size_t n) {
  float mx = x[0];
  for (size_t i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  float sum = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = exp_approx(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

EMBEDQ_CLONES
void add_inplace(float* y, const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

EMBEDQ_CLONES
void scale_inplace(float* y, float s, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] *= s;
}

void mean_rows(const float* x, size_t rows, size_t n, float* out) {
  std::vector<double> acc(n, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < n; ++c) acc[c] += x[r * n + c];
  for (size_t c = 0; c < n; ++c) out[c] = (float)(acc[c] / (double)rows);
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
