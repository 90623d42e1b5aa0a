#include "linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops.h"
#include "validate.h"

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

// Quantizes `rows` f32 weight rows of k values per block of 32 to |q| <= kI16WeightMax
// (quant.h) and lays them out as pack_q8_0_i16 does (kernels.h, kI16Group). Runs once per
// matrix at load, so plain loops serve.
void pack_f32_rows_i16(const float* W, size_t rows, size_t k, int16_t* q, float* d) {
  for_each_i16_slot(rows, k, q, d, [&](size_t row, size_t b, int16_t* qb, size_t l, float* db) {
    const float* x = row < rows ? W + row * k + b * QK8_0 : nullptr;
    float amax = 0.0f;
    for (size_t t = 0; x && t < QK8_0; ++t) amax = std::fmax(amax, std::fabs(x[t]));
    const bool zero = !(amax >= kI16MinAmax);
    *db = zero ? 0.0f : amax / kI16WeightMax;
    const float inv = zero ? 0.0f : kI16WeightMax / amax;
    for (size_t t = 0; t < QK8_0; ++t) {
      const float r = zero ? 0.0f : std::nearbyint(x[t] * inv);
      qb[i16_pair_index(l, t)] = (int16_t)std::fmin(std::fmax(r, -kI16WeightMax), kI16WeightMax);
    }
  });
}

// Packs a whole matrix for gemm_i16_nt, panel by panel (in parallel): Q8_0 keeps its int8
// quants and scales exactly; any other type goes through f32 to kI16WeightMax quants.
// Panels hold a whole number of 16-row groups, so panel p's data starts at p * nq.
Runtime::PackedI16 pack_i16(Runtime& rt, const TensorView& t) {
  const size_t K = (size_t)t.ne[0], N = (size_t)t.ne[1];
  const size_t n_panels = (N + kPanelRows - 1) / kPanelRows;
  const size_t nq = i16_packed_quants(kPanelRows, K), nd = i16_packed_scales(kPanelRows, K);
  Runtime::PackedI16 pw;
  pw.q.resize(n_panels * nq);
  pw.d.resize(n_panels * nd);
  rt.pool.parallel_for(n_panels, [&](size_t p, int thread) {
    const size_t r0 = p * kPanelRows, rn = std::min(kPanelRows, N - r0);
    if (t.type == DType::Q8_0) {
      const size_t kb = K / QK8_0;
      rt.k.pack_q8_0_i16(static_cast<const BlockQ8_0*>(t.data) + r0 * kb, kb, rn, K, pw.q.data() + p * nq,
                         pw.d.data() + p * nd);
    } else {
      float* panel = rt.thread_scratch(thread, kPanelRows * K);
      for (size_t r = 0; r < rn; ++r) weight_row_to_f32(rt.k, t, r0 + r, panel + r * K);
      pack_f32_rows_i16(panel, rn, K, pw.q.data() + p * nq, pw.d.data() + p * nd);
    }
  });
  return pw;
}

const Runtime::PackedI16& packed_i16(Runtime& rt, const TensorView& t) {
  auto it = rt.packed.find(&t);
  if (it == rt.packed.end()) it = rt.packed.emplace(&t, pack_i16(rt, t)).first;
  return it->second;
}

// Whether int16 products take this matrix: every type but F32 (the exact reference), in rows
// of whole blocks of 32 (a tiny F16 model's rows of 8 are not). Others take the f32 path.
bool packs_i16(const Runtime& rt, const TensorView& t) {
  return rt.mode == ActivationMode::INT16 && t.type != DType::F32 && t.ne[0] % QK8_0 == 0;
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

  if (packs_i16(rt, t)) {
    const size_t kb = K / QK8_0;
    rt.i16act.resize(m * K);
    rt.i16scale.resize(m * kb);
    int16_t* qa = rt.i16act.data();
    float* da = rt.i16scale.data();
    rt.pool.parallel_for(m, [&](size_t i, int) { k.quantize_row_i16(X + i * ldx, qa + i * K, da + i * kb, K); });
    const Runtime::PackedI16& pw = packed_i16(rt, t);
    const size_t nq = i16_packed_quants(kPanelRows, K), nd = i16_packed_scales(kPanelRows, K);
    rt.pool.parallel_for(n_panels * n_tblocks, [&](size_t task, int) {
      const size_t tb = task / n_panels, p = task % n_panels;
      const size_t r0 = p * kPanelRows, rn = std::min(kPanelRows, N - r0);
      const size_t i0 = tb * kTokenBlock, in = std::min(kTokenBlock, m - i0);
      float* y = Y + i0 * ldy + r0;
      k.gemm_i16_nt(qa + i0 * K, K, da + i0 * kb, kb, pw.q.data() + p * nq, pw.d.data() + p * nd, y, ldy, in, rn, K);
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

void prepare_weights(Runtime& rt, const std::vector<const TensorView*>& matrices, bool release_after) {
  for (const TensorView* t : matrices) {
    if (!packs_i16(rt, *t)) continue;
    packed_i16(rt, *t);
    // The packed copy is all the products read from now on.
    if (release_after) release_pages(t->data, t->nbytes);
  }
}

}  // namespace embedq
