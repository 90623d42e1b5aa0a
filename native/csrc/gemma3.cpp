// EmbeddingGemma (Gemma 3 text encoder) as llama.cpp lays it out in GGUF
// (general.architecture = gemma-embedding). Norm weights in the file already
// include Gemma's "+1". Per layer:
//   h = RMSNorm(x); q,k,v = Wq h, Wk h, Wv h; q,k = RMSNorm per head, RoPE
//   x = x + RMSNorm(Wo * attention(q, k, v))        (bidirectional; 5 of 6 layers windowed)
//   x = x + RMSNorm(Wd * (gelu_tanh(Wg h') * Wu h'))  with h' = RMSNorm(x)
// then final RMSNorm, mean pooling, Dense 768->3072->768.
#include <cmath>
#include <string>

#include "attention.h"
#include "linear.h"
#include "model.h"
#include "ops.h"
#include "validate.h"

namespace embedq {

namespace {

struct GemmaLayer {
  Weight q, k, v, o, gate, up, down;
  const float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
  bool sliding = false;
};

class Gemma3 final : public FileEncoder {
 public:
  explicit Gemma3(const GGUFFile& f);
  void forward(Runtime& rt, const PackedBatch& batch, float* out) override;
  size_t dim() const override { return dense3_.t ? dense3_.out() : hidden_; }
  size_t max_positions() const override { return n_ctx_; }
  size_t vocab_rows() const override { return n_vocab_; }

 private:

