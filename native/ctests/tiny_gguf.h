// Tiny BERT, EmbeddingGemma and Qwen3 models built in memory: the real files' keys,
// tensor names and layouts, at widths of 8, so a few KB. Small enough to load
// thousands of mutants under the sanitizers (test_model_fuzz.cpp), editable
// key by key for the load checks (test_model_load.cpp).
//
// The builder also records where it wrote each field (a Site), so a mutator
// can aim at length, type and value fields instead of hoping to hit them.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "quant.h"

namespace tiny {

using embedq::DType;

enum class Field { COUNT, LENGTH, TYPE, INT, U64, F32, F64, BOOL, N_DIMS, DIM, TENSOR_TYPE, OFFSET };
struct Site {
  size_t offset;
  Field kind;
};

struct Built {
  std::vector<uint8_t> bytes;
  std::vector<Site> sites;
  size_t data_begin = 0;  // tensor data runs from here to the end
};

// GGUF value types used here (gguf.h's GGUFType numbering).
enum : uint32_t { U8 = 0, I32 = 5, U32 = 4, F32 = 6, BOOL = 7, STR = 8, ARR = 9, U64 = 10, F64 = 12 };

class Builder {
 public:
  // Scalars; setting an existing key replaces its value in place.
  void u32(const std::string& k, uint32_t v) { set(k, U32, false, {(int64_t)v}, {}, {}); }
  void i32(const std::string& k, int32_t v) { set(k, I32, false, {v}, {}, {}); }
  void u64(const std::string& k, uint64_t v) { set(k, U64, false, {(int64_t)v}, {}, {}); }
  void f32(const std::string& k, float v) { set(k, F32, false, {}, {v}, {}); }
  void f64(const std::string& k, double v) { set(k, F64, false, {}, {v}, {}); }
  void boolean(const std::string& k, bool v) { set(k, BOOL, false, {v}, {}, {}); }
  void str(const std::string& k, const std::string& v) { set(k, STR, false, {}, {}, {v}); }
  void strs(const std::string& k, const std::vector<std::string>& v) { set(k, STR, true, {}, {}, v); }
  void f32s(const std::string& k, const std::vector<float>& v) { set(k, F32, true, {}, {v.begin(), v.end()}, {}); }
  void i32s(const std::string& k, const std::vector<int64_t>& v, uint32_t type = I32) { set(k, type, true, v, {}, {}); }
  // The string list of an array key, to edit in place.
  std::vector<std::string>& strings(const std::string& k) {
    for (KV& kv : kvs_)
      if (kv.key == k) return kv.s;
    throw std::out_of_range("no key " + k);
  }
  std::vector<double>& floats(const std::string& k) {
    for (KV& kv : kvs_)
      if (kv.key == k) return kv.f;
    throw std::out_of_range("no key " + k);
  }
  std::vector<int64_t>& ints(const std::string& k) {
    for (KV& kv : kvs_)
      if (kv.key == k) return kv.i;
    throw std::out_of_range("no key " + k);
  }
  void remove(const std::string& k) {
    for (size_t i = 0; i < kvs_.size(); ++i)
      if (kvs_[i].key == k) kvs_.erase(kvs_.begin() + (long)i);
  }

  // A tensor of ne0 x ne1 values (ne1 = 0: 1-D), stored as `type`.
  void tensor(const std::string& name, int64_t ne0, int64_t ne1, std::vector<float> values, DType type = DType::F32) {
    tensors_.push_back({name, ne0, ne1, std::move(values), type});
  }
  std::vector<float>& values(const std::string& name) {
    for (auto& t : tensors_)
      if (t.name == name) return t.values;
    throw std::out_of_range("no tensor " + name);
  }

