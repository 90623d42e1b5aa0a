// Qwen3 embedding models (Qwen3-Embedding-0.6B and its family) as llama.cpp
// lays them out in GGUF (general.architecture = qwen3): a decoder run as an
// encoder, whose vector is the last token's hidden state. Per layer:
//   h = RMSNorm(x); q,k,v = Wq h, Wk h, Wv h; q,k = RMSNorm per head, RoPE
//   x = x + Wo * attention(q, k, v)            (causal, grouped-query)
//   x = x + Wd * (silu(Wg h') * Wu h')         with h' = RMSNorm(x)
// then a final RMSNorm, taken at the last token (the tokenizer appended
// <|endoftext|> there). Unlike Gemma: no embedding scale, no norms after the
// attention and the feed-forward block, SiLU, causal attention, no "+1" in
// norm weights.
//
// Weights (ggml order: ne[0] is the input width; H hidden, D head size,
// Q = heads * D, KV = kv heads * D, F feed-forward width, V vocabulary):
//   token_embd.weight          [H, V]
//   blk.N.attn_norm.weight     [H]
//   blk.N.attn_q.weight        [H, Q]     blk.N.attn_q_norm.weight [D]
//   blk.N.attn_k.weight        [H, KV]    blk.N.attn_k_norm.weight [D]
//   blk.N.attn_v.weight        [H, KV]
//   blk.N.attn_output.weight   [Q, H]
//   blk.N.ffn_norm.weight      [H]
//   blk.N.ffn_gate.weight      [H, F]     blk.N.ffn_up.weight [H, F]
//   blk.N.ffn_down.weight      [F, H]
//   output_norm.weight         [H]
// (output.weight, the language-model head, is never read.)
#include <cmath>
#include <string>

#include "attention.h"
#include "linear.h"
#include "model.h"
#include "ops.h"
#include "validate.h"

namespace embedq {

namespace {

struct Qwen3Layer {
  Weight q, k, v, o, gate, up, down;
  const float *attn_norm, *q_norm, *k_norm, *ffn_norm;
};

class Qwen3 final : public FileEncoder {
 public:
  explicit Qwen3(const GGUFFile& f);
  void forward(Runtime& rt, const PackedBatch& batch, float* out) override;
  size_t dim() const override { return hidden_; }
  size_t max_positions() const override { return n_ctx_; }
  size_t vocab_rows() const override { return n_vocab_; }

 private:

