// BERT encoder (all-MiniLM-L6-v2 and friends) as llama.cpp lays it out in
// GGUF (general.architecture = bert). Post-LayerNorm layers:
//   x = LN(x + Wo * attention(Wq x, Wk x, Wv x))
//   x = LN(x + W2 * gelu(W1 x))
// then mean or CLS pooling. Read top to bottom: load, then forward.
//
// XLM-RoBERTa runs here too. Its position ids start at padding_idx + 1; the
// converter drops the rows below that (as llama.cpp's does), so row i is
// position i again. A token equal to padding_idx (a "<pad>" typed in the text)
// gets the padding row instead and does not advance the position, as
// RoBERTa's create_position_ids_from_input_ids does; that row is kept in
// embedq.position_padding_row.
#include <algorithm>
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
  const float* w = nullptr;
  const float* b = nullptr;
};

struct BertLayer {
  Weight q, k, v, qkv, o, up, down;
  bool fused_qkv = false;
  Norm attn_norm, out_norm;
};

class Bert final : public FileEncoder {
 public:
  explicit Bert(const GGUFFile& f);
  void forward(Runtime& rt, const PackedBatch& batch, float* out) override;
  size_t dim() const override { return hidden_; }
  size_t max_positions() const override { return n_pos_; }
  size_t vocab_rows() const override { return n_vocab_; }

 private:
  Weight weight(const GGUFFile& f, const std::string& name, size_t in, size_t out);
  Norm norm(const GGUFFile& f, const std::string& name);

  size_t hidden_, n_layer_, n_head_, n_ff_, n_pos_, n_vocab_;
  float eps_;
  Pooling pooling_;
  const TensorView* tok_embd_;
  const TensorView* pos_embd_;
  const TensorView* type_embd_ = nullptr;
  int64_t pad_id_ = -1;                  // token whose position is the padding row
  std::vector<float> pad_position_;     // hidden: that row, when the model has one
  Norm embd_norm_;
  std::vector<BertLayer> layers_;
  // Activations, reused across calls.
  std::vector<float> x_, qkv_, ctx_, tmp_, ff_;
};

Norm Bert::norm(const GGUFFile& f, const std::string& name) {
  return Norm{vec(f, name + ".weight", hidden_), vec(f, name + ".bias", hidden_)};
}

Weight Bert::weight(const GGUFFile& f, const std::string& name, size_t in, size_t out) {
  Weight w = matrix(f, name + ".weight", in, out);
  if (f.find_tensor(name + ".bias")) w.bias = vec(f, name + ".bias", out);
  return w;
}