  Built build() const {
    Built out;
    auto& b = out.bytes;
    auto site = [&](Field f) { out.sites.push_back({b.size(), f}); };
    auto put = [&](const void* p, size_t n) { b.insert(b.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
    auto u32v = [&](uint32_t v) { put(&v, 4); };
    auto u64v = [&](uint64_t v) { put(&v, 8); };
    auto string = [&](const std::string& s) { site(Field::LENGTH); u64v(s.size()); put(s.data(), s.size()); };
    auto number = [&](uint32_t type, int64_t i, double f) {
      switch (type) {
        case U8: site(Field::INT); b.push_back((uint8_t)i); break;
        case BOOL: site(Field::BOOL); b.push_back((uint8_t)i); break;
        case I32: case U32: site(Field::INT); u32v((uint32_t)i); break;
        case U64: site(Field::U64); u64v((uint64_t)i); break;
        case F32: { site(Field::F32); const float x = (float)f; put(&x, 4); break; }
        default: site(Field::F64); put(&f, 8); break;
      }
    };
    u32v(0x46554747u);
    u32v(3);
    site(Field::COUNT); u64v(tensors_.size());
    site(Field::COUNT); u64v(kvs_.size());
    for (const KV& kv : kvs_) {
      string(kv.key);
      site(Field::TYPE);
      if (kv.array) {
        u32v(ARR);
        site(Field::TYPE); u32v(kv.type);
        const size_t n = kv.type == STR ? kv.s.size() : kv.type == F32 || kv.type == F64 ? kv.f.size() : kv.i.size();
        site(Field::COUNT); u64v(n);
        for (size_t j = 0; j < n; ++j) {
          if (kv.type == STR) string(kv.s[j]);
          else number(kv.type, kv.i.empty() ? 0 : kv.i[j], kv.f.empty() ? 0 : kv.f[j]);
        }
      } else {
        u32v(kv.type);
        if (kv.type == STR) string(kv.s[0]);
        else number(kv.type, kv.i.empty() ? 0 : kv.i[0], kv.f.empty() ? 0 : kv.f[0]);
      }
    }
    std::vector<std::vector<uint8_t>> data;
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      string(t.name);
      site(Field::N_DIMS); u32v(t.ne1 ? 2 : 1);
      site(Field::DIM); u64v((uint64_t)t.ne0);
      if (t.ne1) { site(Field::DIM); u64v((uint64_t)t.ne1); }
      site(Field::TENSOR_TYPE); u32v((uint32_t)t.type);
      site(Field::OFFSET); u64v(offset);
      data.push_back(encode(t));
      offset += (data.back().size() + 31) / 32 * 32;
    }
    while (b.size() % 32) b.push_back(0);
    out.data_begin = b.size();
    for (auto& d : data) {
      put(d.data(), d.size());
      while (b.size() % 32) b.push_back(0);
    }
    return out;
  }

 private:
  struct KV {
    std::string key;
    uint32_t type;
    bool array;
    std::vector<int64_t> i;
    std::vector<double> f;
    std::vector<std::string> s;
  };
  struct Tensor {
    std::string name;
    int64_t ne0, ne1;
    std::vector<float> values;
    DType type;
  };

  void set(const std::string& k, uint32_t type, bool array, std::vector<int64_t> i, std::vector<double> f,
           std::vector<std::string> s) {
    KV kv{k, type, array, std::move(i), std::move(f), std::move(s)};
    for (KV& old : kvs_)
      if (old.key == k) { old = std::move(kv); return; }
    kvs_.push_back(std::move(kv));
  }

  static std::vector<uint8_t> encode(const Tensor& t) {
    std::vector<uint8_t> out;
    const float* v = t.values.data();
    const size_t n = t.values.size();
    if (t.type == DType::F32) {
      out.resize(4 * n);
      std::memcpy(out.data(), v, 4 * n);
    } else if (t.type == DType::F16) {
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = embedq::fp32_to_fp16(v[i]);
        out.push_back((uint8_t)h);
        out.push_back((uint8_t)(h >> 8));
      }
    } else {  // Q8_0; a block holding a non-finite value gets a NaN scale
      std::vector<float> finite(v, v + n);
      for (float& x : finite)
        if (!std::isfinite(x)) x = 0;
      std::vector<embedq::BlockQ8_0> blocks(n / embedq::QK8_0);
      embedq::kernels_scalar().quantize_row_q8_0(finite.data(), blocks.data(), n);
      for (size_t k = 0; k < blocks.size(); ++k)
        for (size_t j = 0; j < (size_t)embedq::QK8_0; ++j)
          if (!std::isfinite(v[k * embedq::QK8_0 + j])) blocks[k].d = 0x7e00;
      out.resize(blocks.size() * sizeof(embedq::BlockQ8_0));
      std::memcpy(out.data(), blocks.data(), out.size());
    }
    return out;
  }

