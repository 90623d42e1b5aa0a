#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops.h"

namespace embedq {

namespace {
// Query rows per task: enough tasks to keep every thread busy on a single
// long sequence with few heads (Gemma has 3), few enough to amortize the
// per-task transpose of V.
constexpr size_t kQueryChunk = 64;
}  // namespace

void attention(Runtime& rt, const AttentionShape& a, const std::vector<size_t>& seq_start, const float* q, size_t ldq,
               const float* k, size_t ldk, const float* v, size_t ldv, float* out, size_t ldo) {
  const ScopedMs timed(rt.times.attention_ms);
  struct Task { size_t seq, head, q0; };
  std::vector<Task> tasks;
  const size_t n_seq = seq_start.size() - 1;
  for (size_t s = 0; s < n_seq; ++s) {
    const size_t len = seq_start[s + 1] - seq_start[s];
    for (size_t h = 0; h < a.n_head; ++h)
      for (size_t q0 = 0; q0 < len; q0 += kQueryChunk) tasks.push_back({s, h, q0});
  }
  const size_t d = a.head_dim;
  const size_t group = a.n_head / a.n_head_kv;
  const Kernels& kern = rt.k;

  rt.pool.parallel_for(tasks.size(), [&](size_t ti, int thread) {
    const Task& t = tasks[ti];
    const size_t o = seq_start[t.seq];
    const size_t len = seq_start[t.seq + 1] - o;
    const size_t qn = std::min(kQueryChunk, len - t.q0);
    // With a sliding window only keys within reach of this query chunk matter.
    size_t k0 = 0, k1 = len;
    if (a.window && len > a.window) {
      k0 = t.q0 >= a.window - 1 ? t.q0 - (a.window - 1) : 0;
      k1 = std::min(len, t.q0 + qn + a.window - 1);
    }
    if (a.causal) k1 = std::min(k1, t.q0 + qn);  // no query of the chunk sees past its last
    const size_t kn = k1 - k0;
    float* scores = rt.thread_scratch(thread, qn * kn + d * kn);
    float* vt = scores + qn * kn;
    const size_t hk = t.head / group;

    const float* qh = q + (o + t.q0) * ldq + t.head * d;
    const float* kh = k + (o + k0) * ldk + hk * d;
    kern.gemm_f32_nt(qh, ldq, kh, ldk, scores, kn, qn, kn, d);
    for (size_t i = 0; i < qn; ++i) {
      float* row = scores + i * kn;
      scale_inplace(row, a.scale, kn);
      if (a.window && len > a.window) {
        const size_t qi = t.q0 + i;
        for (size_t j = 0; j < kn; ++j) {
          const size_t kj = k0 + j;
          const size_t dist = qi > kj ? qi - kj : kj - qi;
          if (dist >= a.window) row[j] = -std::numeric_limits<float>::infinity();
        }
      }
      if (a.causal) {
        for (size_t j = t.q0 + i + 1; j < k1; ++j) row[j - k0] = -std::numeric_limits<float>::infinity();
      }
      softmax(row, kn);
    }
    // out = P V needs V transposed to use the same row-times-row kernel.
    const float* vh = v + (o + k0) * ldv + hk * d;
    for (size_t j = 0; j < kn; ++j)
      for (size_t c = 0; c < d; ++c) vt[c * kn + j] = vh[j * ldv + c];
    kern.gemm_f32_nt(scores, kn, vt, kn, out + (o + t.q0) * ldo + t.head * d, ldo, qn, d, kn);
  });
}

}  // namespace embedq
