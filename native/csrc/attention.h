// Multi-head attention over a packed batch: each sequence attends only to
// itself, so no padding and no cross-sequence mask. Bidirectional unless
// `causal` (decoders: position i sees positions 0..i).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime.h"

namespace embedq {

struct AttentionShape {
  size_t n_head = 0;      // query heads
  size_t n_head_kv = 0;   // key/value heads (grouped-query attention when fewer)
  size_t head_dim = 0;
  float scale = 1.0f;     // applied to q.k
  size_t window = 0;      // 0 = full; else |i - j| < window (sliding-window layers)
  bool causal = false;    // keys after the query are masked
};

// q: T x (n_head*head_dim) with row stride ldq; k, v: T x (n_head_kv*head_dim)
// with strides ldk, ldv; out: T x (n_head*head_dim) with stride ldo.
// seq_start[s]..seq_start[s+1] delimit sequence s.
void attention(Runtime& rt, const AttentionShape& a, const std::vector<size_t>& seq_start, const float* q, size_t ldq,
               const float* k, size_t ldk, const float* v, size_t ldv, float* out, size_t ldo);

}  // namespace embedq
