// ModernBERT encoders (gte-modernbert, modernbert-embed) as llama.cpp lays
// them out in GGUF (general.architecture = modern-bert). Pre-norm, no
// position table: rotary embeddings instead, with a different base for the
// windowed layers. Per layer:
//   h = LayerNorm(x)  (none in layer 0: the embeddings were just normed)
//   q,k,v = split(Wqkv h); q,k = RoPE(q,k)
//   x = x + Wo * attention(q, k, v)   (bidirectional; every n-th layer global,
//                                      the others see |i - j| <= window / 2)
//   x = x + Wd * (gelu(a) * g)        with [a, g] = Wi LayerNorm(x)
//                                     (silu in SwiGLU derivatives)
// Embeddings: LayerNorm(token_embd); at the end a LayerNorm, then mean or CLS
// pooling. Norms and linears carry biases only if the file has them
// (ModernBERT's defaults have none).
//
// Weights (ggml order: ne[0] is the input width; H hidden, F feed-forward width):
//   token_embd.weight [H, V]   token_embd_norm.weight [H]
//   blk.N.attn_norm.weight [H] (absent in layer 0)
//   blk.N.attn_qkv.weight [H, 3H]   blk.N.attn_output.weight [H, H]
//   blk.N.ffn_norm.weight [H]  blk.N.ffn_up.weight [H, 2F]   blk.N.ffn_down.weight [F, H]
//   output_norm.weight [H]
#include <cmath>
#include <string>

#include "attention.h"
#include "linear.h"
#include "model.h"
#include "ops.h"
#include "validate.h"

namespace embedq {

namespace {

struct Norm {
  const float *w = nullptr, *b = nullptr;
};

struct MbLayer {
  Norm attn_norm, ffn_norm;  // attn_norm.w null in layer 0
  Weight qkv, o, up, down;
  bool sliding = false;
};

class ModernBert final : public FileEncoder {
 public:
  explicit ModernBert(const GGUFFile& f);
  void forward(Runtime& rt, const PackedBatch& batch, float* out) override;
  size_t dim() const override { return hidden_; }
  size_t max_positions() const override { return n_ctx_; }
  size_t vocab_rows() const override { return n_vocab_; }

 private:
  Norm norm(const GGUFFile& f, const std::string& name) {
    Norm n;
    n.w = vec(f, name + ".weight", hidden_);
    if (f.find_tensor(name + ".bias")) n.b = vec(f, name + ".bias", hidden_);
    return n;
  }
  Weight weight(const GGUFFile& f, const std::string& name, size_t in, size_t out) {
    Weight w = matrix(f, name + ".weight", in, out);
    if (f.find_tensor(name + ".bias")) w.bias = vec(f, name + ".bias", out);
    return w;
  }
  void apply(const Norm& n, float* x) const { layer_norm(x, hidden_, n.w, n.b, eps_); }

