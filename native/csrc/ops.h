// Element-wise and row-wise operations of the forward passes. These are a
// small share of the time next to the matrix products, so they stay portable
// loops the compiler vectorizes for the baseline ISA.
#pragma once
#include <cstddef>
#include <cstdint>

namespace embedq {

// y = (x - mean) / sqrt(var + eps) * w + b, in place over `n` elements.
void layer_norm(float* x, size_t n, const float* w, const float* b, float eps);
// x = x / rms(x) * (w_offset + w); Gemma stores weights as (w - 1), so it passes w_offset = 1.
void rms_norm(float* x, size_t n, const float* w, float eps, float w_offset);
// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as BERT uses it.
void gelu_erf(float* x, size_t n);
// GELU with the tanh approximation (Gemma's gelu_pytorch_tanh).
void gelu_tanh(float* x, size_t n);
// SiLU, x * sigmoid(x) (the gate of SwiGLU feed-forward layers).
void silu(float* x, size_t n);
// Rotary embedding in the NeoX / "rotate_half" layout: in each of n_heads heads
// of head_dim values, pair (i, i + head_dim/2) turns by pos * inv_freq[i].
void rope_neox(float* x, size_t n_heads, size_t head_dim, size_t pos, const float* inv_freq);
// Numerically stable softmax over one row.
void softmax(float* x, size_t n);
void add_inplace(float* y, const float* x, size_t n);
void scale_inplace(float* y, float s, size_t n);
// out = mean of `rows` rows of length n (row stride n), accumulated in double
// because long sequences average hundreds of rows.
void mean_rows(const float* x, size_t rows, size_t n, float* out);
// Returns the L2 norm before scaling; rows with zero norm stay zero.
float l2_normalize(float* x, size_t n);

}  // namespace embedq