  std::string arch_;
  size_t hidden_, n_layer_, n_head_, n_head_kv_, head_dim_, n_ff_, n_ctx_, n_vocab_, window_;
  float eps_, query_scale_;
  std::vector<float> inv_freq_full_, inv_freq_swa_;
  const TensorView* tok_embd_;
  const float* out_norm_;
  Weight dense2_, dense3_;
  std::vector<GemmaLayer> layers_;
  std::vector<float> x_, h_, q_, k_, v_, ctx_, tmp_, gate_, up_, pooled_, mid_;
};

Gemma3::Gemma3(const GGUFFile& f) {
  arch_ = f.get_string("general.architecture");
  const std::string a = arch_ + ".";
  // Every size below becomes an allocation or a loop bound, so each is
  // range-checked before use (validate.h).
  hidden_ = (size_t)setting_int(f, a + "embedding_length", 1, kMaxWidth);
  n_layer_ = (size_t)setting_int(f, a + "block_count", 1, kMaxLayers);
  n_head_ = (size_t)setting_int(f, a + "attention.head_count", 1, kMaxWidth);
  n_head_kv_ = (size_t)setting_int(f, a + "attention.head_count_kv", (int64_t)n_head_, 1, (int64_t)n_head_);
  if (n_head_ % n_head_kv_ != 0) {
    bad_setting(f, a + "attention.head_count_kv",
                "attention.head_count " + std::to_string(n_head_) + " must be a multiple of it");
  }
  // Gemma's head size need not be width / heads, so the file says it; without
  // the key, width / heads must be exact.
  if (!f.has(a + "attention.key_length") && hidden_ % n_head_ != 0) {
    bad_setting(f, a + "attention.head_count", "the width " + std::to_string(hidden_) +
                                                  " is not a multiple of it and attention.key_length is missing");
  }
  head_dim_ = (size_t)setting_int(f, a + "attention.key_length", (int64_t)(hidden_ / n_head_), 2, kMaxWidth);
  if (head_dim_ % 2 != 0) bad_setting(f, a + "attention.key_length", "RoPE rotates pairs, so the head size must be even");
  if (f.get_int(a + "attention.value_length", (int64_t)head_dim_) != (int64_t)head_dim_) {
    bad_setting(f, a + "attention.value_length", "different key and value head sizes are not supported");
  }
  if (f.get_bool(a + "attention.causal", false)) {
    bad_setting(f, a + "attention.causal", "this encoder attends both ways; causal attention is not supported");
  }
  n_ff_ = (size_t)setting_int(f, a + "feed_forward_length", 1, kMaxFeedForward);
  n_ctx_ = (size_t)setting_int(f, a + "context_length", kMinContext, kMaxContext);
  // 0 = no windowed layers; a window wider than the context is merely full attention.
  window_ = (size_t)setting_int(f, a + "attention.sliding_window", 0, 0, kMaxContext);
  eps_ = (float)setting_float(f, a + "attention.layer_norm_rms_epsilon", 1e-6, kMinNormEps, kMaxNormEps);
  const int64_t pool = f.get_int(a + "pooling_type", 1);
  if (pool != 1) bad_setting(f, a + "pooling_type", "supported: 1 (mean)");
  // Scores are scaled by 1/sqrt(this); Gemma uses the head size (256).
  query_scale_ = 1.0f / std::sqrt((float)setting_float(f, "embedq.query_pre_attn_scalar", (double)head_dim_, 1, 1 << 20));

  // Rotary frequencies: full-attention layers use rope.freq_base, windowed
  // layers the local base (10000 unless the file says otherwise). A base
  // below 1 would turn faster than a radian per position in the last pairs
  // and one past 1e12 is no model's; both ends also keep base^-x finite.
  const double base_full = setting_float(f, a + "rope.freq_base", 1e6, 1, 1e12);
  const double base_swa = setting_float(f, a + "rope.freq_base_swa", 1e4, 1, 1e12);
  for (size_t i = 0; i < head_dim_ / 2; ++i) {
    const double e = -2.0 * (double)i / (double)head_dim_;
    inv_freq_full_.push_back((float)std::pow(base_full, e));
    inv_freq_swa_.push_back((float)std::pow(base_swa, e));
  }

  const TensorView* te = f.find_tensor("token_embd.weight");
  if (!te) throw GGUFError("tensor 'token_embd.weight' is missing from the model file");
  n_vocab_ = (size_t)te->ne[1];
  tok_embd_ = &use(f.tensor("token_embd.weight", (int64_t)hidden_, (int64_t)n_vocab_));
  out_norm_ = vec(f, "output_norm.weight", hidden_);
  if (const TensorView* d2 = f.find_tensor("dense_2.weight")) {
    dense2_ = matrix(f, "dense_2.weight", hidden_, (size_t)d2->ne[1]);
    dense3_ = matrix(f, "dense_3.weight", dense2_.out(), hidden_);
  }

  // Which layers slide: an explicit per-layer pattern when the file has one,
  // else Gemma 3's default of every sixth layer being global.
  std::vector<int32_t> pattern;
  const std::string pk = a + "attention.sliding_window_pattern";
  if (const GGUFValue* p = f.find(pk)) {
    if (p->type == GGUFType::ARRAY) pattern = f.get_int_array(pk);
    else {
      const int64_t every = setting_int(f, pk, 0, kMaxLayers);
      for (size_t l = 0; l < n_layer_; ++l) pattern.push_back(every > 0 && (int64_t)(l + 1) % every != 0);
    }
  }
  if (pattern.empty())
    for (size_t l = 0; l < n_layer_; ++l) pattern.push_back((l + 1) % 6 != 0);
  if (pattern.size() != n_layer_) {
    bad_setting(f, pk, "it needs one entry per layer (block_count " + std::to_string(n_layer_) + ")");
  }

  const size_t qdim = n_head_ * head_dim_, kvdim = n_head_kv_ * head_dim_;
  layers_.resize(n_layer_);
  for (size_t l = 0; l < n_layer_; ++l) {
    GemmaLayer& L = layers_[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    L.attn_norm = vec(f, p + "attn_norm.weight", hidden_);
    L.q = matrix(f, p + "attn_q.weight", hidden_, qdim);
    L.k = matrix(f, p + "attn_k.weight", hidden_, kvdim);
    L.v = matrix(f, p + "attn_v.weight", hidden_, kvdim);
    L.q_norm = vec(f, p + "attn_q_norm.weight", head_dim_);
    L.k_norm = vec(f, p + "attn_k_norm.weight", head_dim_);
    L.o = matrix(f, p + "attn_output.weight", qdim, hidden_);
    L.post_attn_norm = vec(f, p + "post_attention_norm.weight", hidden_);
    L.ffn_norm = vec(f, p + "ffn_norm.weight", hidden_);
    L.gate = matrix(f, p + "ffn_gate.weight", hidden_, n_ff_);
    L.up = matrix(f, p + "ffn_up.weight", hidden_, n_ff_);
    L.down = matrix(f, p + "ffn_down.weight", n_ff_, hidden_);
    L.post_ffn_norm = vec(f, p + "post_ffw_norm.weight", hidden_);
    L.sliding = window_ > 0 && pattern[l] != 0;
  }
}

void Gemma3::forward(Runtime& rt, const PackedBatch& batch, float* out) {
  const size_t H = hidden_, qdim = n_head_ * head_dim_, kvdim = n_head_kv_ * head_dim_;
  const std::vector<size_t>& start = batch.start;
  const size_t S = batch.size(), T = start.back();
  x_.resize(T * H); h_.resize(T * H); q_.resize(T * qdim); k_.resize(T * kvdim); v_.resize(T * kvdim);
  ctx_.resize(T * qdim); tmp_.resize(T * H); gate_.resize(T * n_ff_); up_.resize(T * n_ff_);

  // Token embeddings scaled by sqrt(hidden), rounded to f32 as the reference does.
  const float emb_scale = (float)std::sqrt((double)H);
  std::vector<size_t> pos(T);
  rt.pool.parallel_for(S, [&](size_t s, int) {
    for (size_t i = start[s]; i < start[s + 1]; ++i) {
      float* x = x_.data() + i * H;
      weight_row_to_f32(rt.k, *tok_embd_, (size_t)batch.ids[i], x);
      scale_inplace(x, emb_scale, H);
      pos[i] = i - start[s];
    }
  });

  AttentionShape as;
  as.n_head = n_head_;
  as.n_head_kv = n_head_kv_;
  as.head_dim = head_dim_;
  as.scale = query_scale_;

  for (const GemmaLayer& L : layers_) {
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* h = h_.data() + i * H;
      const float* x = x_.data() + i * H;
      for (size_t c = 0; c < H; ++c) h[c] = x[c];
      rms_norm(h, H, L.attn_norm, eps_, 0.0f);
    });
    linear(rt, h_.data(), H, T, L.q, q_.data(), qdim);
    linear(rt, h_.data(), H, T, L.k, k_.data(), kvdim);
    linear(rt, h_.data(), H, T, L.v, v_.data(), kvdim);
    const std::vector<float>& inv_freq = L.sliding ? inv_freq_swa_ : inv_freq_full_;
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* q = q_.data() + i * qdim;
      float* k = k_.data() + i * kvdim;
      for (size_t hd = 0; hd < n_head_; ++hd) rms_norm(q + hd * head_dim_, head_dim_, L.q_norm, eps_, 0.0f);
      for (size_t hd = 0; hd < n_head_kv_; ++hd) rms_norm(k + hd * head_dim_, head_dim_, L.k_norm, eps_, 0.0f);
      rope_neox(q, n_head_, head_dim_, pos[i], inv_freq.data());
      rope_neox(k, n_head_kv_, head_dim_, pos[i], inv_freq.data());
    });
    // The file keeps the model card's window (512); attention is symmetric
    // with half of it on each side (|i - j| <= 256), as the reference computes.
    as.window = L.sliding ? window_ / 2 + 1 : 0;
    attention(rt, as, start, q_.data(), qdim, k_.data(), kvdim, v_.data(), kvdim, ctx_.data(), qdim);
    linear(rt, ctx_.data(), qdim, T, L.o, tmp_.data(), H);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* t = tmp_.data() + i * H;
      float* x = x_.data() + i * H;
      float* h = h_.data() + i * H;
      rms_norm(t, H, L.post_attn_norm, eps_, 0.0f);
      add_inplace(x, t, H);
      for (size_t c = 0; c < H; ++c) h[c] = x[c];
      rms_norm(h, H, L.ffn_norm, eps_, 0.0f);
    });
    linear(rt, h_.data(), H, T, L.gate, gate_.data(), n_ff_, Epilogue::GELU_TANH);
    linear(rt, h_.data(), H, T, L.up, up_.data(), n_ff_);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* g = gate_.data() + i * n_ff_;
      const float* u = up_.data() + i * n_ff_;
      for (size_t c = 0; c < n_ff_; ++c) g[c] *= u[c];
    });
    linear(rt, gate_.data(), n_ff_, T, L.down, tmp_.data(), H);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* t = tmp_.data() + i * H;
      rms_norm(t, H, L.post_ffn_norm, eps_, 0.0f);
      add_inplace(x_.data() + i * H, t, H);
    });
  }

  // Final norm, then mean pooling over every token (prompt included, as
  // sentence-transformers does for this model).
  pooled_.resize(S * H);
  rt.pool.parallel_for(S, [&](size_t s, int) {
    for (size_t i = start[s]; i < start[s + 1]; ++i) rms_norm(x_.data() + i * H, H, out_norm_, eps_, 0.0f);
    mean_rows(x_.data() + start[s] * H, start[s + 1] - start[s], H, pooled_.data() + s * H);
  });
  if (!dense2_.t) {
    std::copy(pooled_.begin(), pooled_.end(), out);
    return;
  }
  mid_.resize(S * dense2_.out());
  linear(rt, pooled_.data(), H, S, dense2_, mid_.data(), dense2_.out());
  linear(rt, mid_.data(), dense2_.out(), S, dense3_, out, dense3_.out());
}

}  // namespace

std::unique_ptr<Encoder> load_gemma3(const GGUFFile& f) { return std::unique_ptr<Encoder>(new Gemma3(f)); }

}  // namespace embedq