  size_t hidden_, n_layer_, n_head_, head_dim_, n_ff_, n_ctx_, n_vocab_, window_;
  float eps_;
  bool silu_ = false;  // the gate's activation: SiLU, else exact GELU
  Pooling pooling_;
  std::vector<float> inv_freq_full_, inv_freq_swa_;
  const TensorView* tok_embd_;
  Norm embd_norm_, out_norm_;
  std::vector<MbLayer> layers_;
  std::vector<float> x_, h_, qkv_, ctx_, tmp_, up_;
};

ModernBert::ModernBert(const GGUFFile& f) {
  const std::string a = "modern-bert.";
  // Every size below becomes an allocation or a loop bound (validate.h).
  hidden_ = (size_t)setting_int(f, a + "embedding_length", 1, kMaxWidth);
  n_layer_ = (size_t)setting_int(f, a + "block_count", 1, kMaxLayers);
  n_head_ = (size_t)setting_int(f, a + "attention.head_count", 1, (int64_t)hidden_);
  if (hidden_ % n_head_ != 0) {
    bad_setting(f, a + "attention.head_count",
                "the embedding width " + std::to_string(hidden_) + " must be a multiple of it");
  }
  head_dim_ = hidden_ / n_head_;
  if (head_dim_ % 2 != 0) bad_setting(f, a + "attention.head_count", "RoPE rotates pairs, so the head size must be even");
  if (f.get_bool(a + "attention.causal", false)) {
    bad_setting(f, a + "attention.causal", "this encoder attends both ways; causal attention is not supported");
  }
  // llama.cpp's converter writes transformers' name: "gelu" (exact GELU, so
  // GeGLU) for ModernBERT itself, "silu" (SwiGLU) for derivatives such as
  // Granite Embedding R2.
  const std::string act = f.get_string(a + "hidden_activation", "gelu");
  if (act != "gelu" && act != "silu") {
    bad_setting(f, a + "hidden_activation", "'" + utf8_safe(act) + "' is not supported (supported: gelu, silu)");
  }
  silu_ = act == "silu";
  n_ff_ = (size_t)setting_int(f, a + "feed_forward_length", 1, kMaxFeedForward);
  n_ctx_ = (size_t)setting_int(f, a + "context_length", kMinContext, kMaxContext);
  // The model card's local_attention (128): a window of 64 tokens on each side.
  window_ = (size_t)setting_int(f, a + "attention.sliding_window", 1, kMaxContext);
  // llama.cpp's converter files ModernBERT's LayerNorm epsilon under the RMS
  // key only (it looks norm_eps up as an RMS setting); ours writes both. The
  // plain key, the one llama.cpp's loader reads, wins.
  const std::string eps_key = f.has(a + "attention.layer_norm_epsilon") ? a + "attention.layer_norm_epsilon"
                                                                        : a + "attention.layer_norm_rms_epsilon";
  eps_ = (float)setting_float(f, eps_key, 1e-5, kMinNormEps, kMaxNormEps);
  const int64_t pool = f.get_int(a + "pooling_type", 1);
  if (pool != 1 && pool != 2) bad_setting(f, a + "pooling_type", "supported: 1 (mean), 2 (cls)");
  pooling_ = (Pooling)pool;

  // See gemma3.cpp for the bounds. ModernBERT's defaults: 160000 global, 10000 local.
  const double base_full = setting_float(f, a + "rope.freq_base", 160000, 1, 1e12);
  const double base_swa = setting_float(f, a + "rope.freq_base_swa", 10000, 1, 1e12);
  for (size_t i = 0; i < head_dim_ / 2; ++i) {
    const double e = -2.0 * (double)i / (double)head_dim_;
    inv_freq_full_.push_back((float)std::pow(base_full, e));
    inv_freq_swa_.push_back((float)std::pow(base_swa, e));
  }

  // Layer l is global when l % every == 0 (layer 0 always), as transformers
  // derives layer_types from global_attn_every_n_layers; an array gives one
  // flag per layer, non-zero = windowed.
  std::vector<int32_t> pattern;
  const std::string pk = a + "attention.sliding_window_pattern";
  if (const GGUFValue* p = f.find(pk)) {
    if (p->type == GGUFType::ARRAY) {
      pattern = f.get_int_array(pk);
    } else {
      const int64_t every = setting_int(f, pk, 1, kMaxLayers);
      for (size_t l = 0; l < n_layer_; ++l) pattern.push_back((int64_t)l % every != 0);
    }
  }
  if (pattern.empty())
    for (size_t l = 0; l < n_layer_; ++l) pattern.push_back(l % 3 != 0);
  if (pattern.size() != n_layer_) {
    bad_setting(f, pk, "it needs one entry per layer (block_count " + std::to_string(n_layer_) + ")");
  }

  const TensorView* te = f.find_tensor("token_embd.weight");
  if (!te) throw GGUFError("tensor 'token_embd.weight' is missing from the model file");
  n_vocab_ = (size_t)te->ne[1];
  tok_embd_ = &use(f.tensor("token_embd.weight", (int64_t)hidden_, (int64_t)n_vocab_));
  embd_norm_ = norm(f, "token_embd_norm");
  out_norm_ = norm(f, "output_norm");

  layers_.resize(n_layer_);
  for (size_t l = 0; l < n_layer_; ++l) {
    MbLayer& L = layers_[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    // Layer 0's attention input is the normed embedding itself.
    if (l > 0) L.attn_norm = norm(f, p + "attn_norm");
    else if (f.find_tensor(p + "attn_norm.weight")) {
      throw GGUFError("tensor '" + p + "attn_norm.weight' is unexpected: ModernBERT's first layer has no attention norm");
    }
    L.qkv = weight(f, p + "attn_qkv", hidden_, 3 * hidden_);
    L.o = weight(f, p + "attn_output", hidden_, hidden_);
    L.ffn_norm = norm(f, p + "ffn_norm");
    L.up = weight(f, p + "ffn_up", hidden_, 2 * n_ff_);
    L.down = weight(f, p + "ffn_down", n_ff_, hidden_);
    L.sliding = pattern[l] != 0;
  }
}

void ModernBert::forward(Runtime& rt, const PackedBatch& batch, float* out) {
  const size_t H = hidden_, F = n_ff_;
  const std::vector<size_t>& start = batch.start;
  const size_t S = batch.size(), T = start.back();
  x_.resize(T * H); h_.resize(T * H); qkv_.resize(T * 3 * H); ctx_.resize(T * H); tmp_.resize(T * H);
  up_.resize(T * 2 * F);

  std::vector<size_t> pos(T);
  rt.pool.parallel_for(S, [&](size_t s, int) {
    for (size_t i = start[s]; i < start[s + 1]; ++i) {
      float* x = x_.data() + i * H;
      weight_row_to_f32(rt.k, *tok_embd_, (size_t)batch.ids[i], x);
      apply(embd_norm_, x);
      pos[i] = i - start[s];
    }
  });

  AttentionShape as;
  as.n_head = n_head_;
  as.n_head_kv = n_head_;
  as.head_dim = head_dim_;
  as.scale = 1.0f / std::sqrt((float)head_dim_);

  for (const MbLayer& L : layers_) {
    const float* in = x_.data();
    if (L.attn_norm.w) {
      rt.pool.parallel_for(T, [&](size_t i, int) {
        float* h = h_.data() + i * H;
        const float* x = x_.data() + i * H;
        for (size_t c = 0; c < H; ++c) h[c] = x[c];
        apply(L.attn_norm, h);
      });
      in = h_.data();
    }
    linear(rt, in, H, T, L.qkv, qkv_.data(), 3 * H);
    const std::vector<float>& inv_freq = L.sliding ? inv_freq_swa_ : inv_freq_full_;
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* q = qkv_.data() + i * 3 * H;
      rope_neox(q, n_head_, head_dim_, pos[i], inv_freq.data());
      rope_neox(q + H, n_head_, head_dim_, pos[i], inv_freq.data());
    });
    // transformers masks |i - j| > local_attention / 2 (its config's
    // sliding_window); attention() keeps |i - j| < as.window.
    as.window = L.sliding ? window_ / 2 + 1 : 0;
    attention(rt, as, start, qkv_.data(), 3 * H, qkv_.data() + H, 3 * H, qkv_.data() + 2 * H, 3 * H, ctx_.data(), H);
    linear(rt, ctx_.data(), H, T, L.o, tmp_.data(), H);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* x = x_.data() + i * H;
      float* h = h_.data() + i * H;
      add_inplace(x, tmp_.data() + i * H, H);
      for (size_t c = 0; c < H; ++c) h[c] = x[c];
      apply(L.ffn_norm, h);
    });
    linear(rt, h_.data(), H, T, L.up, up_.data(), 2 * F);
    // Wi's output is [input, gate]; act(input) * gate goes over the input
    // half, which the down projection then reads with the row stride 2F.
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* u = up_.data() + i * 2 * F;
      if (silu_) silu(u, F);
      else gelu_erf(u, F);
      for (size_t c = 0; c < F; ++c) u[c] *= u[F + c];
    });
    linear(rt, up_.data(), 2 * F, T, L.down, tmp_.data(), H);
    rt.pool.parallel_for(T, [&](size_t i, int) { add_inplace(x_.data() + i * H, tmp_.data() + i * H, H); });
  }

  rt.pool.parallel_for(S, [&](size_t s, int) {
    float* o = out + s * H;
    if (pooling_ == Pooling::CLS) {
      const float* x = x_.data() + start[s] * H;
      for (size_t c = 0; c < H; ++c) o[c] = x[c];
      apply(out_norm_, o);
      return;
    }
    for (size_t i = start[s]; i < start[s + 1]; ++i) apply(out_norm_, x_.data() + i * H);
    mean_rows(x_.data() + start[s] * H, start[s + 1] - start[s], H, o);
  });
}

}  // namespace

std::unique_ptr<Encoder> load_modernbert(const GGUFFile& f) { return std::unique_ptr<Encoder>(new ModernBert(f)); }

}  // namespace embedq