  std::vector<KV> kvs_;
  std::vector<Tensor> tensors_;
};

constexpr const char* WS = "\xE2\x96\x81";  // U+2581, the word-start mark

// Random weights around `center` with a fixed seed per model, so runs repeat.
struct Weights {
  std::mt19937 rng;
  explicit Weights(uint32_t seed) : rng(seed) {}
  std::vector<float> make(size_t n, float scale = 0.3f, float center = 0.f) {
    std::normal_distribution<float> d(center, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
  }
};

// BERT, post-LN, as all-MiniLM-L6-v2's GGUF: width 8, 2 heads, 2 layers, FF 32.
inline Builder bert() {
  const int64_t H = 8, FF = 32, CTX = 16;
  const std::vector<std::string> tokens = {
      "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", std::string(WS) + "hello", std::string(WS) + "world",
      std::string(WS) + "the", std::string(WS) + "cat", std::string(WS) + "h", "e", "l", "o", "d", "ld",
      std::string(WS) + "!", std::string(WS) + ","};
  Builder b;
  b.str("general.architecture", "bert");
  b.str("general.name", "tiny-bert");
  b.u32("bert.context_length", CTX);
  b.u32("bert.embedding_length", H);
  b.u32("bert.feed_forward_length", FF);
  b.u32("bert.block_count", 2);
  b.u32("bert.attention.head_count", 2);
  b.f32("bert.attention.layer_norm_epsilon", 1e-12f);
  b.boolean("bert.attention.causal", false);
  b.u32("bert.pooling_type", 1);
  b.str("tokenizer.ggml.model", "bert");
  b.strs("tokenizer.ggml.tokens", tokens);
  std::vector<int64_t> types;
  for (const auto& t : tokens) types.push_back(t[0] == '[' ? 3 : 1);
  b.i32s("tokenizer.ggml.token_type", types);
  b.u32("tokenizer.ggml.unknown_token_id", 1);
  b.u32("tokenizer.ggml.cls_token_id", 2);
  b.u32("tokenizer.ggml.seperator_token_id", 3);
  b.u32("tokenizer.ggml.padding_token_id", 0);
  b.u32("tokenizer.ggml.mask_token_id", 4);
  b.u32("embedq.max_seq_length", 12);
  b.boolean("embedq.do_lower_case", true);
  b.boolean("embedq.normalize", true);
  b.i32s("embedq.dims_allowed", {8, 4});

  Weights w(1);
  const int64_t V = (int64_t)tokens.size();
  auto norm = [&](const std::string& n) {
    b.tensor(n + ".weight", H, 0, w.make(H, 0.1f, 1.f));
    b.tensor(n + ".bias", H, 0, w.make(H, 0.1f));
  };
  b.tensor("token_embd.weight", H, V, w.make(H * V));
  b.tensor("position_embd.weight", H, CTX, w.make(H * CTX));
  b.tensor("token_types.weight", H, 2, w.make(H * 2));
  norm("token_embd_norm");
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
      // One F16 matrix, so the load scan sees every stored type.
      b.tensor(p + m + ".weight", H, H, w.make(H * H), l == 1 && m[5] == 'q' ? DType::F16 : DType::F32);
      b.tensor(p + m + ".bias", H, 0, w.make(H, 0.1f));
    }
    norm(p + "attn_output_norm");
    b.tensor(p + "ffn_up.weight", H, FF, w.make(H * FF));
    b.tensor(p + "ffn_up.bias", FF, 0, w.make(FF, 0.1f));
    b.tensor(p + "ffn_down.weight", FF, H, w.make(FF * H), DType::Q8_0);
    b.tensor(p + "ffn_down.bias", H, 0, w.make(H, 0.1f));
    norm(p + "layer_output_norm");
  }
  return b;
}

