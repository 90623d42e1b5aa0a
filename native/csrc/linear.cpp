#include "linear.h"

#include <algorithm>
#include <cstring>

#include "ops.h"

namespace embedq {

void weight_row_to_f32(const Kernels& k, const TensorView& t, size_t row, float* dst) {
  const uint8_t* base = static_cast<const uint8_t*>(t.data) + row * t.row_bytes();
  // The loader admits only types every kernel set has an entry for.
  k.row_to_f32[(size_t)t.type](base, dst, (size_t)t.ne[0]);
}

const float* vector_f32(const TensorView& t, std::vector<float>& store) {
  if (t.type == DType::F32) return static_cast<const float*>(t.data);
  store.resize((size_t)t.nelements());
  const Kernels& k = kernels_scalar();
  const size_t n = (size_t)t.ne[0];
  for (int64_t r = 0; r < t.rows(); ++r) weight_row_to_f32(k, t, (size_t)r, store.data() + (size_t)r * n);
  return store.data();
}

namespace {

// Tile sizes: a panel of weight rows is converted to f32 once per task and
// reused for every token of the token block, so conversion costs 1/kTokenBlock
// of the multiply; 64 tokens x K floats stays in L2 for K up to 3072.
constexpr size_t kPanelRows = 32;
constexpr size_t kTokenBlock = 64;

void finish_tile(float* Y, size_t ldy, size_t m, size_t n, const float* bias, Epilogue epi) {
  for (size_t i = 0; i < m; ++i) {
    float* y = Y + i * ldy;
    if (bias) add_inplace(y, bias, n);
    if (epi == Epilogue::GELU_ERF) gelu_erf(y, n);
    else if (epi == Epilogue::GELU_TANH) gelu_tanh(y, n);
    else if (epi == Epilogue::SILU) silu(y, n);
  }
}

}  // namespace

void linear(Runtime& rt, const float* X, size_t ldx, size_t m, const Weight& w, float* Y, size_t ldy, Epilogue epi) {
  const ScopedMs timed(rt.times.linear_ms);
  rt.times.linear_ops += 2.0 * (double)m * (double)w.in() * (double)w.out();
  const TensorView& t = *w.t;
  const size_t K = w.in(), N = w.out();
  const size_t n_panels = (N + kPanelRows - 1) / kPanelRows;
  const size_t n_tblocks = (m + kTokenBlock - 1) / kTokenBlock;
  const Kernels& k = rt.k;

  if (t.type == DType::Q8_0 && rt.mode == ActivationMode::INT8) {
    const size_t kb = K / QK8_0;
    rt.qact.resize(m * kb);
    BlockQ8_0* qa = rt.qact.data();
    rt.pool.parallel_for(m, [&](size_t i, int) { k.quantize_row_q8_0(X + i * ldx, qa + i * kb, K); });
    const BlockQ8_0* wq = static_cast<const BlockQ8_0*>(t.data);
    rt.pool.parallel_for(n_panels * n_tblocks, [&](size_t task, int) {
      const size_t tb = task / n_panels, p = task % n_panels;
      const size_t r0 = p * kPanelRows, rn = std::min(kPanelRows, N - r0);
      const size_t i0 = tb * kTokenBlock, in = std::min(kTokenBlock, m - i0);
      float* y = Y + i0 * ldy + r0;
      k.gemm_q8_0_nt(qa + i0 * kb, kb, wq + r0 * kb, kb, y, ldy, in, rn, K);
      finish_tile(y, ldy, in, rn, w.bias ? w.bias + r0 : nullptr, epi);
    });
    return;
  }

  if (t.type == DType::Q8_0 && rt.mode == ActivationMode::INT16) {
    const size_t kb = K / QK8_0;
    rt.i16act.resize(m * K);
    rt.i16scale.resize(m * kb);
    int16_t* qa = rt.i16act.data();
    float* da = rt.i16scale.data();
    rt.pool.parallel_for(m, [&](size_t i, int) { k.quantize_row_i16(X + i * ldx, qa + i * K, da + i * kb, K); });
    const BlockQ8_0* wq = static_cast<const BlockQ8_0*>(t.data);
    // The whole matrix is packed once per call (panel by panel, in parallel)
    // rather than once per token block: packing transposes, and at a few
    // hundred tokens repeating it would cost as much as the products.
    // Panels hold a whole number of 16-row groups, so panel p's packed data
    // starts at p * nq.
    const size_t nq = i16_packed_quants(kPanelRows, K), nd = i16_packed_scales(kPanelRows, K);
    rt.i16w.resize(n_panels * nq);
    rt.i16wd.resize(n_panels * nd);
    int16_t* pq = rt.i16w.data();
    float* pd = rt.i16wd.data();
    rt.pool.parallel_for(n_panels, [&](size_t p, int) {
      const size_t r0 = p * kPanelRows;
      k.pack_q8_0_i16(wq + r0 * kb, kb, std::min(kPanelRows, N - r0), K, pq + p * nq, pd + p * nd);
    });
    rt.pool.parallel_for(n_panels * n_tblocks, [&](size_t task, int) {
      const size_t tb = task / n_panels, p = task % n_panels;
      const size_t r0 = p * kPanelRows, rn = std::min(kPanelRows, N - r0);
      const size_t i0 = tb * kTokenBlock, in = std::min(kTokenBlock, m - i0);
      float* y = Y + i0 * ldy + r0;
      k.gemm_i16_nt(qa + i0 * K, K, da + i0 * kb, kb, pq + p * nq, pd + p * nd, y, ldy, in, rn, K);
      finish_tile(y, ldy, in, rn, w.bias ? w.bias + r0 : nullptr, epi);
    });
    return;
  }

  rt.pool.parallel_for(n_panels * n_tblocks, [&](size_t task, int thread) {
    const size_t tb = task / n_panels, p = task % n_panels;
    const size_t r0 = p * kPanelRows, rn = std::min(kPanelRows, N - r0);
    const size_t i0 = tb * kTokenBlock, in = std::min(kTokenBlock, m - i0);
    const float* B;
    if (t.type == DType::F32) {
      B = static_cast<const float*>(t.data) + r0 * K;
    } else {
      float* panel = rt.thread_scratch(thread, kPanelRows * K);
      for (size_t r = 0; r < rn; ++r) weight_row_to_f32(k, t, r0 + r, panel + r * K);
      B = panel;
    }
    float* y = Y + i0 * ldy + r0;
    k.gemm_f32_nt(X + i0 * ldx, ldx, B, K, y, ldy, in, rn, K);
    finish_tile(y, ldy, in, rn, w.bias ? w.bias + r0 : nullptr, epi);
  });
}

}  // namespace embedq