Bert::Bert(const GGUFFile& f) {
  const std::string a = "bert.";
  // Every size below becomes an allocation or a loop bound, so each is
  // range-checked before use (validate.h).
  hidden_ = (size_t)setting_int(f, a + "embedding_length", 1, kMaxWidth);
  n_layer_ = (size_t)setting_int(f, a + "block_count", 1, kMaxLayers);
  n_head_ = (size_t)setting_int(f, a + "attention.head_count", 1, (int64_t)hidden_);
  if (hidden_ % n_head_ != 0) {
    bad_setting(f, a + "attention.head_count",
                "the embedding width " + std::to_string(hidden_) + " must be a multiple of it");
  }
  // Optional keys the forward pass doesn't read must still agree with it: BERT
  // has no grouped-query attention and its head size is width / heads.
  if (setting_int(f, a + "attention.head_count_kv", (int64_t)n_head_, 1, kMaxWidth) != (int64_t)n_head_) {
    bad_setting(f, a + "attention.head_count_kv", "BERT needs as many key/value heads as attention.head_count");
  }
  for (const char* k : {"attention.key_length", "attention.value_length"}) {
    if (setting_int(f, a + k, (int64_t)(hidden_ / n_head_), 1, kMaxWidth) != (int64_t)(hidden_ / n_head_)) {
      bad_setting(f, a + k, "BERT's head size is embedding_length / head_count = " + std::to_string(hidden_ / n_head_));
    }
  }
  if (f.get_bool(a + "attention.causal", false)) {
    bad_setting(f, a + "attention.causal", "this encoder attends both ways; causal attention is not supported");
  }
  n_ff_ = (size_t)setting_int(f, a + "feed_forward_length", 1, kMaxFeedForward);
  n_pos_ = (size_t)setting_int(f, a + "context_length", kMinContext, kMaxContext);
  eps_ = (float)setting_float(f, a + "attention.layer_norm_epsilon", 1e-12, kMinNormEps, kMaxNormEps);
  const int64_t pool = f.get_int(a + "pooling_type", 1);
  if (pool != 1 && pool != 2) bad_setting(f, a + "pooling_type", "supported: 1 (mean), 2 (cls)");
  pooling_ = (Pooling)pool;
  const TensorView* te = f.find_tensor("token_embd.weight");
  if (!te) throw GGUFError("tensor 'token_embd.weight' is missing from the model file");
  n_vocab_ = (size_t)te->ne[1];
  tok_embd_ = &use(f.tensor("token_embd.weight", (int64_t)hidden_, (int64_t)n_vocab_));
  pos_embd_ = &use(f.tensor("position_embd.weight", (int64_t)hidden_, (int64_t)n_pos_));
  if (const TensorView* tt = f.find_tensor("token_types.weight")) {
    type_embd_ = &use(f.tensor("token_types.weight", (int64_t)hidden_, tt->ne[1]));
  }
  if (f.has("embedq.position_padding_row")) {
    pad_id_ = setting_int(f, "embedq.position_padding_id", 0, (int64_t)n_vocab_ - 1);
    pad_position_ = f.get_float_array("embedq.position_padding_row");
    if (pad_position_.size() != hidden_) {
      bad_setting(f, "embedq.position_padding_row", "it needs embedding_length = " + std::to_string(hidden_) + " values");
    }
    for (float x : pad_position_) {
      if (!std::isfinite(x)) bad_setting(f, "embedq.position_padding_row", "it holds a NaN or infinite value");
    }
  }
  embd_norm_ = norm(f, "token_embd_norm");
  layers_.resize(n_layer_);
  for (size_t l = 0; l < n_layer_; ++l) {
    BertLayer& L = layers_[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    if (f.find_tensor(p + "attn_qkv.weight")) {
      L.fused_qkv = true;
      L.qkv = weight(f, p + "attn_qkv", hidden_, 3 * hidden_);
    } else {
      L.q = weight(f, p + "attn_q", hidden_, hidden_);
      L.k = weight(f, p + "attn_k", hidden_, hidden_);
      L.v = weight(f, p + "attn_v", hidden_, hidden_);
    }
    L.o = weight(f, p + "attn_output", hidden_, hidden_);
    L.attn_norm = norm(f, p + "attn_output_norm");
    L.up = weight(f, p + "ffn_up", hidden_, n_ff_);
    L.down = weight(f, p + "ffn_down", n_ff_, hidden_);
    L.out_norm = norm(f, p + "layer_output_norm");
  }
}

void Bert::forward(Runtime& rt, const PackedBatch& batch, float* out) {
  const size_t h = hidden_;
  const std::vector<size_t>& start = batch.start;
  const size_t S = batch.size(), T = start.back();
  x_.resize(T * h);
  qkv_.resize(T * 3 * h);
  ctx_.resize(T * h);
  tmp_.resize(T * h);
  ff_.resize(T * n_ff_);

  // Embeddings: word + position + token type 0, then LayerNorm.
  rt.pool.parallel_for(S, [&](size_t s, int thread) {
    float* pe = rt.thread_scratch(thread, 2 * h);
    float* te = pe + h;
    if (type_embd_) weight_row_to_f32(rt.k, *type_embd_, 0, te);
    size_t pos = 0;
    for (size_t i = 0; i < start[s + 1] - start[s]; ++i) {
      float* x = x_.data() + (start[s] + i) * h;
      const int32_t id = batch.ids[start[s] + i];
      weight_row_to_f32(rt.k, *tok_embd_, (size_t)id, x);
      if (id == pad_id_ && !pad_position_.empty()) add_inplace(x, pad_position_.data(), h);
      else {
        weight_row_to_f32(rt.k, *pos_embd_, pos++, pe);
        add_inplace(x, pe, h);
      }
      if (type_embd_) add_inplace(x, te, h);
      layer_norm(x, h, embd_norm_.w, embd_norm_.b, eps_);
    }
  });

  AttentionShape as;
  as.n_head = as.n_head_kv = n_head_;
  as.head_dim = h / n_head_;
  as.scale = 1.0f / std::sqrt((float)as.head_dim);

  for (const BertLayer& L : layers_) {
    const float *q, *k, *v;
    size_t ld;
    if (L.fused_qkv) {
      linear(rt, x_.data(), h, T, L.qkv, qkv_.data(), 3 * h);
      q = qkv_.data(); k = q + h; v = q + 2 * h; ld = 3 * h;
    } else {
      float* base = qkv_.data();
      linear(rt, x_.data(), h, T, L.q, base, h);
      linear(rt, x_.data(), h, T, L.k, base + T * h, h);
      linear(rt, x_.data(), h, T, L.v, base + 2 * T * h, h);
      q = base; k = base + T * h; v = base + 2 * T * h; ld = h;
    }
    attention(rt, as, start, q, ld, k, ld, v, ld, ctx_.data(), h);
    linear(rt, ctx_.data(), h, T, L.o, tmp_.data(), h);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* x = x_.data() + i * h;
      add_inplace(x, tmp_.data() + i * h, h);
      layer_norm(x, h, L.attn_norm.w, L.attn_norm.b, eps_);
    });
    linear(rt, x_.data(), h, T, L.up, ff_.data(), n_ff_, Epilogue::GELU_ERF);
    linear(rt, ff_.data(), n_ff_, T, L.down, tmp_.data(), h);
    rt.pool.parallel_for(T, [&](size_t i, int) {
      float* x = x_.data() + i * h;
      add_inplace(x, tmp_.data() + i * h, h);
      layer_norm(x, h, L.out_norm.w, L.out_norm.b, eps_);
    });
  }

  rt.pool.parallel_for(S, [&](size_t s, int) {
    const float* xs = x_.data() + start[s] * h;
    if (pooling_ == Pooling::CLS) std::copy(xs, xs + h, out + s * h);
    else mean_rows(xs, start[s + 1] - start[s], h, out + s * h);
  });
}

}  // namespace

std::unique_ptr<Encoder> load_bert(const GGUFFile& f) { return std::unique_ptr<Encoder>(new Bert(f)); }

}  // namespace embedq