// EmbeddingGemma: 2 heads of 4 sharing one KV head, 2 layers (the first
// windowed), FF 32, Dense 8 -> 32 -> 8, SentencePiece BPE vocabulary.
inline Builder gemma() {
  const int64_t H = 8, HD = 4, FF = 32, D2 = 32;
  Builder b;
  struct Piece {
    std::string text;
    int32_t type;
  };
  std::vector<Piece> pieces = {{"<pad>", 3}, {"<eos>", 3}, {"<bos>", 3}, {"<unk>", 2}, {"<start_of_turn>", 4}};
  for (const char* p : {"h", "e", "l", "o", "w", "r", "d", "t", "a", "s", "k", ":", "|", "q", "u", "y", "i", "n", "x", "c"})
    pieces.push_back({p, 1});
  for (const char* p : {"he", "ll", "llo", "or", "ld", "ex", "ta"}) pieces.push_back({p, 1});
  for (const char* p : {"", "h", "w", "t"}) pieces.push_back({std::string(WS) + p, 1});
  for (const char* p : {"<0x41>", "<0xC3>", "<0xA9>", "<0xFF>"}) pieces.push_back({p, 6});
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int64_t> types;
  for (size_t i = 0; i < pieces.size(); ++i) {
    tokens.push_back(pieces[i].text);
    scores.push_back(pieces[i].type == 1 ? -(float)i : 0.f);
    types.push_back(pieces[i].type);
  }
  const std::string a = "gemma-embedding.";
  b.str("general.architecture", "gemma-embedding");
  b.str("general.name", "tiny-gemma");
  b.u32(a + "context_length", 32);
  b.u32(a + "embedding_length", H);
  b.u32(a + "block_count", 2);
  b.u32(a + "feed_forward_length", FF);
  b.u32(a + "attention.head_count", 2);
  b.u32(a + "attention.head_count_kv", 1);
  b.u32(a + "attention.key_length", HD);
  b.u32(a + "attention.value_length", HD);
  b.f32(a + "attention.layer_norm_rms_epsilon", 1e-6f);
  b.u32(a + "attention.sliding_window", 4);
  b.i32s(a + "attention.sliding_window_pattern", {1, 0}, BOOL);
  b.boolean(a + "attention.causal", false);
  b.f32(a + "rope.freq_base", 1e6f);
  b.f32(a + "rope.freq_base_swa", 1e4f);
  b.u32(a + "pooling_type", 1);
  b.str("tokenizer.ggml.model", "llama");
  b.strs("tokenizer.ggml.tokens", tokens);
  b.f32s("tokenizer.ggml.scores", scores);
  b.i32s("tokenizer.ggml.token_type", types);
  b.u32("tokenizer.ggml.bos_token_id", 2);
  b.u32("tokenizer.ggml.eos_token_id", 1);
  b.u32("tokenizer.ggml.unknown_token_id", 3);
  b.u32("tokenizer.ggml.padding_token_id", 0);
  b.boolean("tokenizer.ggml.add_bos_token", true);
  b.boolean("tokenizer.ggml.add_eos_token", true);
  b.u32("embedq.max_seq_length", 24);
  b.strs("embedq.prompt_names", {"query", "document"});
  b.strs("embedq.prompt_texts", {"task: search | query: ", "title: none | text: "});
  b.i32s("embedq.dims_allowed", {8, 4});

  Weights w(2);
  const int64_t V = (int64_t)tokens.size();
  auto norm = [&](const std::string& n, int64_t size) { b.tensor(n, size, 0, w.make((size_t)size, 0.1f, 1.f)); };
  b.tensor("token_embd.weight", H, V, w.make(H * V));
  norm("output_norm.weight", H);
  b.tensor("dense_2.weight", H, D2, w.make(H * D2), DType::F16);
  b.tensor("dense_3.weight", D2, H, w.make(D2 * H), DType::Q8_0);
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    norm(p + "attn_norm.weight", H);
    b.tensor(p + "attn_q.weight", H, 2 * HD, w.make(H * 2 * HD));
    b.tensor(p + "attn_k.weight", H, HD, w.make(H * HD));
    b.tensor(p + "attn_v.weight", H, HD, w.make(H * HD));
    norm(p + "attn_q_norm.weight", HD);
    norm(p + "attn_k_norm.weight", HD);
    b.tensor(p + "attn_output.weight", 2 * HD, H, w.make(2 * HD * H));
    norm(p + "post_attention_norm.weight", H);
    norm(p + "ffn_norm.weight", H);
    b.tensor(p + "ffn_gate.weight", H, FF, w.make(H * FF));
    b.tensor(p + "ffn_up.weight", H, FF, w.make(H * FF), DType::F16);
    b.tensor(p + "ffn_down.weight", FF, H, w.make(FF * H), DType::Q8_0);
    norm(p + "post_ffw_norm.weight", H);
  }
  return b;
}