  size_t hidden_, n_layer_, n_head_, n_head_kv_, head_dim_, n_ff_, n_ctx_, n_vocab_;
  float eps_;
  std::vector<float> inv_freq_;
  const TensorView* tok_embd_;
  const float* out_norm_;
  std::vector<Qwen3Layer> layers_;
  std::vector<float> x_, h_, q_, k_, v_, ctx_, tmp_, gate_, up_;
};

Qwen3::Qwen3(const GGUFFile& f) {
  const std::string a = "qwen3.";
  // Every size below becomes an allocation or a loop bound (validate.h).
  hidden_ = (size_t)setting_int(f, a + "embedding_length", 1, kMaxWidth);
  n_layer_ = (size_t)setting_int(f, a + "block_count", 1, kMaxLayers);
  n_head_ = (size_t)setting_int(f, a + "attention.head_count", 1, kMaxWidth);
  n_head_kv_ = (size_t)setting_int(f, a + "attention.head_count_kv", (int64_t)n_head_, 1, (int64_t)n_head_);
  if (n_head_ % n_head_kv_ != 0) {
    bad_setting(f, a + "attention.head_count_kv",
                "attention.head_count " + std::to_string(n_head_) + " must be a multiple of it");
  }
  // Qwen3's head size is its own setting (128 for a width of 1024 and 16 heads).
  if (!f.has(a + "attention.key_length") && hidden_ % n_head_ != 0) {
    bad_setting(f, a + "attention.head_count", "the width " + std::to_string(hidden_) +
                                                  " is not a multiple of it and attention.key_length is missing");
  }
  head_dim_ = (size_t)setting_int(f, a + "attention.key_length", (int64_t)(hidden_ / n_head_), 2, kMaxWidth);
  if (head_dim_ % 2 != 0) bad_setting(f, a + "attention.key_length", "RoPE rotates pairs, so the head size must be even");
  if (f.get_int(a + "attention.value_length", (int64_t)head_dim_) != (int64_t)head_dim_) {
    bad_setting(f, a + "attention.value_length", "different key and value head sizes are not supported");
  }
  if (!f.get_bool(a + "attention.causal", true)) {
    bad_setting(f, a + "attention.causal", "Qwen3 was trained with causal attention; bidirectional is not supported");
  }
  n_ff_ = (size_t)setting_int(f, a + "feed_forward_length", 1, kMaxFeedForward);
  n_ctx_ = (size_t)setting_int(f, a + "context_length", kMinContext, kMaxContext);
  eps_ = (float)setting_float(f, a + "attention.layer_norm_rms_epsilon", 1e-6, kMinNormEps, kMaxNormEps);
  // Without the key llama.cpp would pick its own default; Qwen3 embedding
  // models are last-token models, so that is what a file must say or imply.
  const int64_t pool = f.get_int(a + "pooling_type", 3);
  if (pool != 3) bad_setting(f, a + "pooling_type", "supported: 3 (last token)");
  // See gemma3.cpp for the bounds.
  const double base = setting_float(f, a + "rope.freq_base", 1e6, 1, 1e12);
  for (size_t i = 0; i < head_dim_ / 2; ++i) {
    inv_freq_.push_back((float)std::pow(base, -2.0 * (double)i / (double)head_dim_));
  }

  const TensorView* te = f.find_tensor("token_embd.weight");
  if (!te) throw GGUFError("tensor 'token_embd.weight' is missing from the model file");
  n_vocab_ = (size_t)te->ne[1];
  tok_embd_ = &use(f.tensor("token_embd.weight", (int64_t)hidden_, (int64_t)n_vocab_));
  out_norm_ = vec(f, "output_norm.weight", hidden_);

  const size_t qdim = n_head_ * head_dim_, kvdim = n_head_kv_ * head_dim_;
  layers_.resize(n_layer_);
  for (size_t l = 0; l < n_layer_; ++l) {
    Qwen3Layer& L = layers_[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    L.attn_norm = vec(f, p + "attn_norm.weight", hidden_);
    L.q = matrix(f, p + "attn_q.weight", hidden_, qdim);
    L.k = matrix(f, p + "attn_k.weight", hidden_, kvdim);
    L.v = matrix(f, p + "attn_v.weight", hidden_, kvdim);
    L.q_norm = vec(f, p + "attn_q_norm.weight", head_dim_);
    L.k_norm = vec(f, p + "attn_k_norm.weight", head_dim_);
    L.o = matrix(f, p + "attn_output.weight", qdim, hidden_);
    L.ffn_norm = vec(f, p + "ffn_norm.weight", hidden_);
    L.gate = matrix(f, p + "ffn_gate.weight", hidden_, n_ff_);
    L.up = matrix(f, p + "ffn_up.weight", hidden_, n_ff_);
    L.down = matrix(f, p + "ffn_down.weight", n_ff_, hidden_);
  }
}

void Qwen3::forward(Runtime& rt, const PackedBatch& batch, float* out) {
  const size_t H = hidden_, qdim = n_head_ * head_dim_, kvdim = n_head_kv_ * head_dim_;
  const std::vector<size_t>& start = batch.start;
  const size_t S = batch.size(), T = start.back();
  x_.resize(T * H); h_.resize(T * H); q_.resize(T * qdim); k_.resize(T * kvdim); v_.resize(T * kvdim);
  ctx_.resize(T * qdim); tmp_.resize(T * H); gate_.resize(T * n_ff_); up_.resize(T * n_ff_);

  std::vector<size_t> pos(T);
  rt.pool.parallel_for(S, [&](size_t s, int) {
    for (size_t i = start[s]; i < start[s + 1]; ++i) {
      weight_row_to_f32(rt.k, *tok_embd_, (size_t)batch.ids[i], x_.data() + i * H);
      pos[i] = i - start[s];
    }
  });

  AttentionShape as;
  as.n_head = n_head_;
  as.n_head_kv = n_head_kv_;
  as.head_dim = head_dim_;
  as.scale = 1.0f / std::sqrt((float)head_dim_);
  as.causal = true;

  for (const Qwen3Layer& L : layers_) {
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* h = h_.data() + i * H;
      const float* x = x_.data() + i * H;
      for (size_t c = 0; c < H; ++c) h[c] = x[c];
      rms_norm(h, H, L.attn_norm, eps_, 0.0f);
    });
    linear(rt, h_.data(), H, T, L.q, q_.data(), qdim);
    linear(rt, h_.data(), H, T, L.k, k_.data(), kvdim);
    linear(rt, h_.data(), H, T, L.v, v_.data(), kvdim);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* q = q_.data() + i * qdim;
      float* k = k_.data() + i * kvdim;
      for (size_t hd = 0; hd < n_head_; ++hd) rms_norm(q + hd * head_dim_, head_dim_, L.q_norm, eps_, 0.0f);
      for (size_t hd = 0; hd < n_head_kv_; ++hd) rms_norm(k + hd * head_dim_, head_dim_, L.k_norm, eps_, 0.0f);
      rope_neox(q, n_head_, head_dim_, pos[i], inv_freq_.data());
      rope_neox(k, n_head_kv_, head_dim_, pos[i], inv_freq_.data());
    });
    attention(rt, as, start, q_.data(), qdim, k_.data(), kvdim, v_.data(), kvdim, ctx_.data(), qdim);
    linear(rt, ctx_.data(), qdim, T, L.o, tmp_.data(), H);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* x = x_.data() + i * H;
      float* h = h_.data() + i * H;
      add_inplace(x, tmp_.data() + i * H, H);
      for (size_t c = 0; c < H; ++c) h[c] = x[c];
      rms_norm(h, H, L.ffn_norm, eps_, 0.0f);
    });
    linear(rt, h_.data(), H, T, L.gate, gate_.data(), n_ff_, Epilogue::SILU);
    linear(rt, h_.data(), H, T, L.up, up_.data(), n_ff_);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* g = gate_.data() + i * n_ff_;
      const float* u = up_.data() + i * n_ff_;
      for (size_t c = 0; c < n_ff_; ++c) g[c] *= u[c];
    });
    linear(rt, gate_.data(), n_ff_, T, L.down, tmp_.data(), H);
    rt.pool.parallel_for(T, [&](size_t i, int) { add_inplace(x_.data() + i * H, tmp_.data() + i * H, H); });
  }

  // Causal attention: only the last token has seen the whole text.
  rt.pool.parallel_for(S, [&](size_t s, int) {
    float* o = out + s * H;
    const float* x = x_.data() + (start[s + 1] - 1) * H;
    for (size_t c = 0; c < H; ++c) o[c] = x[c];
    rms_norm(o, H, out_norm_, eps_, 0.0f);
  });
}

}  // namespace

std::unique_ptr<Encoder> load_qwen3(const GGUFFile& f) { return std::unique_ptr<Encoder>(new Qwen3(f)); }

}  // namespace embedq