// Qwen3: 4 heads of 4 sharing 2 KV heads (head size 4 x 4 heads != width 8),
// 2 layers, FF 32, a byte-level BPE vocabulary with merges, added tokens and
// one padding entry; causal attention, last-token pooling.
inline Builder qwen3() {
  const int64_t H = 8, HD = 4, NH = 4, NKV = 2, FF = 32;
  Builder b;
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  // "\xC4\xA0" is U+0120 (Ġ), the byte-level space; "\xC4\x8A" U+010A (Ċ), the newline.
  for (const char* t : {"h", "e", "l", "o", "w", "r", "d", "t", "a", "s", "k", "'", "1", "2", "\xC4\xA0", "\xC4\x8A",
                        "he", "ll", "hell", "\xC4\xA0w", "or", "\xC4\xA0wor"}) {
    tokens.push_back(t);
    types.push_back(1);
  }
  for (const char* t : {"<|endoftext|>", "<|im_end|>"}) {
    tokens.push_back(t);
    types.push_back(3);
  }
  tokens.push_back("<think>");
  types.push_back(4);
  tokens.push_back("[PAD25]");
  types.push_back(5);
  const std::string a = "qwen3.";
  b.str("general.architecture", "qwen3");
  b.str("general.name", "tiny-qwen3");
  b.u32(a + "context_length", 40);
  b.u32(a + "embedding_length", H);
  b.u32(a + "block_count", 2);
  b.u32(a + "feed_forward_length", FF);
  b.u32(a + "attention.head_count", NH);
  b.u32(a + "attention.head_count_kv", NKV);
  b.u32(a + "attention.key_length", HD);
  b.u32(a + "attention.value_length", HD);
  b.f32(a + "attention.layer_norm_rms_epsilon", 1e-6f);
  b.f32(a + "rope.freq_base", 1e6f);
  b.u32(a + "pooling_type", 3);
  b.str("tokenizer.ggml.model", "gpt2");
  b.str("tokenizer.ggml.pre", "qwen2");
  b.strs("tokenizer.ggml.tokens", tokens);
  b.i32s("tokenizer.ggml.token_type", types);
  b.strs("tokenizer.ggml.merges", {"h e", "l l", "he ll", "\xC4\xA0 w", "o r", "\xC4\xA0w or"});
  b.u32("tokenizer.ggml.eos_token_id", 22);
  b.u32("tokenizer.ggml.eot_token_id", 23);
  b.u32("tokenizer.ggml.padding_token_id", 22);
  b.boolean("tokenizer.ggml.add_bos_token", false);
  b.boolean("tokenizer.ggml.add_eos_token", true);
  b.u32("embedq.max_seq_length", 32);
  b.strs("embedq.prompt_names", {"query"});
  b.strs("embedq.prompt_texts", {"Instruct: ask\nQuery:"});
  b.i32s("embedq.dims_allowed", {8});

  Weights w(3);
  const int64_t V = (int64_t)tokens.size();
  auto norm = [&](const std::string& n, int64_t size) { b.tensor(n, size, 0, w.make((size_t)size, 0.1f, 1.f)); };
  b.tensor("token_embd.weight", H, V, w.make(H * V));
  norm("output_norm.weight", H);
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    norm(p + "attn_norm.weight", H);
    b.tensor(p + "attn_q.weight", H, NH * HD, w.make(H * NH * HD));
    b.tensor(p + "attn_k.weight", H, NKV * HD, w.make(H * NKV * HD), DType::F16);
    b.tensor(p + "attn_v.weight", H, NKV * HD, w.make(H * NKV * HD));
    norm(p + "attn_q_norm.weight", HD);
    norm(p + "attn_k_norm.weight", HD);
    b.tensor(p + "attn_output.weight", NH * HD, H, w.make(NH * HD * H));
    norm(p + "ffn_norm.weight", H);
    b.tensor(p + "ffn_gate.weight", H, FF, w.make(H * FF));
    b.tensor(p + "ffn_up.weight", H, FF, w.make(H * FF));
    b.tensor(p + "ffn_down.weight", FF, H, w.make(FF * H), DType::Q8_0);
  }
  return b;
}

// ModernBERT: GPT-2's split (digits run together: "12" is one piece), no NFC,
// [CLS] text [SEP]; three layers, layer 0 global and without attn_norm, the
// other two windowed (4 tokens: 2 each side); biases on the final norm only.
inline Builder modernbert() {
  const int64_t H = 8, NH = 2, FF = 32;
  Builder b;
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  for (const char* t : {"h", "e", "l", "o", "w", "r", "d", "t", "a", "s", "k", "'", "1", "2", "\xC4\xA0", "\xC4\x8A",
                        "he", "ll", "hell", "\xC4\xA0w", "or", "\xC4\xA0wor", "12"}) {
    tokens.push_back(t);
    types.push_back(1);
  }
  for (const char* t : {"[CLS]", "[SEP]"}) {
    tokens.push_back(t);
    types.push_back(3);
  }
  tokens.push_back("[PAD25]");
  types.push_back(5);
  const std::string a = "modern-bert.";
  b.str("general.architecture", "modern-bert");
  b.str("general.name", "tiny-modernbert");
  b.u32(a + "context_length", 40);
  b.u32(a + "embedding_length", H);
  b.u32(a + "block_count", 3);
  b.u32(a + "feed_forward_length", FF);
  b.u32(a + "attention.head_count", NH);
  b.f32(a + "attention.layer_norm_epsilon", 1e-5f);
  b.boolean(a + "attention.causal", false);
  b.u32(a + "attention.sliding_window", 4);
  b.u32(a + "attention.sliding_window_pattern", 3);
  b.f32(a + "rope.freq_base", 160000.f);
  b.f32(a + "rope.freq_base_swa", 10000.f);
  b.str(a + "hidden_activation", "gelu");
  b.u32(a + "pooling_type", 1);
  b.str("tokenizer.ggml.model", "gpt2");
  b.str("tokenizer.ggml.pre", "modern-bert");
  b.strs("tokenizer.ggml.tokens", tokens);
  b.i32s("tokenizer.ggml.token_type", types);
  b.strs("tokenizer.ggml.merges", {"h e", "l l", "he ll", "\xC4\xA0 w", "o r", "\xC4\xA0w or", "1 2"});
  b.u32("tokenizer.ggml.cls_token_id", 23);
  b.u32("tokenizer.ggml.seperator_token_id", 24);
  b.boolean("tokenizer.ggml.add_bos_token", true);
  b.boolean("tokenizer.ggml.add_eos_token", true);
  b.u32("embedq.max_seq_length", 32);

  Weights w(4);
  const int64_t V = (int64_t)tokens.size();
  auto norm = [&](const std::string& n) { b.tensor(n, H, 0, w.make((size_t)H, 0.1f, 1.f)); };
  b.tensor("token_embd.weight", H, V, w.make(H * V));
  norm("token_embd_norm.weight");
  norm("output_norm.weight");
  b.tensor("output_norm.bias", H, 0, w.make(H));
  for (int l = 0; l < 3; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    if (l > 0) norm(p + "attn_norm.weight");
    b.tensor(p + "attn_qkv.weight", H, 3 * H, w.make(H * 3 * H), l == 1 ? DType::F16 : DType::F32);
    b.tensor(p + "attn_output.weight", H, H, w.make(H * H));
    norm(p + "ffn_norm.weight");
    b.tensor(p + "ffn_up.weight", H, 2 * FF, w.make(H * 2 * FF));
    b.tensor(p + "ffn_down.weight", FF, H, w.make(FF * H), DType::Q8_0);
  }
  return b;
}

}  // namespace tiny
