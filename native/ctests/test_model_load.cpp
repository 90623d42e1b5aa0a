// Load-time checks of model files (validate.h): every setting out of range,
// every non-finite weight, and the output check behind them, each refused
// with a GGUFError that names the key or tensor and the bad value. Tiny
// models from tiny_gguf.h; the random-mutation fuzz is test_model_fuzz.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "kernels/kernels.h"
#include "model.h"
#include "tiny_gguf.h"
#include "validate.h"

using namespace embedq;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

std::unique_ptr<Model> load(const tiny::Builder& b) {
  const tiny::Built built = b.build();
  ModelOptions o;
  o.threads = 1;
  return std::make_unique<Model>(GGUFFile::from_buffer(built.bytes.data(), built.bytes.size()), o);
}

std::string g9(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

// Loading must fail with a GGUFError whose message holds every needle.
void expect_refused(const tiny::Builder& b, const std::vector<std::string>& needles, int line) {
  try {
    load(b);
    check::record(false, __FILE__, line, "loaded; expected a GGUFError about %s", needles[0].c_str());
  } catch (const GGUFError& e) {
    const std::string msg = e.what();
    for (const std::string& n : needles) {
      check::record(msg.find(n) != std::string::npos, __FILE__, line, "'%s' not in: %s", n.c_str(), msg.c_str());
    }
  } catch (const std::exception& e) {
    check::record(false, __FILE__, line, "not a GGUFError: %s", e.what());
  }
}

struct Case {
  std::function<void(tiny::Builder&)> edit;
  std::vector<std::string> needles;
  int line;
};
// Edits are run later, so they capture by value.
#define CASE(edit, ...) Case{[=](tiny::Builder& b) { edit; }, {__VA_ARGS__}, __LINE__}

void run(tiny::Builder (*make)(), const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    tiny::Builder b = make();
    c.edit(b);
    expect_refused(b, c.needles, c.line);
  }
}

void valid_models_load() {
  auto bert = load(tiny::bert());
  CHECK(bert->dim() == 8 && bert->max_tokens() == 12 && bert->vocab_size() == 17);
  CHECK(bert->tokenize("Hello world!") == std::vector<int32_t>({2, 5, 6, 15, 3}));
  auto gemma = load(tiny::gemma());
  CHECK(gemma->dim() == 8 && gemma->max_tokens() == 24 && gemma->prompts().size() == 2);
  CHECK(gemma->dims_allowed() == std::vector<int64_t>({8, 4}));
  auto qwen3 = load(tiny::qwen3());
  CHECK(qwen3->dim() == 8 && qwen3->max_tokens() == 32 && qwen3->vocab_size() == 26);
  // hell|o  Ġwor|l|d  <|endoftext|>: merges by rank, no BOS, EOS appended.
  CHECK(qwen3->tokenize("hello world") == std::vector<int32_t>({18, 3, 21, 2, 6, 22}));
  CHECK(qwen3->tokenize("<think>he<|im_end|>") == std::vector<int32_t>({24, 16, 23, 22}));
  auto mb = load(tiny::modernbert());
  CHECK(mb->dim() == 8 && mb->max_tokens() == 32 && mb->vocab_size() == 26);
  // [CLS] hell|o  Ġwor|l|d [SEP]; GPT-2's split keeps "12" one piece.
  CHECK(mb->tokenize("hello world") == std::vector<int32_t>({23, 18, 3, 21, 2, 6, 24}));
  CHECK(mb->tokenize("12") == std::vector<int32_t>({23, 22, 24}));
  {
    // The SwiGLU variant (Granite Embedding R2) runs the same weights to other vectors.
    tiny::Builder b = tiny::modernbert();
    b.str("modern-bert.hidden_activation", "silu");
    auto swiglu = load(b);
    std::vector<float> g(8), s(8);
    const EncodedBatch e = mb->encode_batch({"hello world"}, "");
    mb->embed_ids(e.ids.data(), e.ids.size(), e.lengths.data(), 1, true, g.data());
    swiglu->embed_ids(e.ids.data(), e.ids.size(), e.lengths.data(), 1, true, s.data());
    double dot = 0;
    for (size_t i = 0; i < 8; ++i) dot += (double)g[i] * s[i];
    CHECK(std::isfinite(dot) && dot < 0.9999);
  }
  for (Model* m : {bert.get(), gemma.get(), qwen3.get(), mb.get()}) {
    const EncodedBatch e = m->encode_batch({"hello world", "the cat held"}, "");
    std::vector<float> out(2 * m->dim());
    m->embed_ids(e.ids.data(), e.ids.size(), e.lengths.data(), 2, true, out.data());
    double n0 = 0;
    for (size_t i = 0; i < m->dim(); ++i) n0 += (double)out[i] * out[i];
    CHECK_NEAR(n0, 1.0, 1e-5);
  }
}

void bert_settings() {
  const std::string a = "bert.";
  std::vector<Case> cases;
  // The corruption of issue 10, and its neighbours.
  for (float eps : {kNaN, kInf, -kInf, 0.f, -1e-12f, 1.f, 1e-45f}) {
    cases.push_back(CASE(b.f32(a + "attention.layer_norm_epsilon", eps), a + "attention.layer_norm_epsilon", g9(eps)));
  }
  cases.push_back(CASE(b.f64(a + "attention.layer_norm_epsilon", (double)kNaN), "layer_norm_epsilon", "nan"));
  cases.insert(cases.end(), {
      CASE(b.u32(a + "embedding_length", 0), a + "embedding_length", "is 0"),
      CASE(b.u32(a + "embedding_length", 100000), a + "embedding_length", "100000"),
      CASE(b.u64(a + "embedding_length", ~0ull), a + "embedding_length", "18446744073709551615"),
      CASE(b.u32(a + "attention.head_count", 0), a + "attention.head_count", "is 0"),
      CASE(b.u32(a + "attention.head_count", 3), a + "attention.head_count", "is 3", "multiple"),
      CASE(b.u32(a + "attention.head_count", 16), a + "attention.head_count", "is 16"),
      CASE(b.u32(a + "attention.head_count_kv", 1), a + "attention.head_count_kv", "is 1"),
      CASE(b.u32(a + "attention.key_length", 2), a + "attention.key_length", "is 2"),
      CASE(b.u32(a + "block_count", 0), a + "block_count", "is 0"),
      CASE(b.u32(a + "block_count", 5000), a + "block_count", "5000"),
      CASE(b.u32(a + "block_count", 3), "blk.2.", "missing"),
      CASE(b.u32(a + "feed_forward_length", 0), a + "feed_forward_length", "is 0"),
      CASE(b.u32(a + "feed_forward_length", 31), "ffn_up.weight", "shape"),
      CASE(b.u32(a + "context_length", 2), a + "context_length", "is 2"),
      CASE(b.u32(a + "context_length", 1u << 30), a + "context_length", "1073741824"),
      CASE(b.u32(a + "context_length", 15), "position_embd.weight", "shape"),
      CASE(b.u32(a + "pooling_type", 0), a + "pooling_type", "is 0"),
      CASE(b.u32(a + "pooling_type", 3), a + "pooling_type", "is 3"),
      CASE(b.u64(a + "pooling_type", ~0ull), a + "pooling_type", "18446744073709551615"),
      CASE(b.boolean(a + "attention.causal", true), a + "attention.causal", "true"),
      CASE(b.u32("tokenizer.ggml.unknown_token_id", 9999), "tokenizer.ggml.unknown_token_id", "9999"),
      CASE(b.i32("tokenizer.ggml.cls_token_id", -1), "tokenizer.ggml.cls_token_id", "is -1"),
      CASE(b.u32("tokenizer.ggml.padding_token_id", 17), "tokenizer.ggml.padding_token_id", "is 17", "[0, 16]"),
      CASE(b.f32("tokenizer.ggml.mask_token_id", 4), "tokenizer.ggml.mask_token_id", "not an integer"),
      CASE(b.u32("embedq.max_seq_length", 2), "embedq.max_seq_length", "is 2"),
      CASE(b.u64("embedq.max_seq_length", 1ull << 63), "embedq.max_seq_length", "9223372036854775808"),
      CASE(b.i32s("embedq.dims_allowed", {9}), "embedq.dims_allowed", "9", "[1, 8]"),
      CASE(b.i32s("embedq.dims_allowed", {8, 0}), "embedq.dims_allowed", "holds 0"),
      CASE(b.i32s("embedq.dims_allowed", {(1ll << 32) + 8}, tiny::U64), "embedq.dims_allowed", "4294967304",
           "32-bit"),
      CASE(b.u32("general.name", 1), "general.name", "not a string"),
      CASE(b.str("tokenizer.ggml.model", "llama"), "tokenizer 'llama'"),
      CASE(b.strings("tokenizer.ggml.tokens").pop_back(), "token_embd.weight", "17 rows", "16 tokens"),
  });
  run(tiny::bert, cases);
}

void gemma_settings() {
  const std::string a = "gemma-embedding.";
  std::vector<Case> cases;
  for (float eps : {kNaN, kInf, 0.f, 1.f}) {
    cases.push_back(CASE(b.f32(a + "attention.layer_norm_rms_epsilon", eps), "layer_norm_rms_epsilon", g9(eps)));
  }
  for (float base : {kNaN, kInf, 0.f, -1.f, 0.5f}) {
    cases.push_back(CASE(b.f32(a + "rope.freq_base", base), a + "rope.freq_base", g9(base)));
    cases.push_back(CASE(b.f32(a + "rope.freq_base_swa", base), a + "rope.freq_base_swa", g9(base)));
  }
  cases.insert(cases.end(), {
      CASE(b.f64(a + "rope.freq_base", 1e300), a + "rope.freq_base", "1e+300"),
      CASE(b.u32(a + "attention.head_count", 0), a + "attention.head_count", "is 0"),
      CASE(b.u32(a + "attention.head_count_kv", 0), a + "attention.head_count_kv", "is 0"),
      CASE(b.u32(a + "attention.head_count_kv", 3), a + "attention.head_count_kv", "is 3"),
      CASE((b.u32(a + "attention.head_count", 3), b.u32(a + "attention.head_count_kv", 2)),
           a + "attention.head_count_kv", "is 2", "multiple"),
      CASE(b.u32(a + "attention.key_length", 3), a + "attention.key_length", "is 3", "even"),
      CASE(b.u32(a + "attention.key_length", 0), a + "attention.key_length", "is 0"),
      CASE(b.u32(a + "attention.value_length", 8), a + "attention.value_length", "is 8"),
      CASE((b.remove(a + "attention.key_length"), b.u32(a + "attention.head_count", 3)), a + "attention.head_count",
           "key_length is missing"),
      CASE(b.i32(a + "attention.sliding_window", -1), a + "attention.sliding_window", "is -1"),
      CASE(b.u32(a + "attention.sliding_window", 1u << 30), a + "attention.sliding_window", "1073741824"),
      CASE(b.i32s(a + "attention.sliding_window_pattern", {1}, tiny::BOOL), "sliding_window_pattern",
           "one entry per layer"),
      CASE(b.u32(a + "attention.sliding_window_pattern", 5000), "sliding_window_pattern", "5000"),
      CASE(b.u32(a + "context_length", 1), a + "context_length", "is 1"),
      CASE(b.u32(a + "feed_forward_length", 0), a + "feed_forward_length", "is 0"),
      CASE(b.u32(a + "pooling_type", 2), a + "pooling_type", "is 2"),
      CASE(b.boolean(a + "attention.causal", true), a + "attention.causal", "true"),
      CASE(b.f32("embedq.query_pre_attn_scalar", 0.f), "embedq.query_pre_attn_scalar", "is 0"),
      CASE(b.f32("embedq.query_pre_attn_scalar", kNaN), "embedq.query_pre_attn_scalar", "nan"),
      CASE(b.strs("embedq.prompt_names", {"query", "query"}), "embedq.prompt_names", "'query' appears twice"),
      CASE(b.strs("embedq.prompt_names", {"\xff", "document"}), "embedq.prompt_names", "UTF-8"),
      CASE(b.strs("embedq.prompt_names", {"", "document"}), "embedq.prompt_names", "empty"),
      CASE(b.strs("embedq.prompt_texts", {"ok", "\xc3"}), "embedq.prompt_texts", "entry 1", "UTF-8"),
      CASE(b.strs("embedq.prompt_names", {"query"}), "differ in length"),
      CASE(b.remove("embedq.prompt_texts"), "embedq.prompt_texts", "missing"),
      CASE(b.i32s("embedq.dims_allowed", {16}), "embedq.dims_allowed", "16"),
      CASE(b.floats("tokenizer.ggml.scores")[7] = (double)kNaN, "vocabulary is unusable", "NaN"),
      CASE(b.ints("tokenizer.ggml.token_type")[7] = 9, "vocabulary is unusable", "type 9"),
      CASE(b.u32("tokenizer.ggml.bos_token_id", 999), "tokenizer.ggml.bos_token_id", "999"),
      CASE((b.remove("tokenizer.ggml.unknown_token_id"), b.strings("tokenizer.ggml.tokens")[3] = "<nk>"),
           "neither <unk> nor the 256 byte pieces"),
      CASE((b.strings("tokenizer.ggml.tokens").push_back("x"), b.floats("tokenizer.ggml.scores").push_back(0),
            b.ints("tokenizer.ggml.token_type").push_back(1)),
           "token_embd.weight", "rows"),
  });
  run(tiny::gemma, cases);
}

void qwen3_settings() {
  const std::string a = "qwen3.";
  std::vector<Case> cases = {
      CASE(b.f32(a + "rope.freq_base", kNaN), a + "rope.freq_base", "nan"),
      CASE(b.f32(a + "rope.freq_base", 0.5f), a + "rope.freq_base", "0.5"),
      CASE(b.f32(a + "attention.layer_norm_rms_epsilon", 0.f), "layer_norm_rms_epsilon", "is 0"),
      CASE(b.u32(a + "attention.head_count", 0), a + "attention.head_count", "is 0"),
      CASE(b.u32(a + "attention.head_count_kv", 3), a + "attention.head_count_kv", "is 3", "multiple"),
      CASE(b.u32(a + "attention.head_count_kv", 8), a + "attention.head_count_kv", "is 8"),
      CASE(b.u32(a + "attention.key_length", 3), a + "attention.key_length", "is 3", "even"),
      CASE(b.u32(a + "attention.key_length", 1u << 30), a + "attention.key_length", "1073741824"),
      CASE((b.u32(a + "attention.key_length", 2), b.u32(a + "attention.value_length", 2)), "blk.0.attn_q.weight"),
      CASE(b.u32(a + "attention.value_length", 8), a + "attention.value_length", "is 8"),
      CASE(b.boolean(a + "attention.causal", false), a + "attention.causal", "false"),
      CASE(b.u32(a + "pooling_type", 1), a + "pooling_type", "is 1"),
      CASE(b.u32(a + "context_length", 1), a + "context_length", "is 1"),
      CASE(b.u32(a + "block_count", 3), "blk.2.attn_norm.weight"),
      CASE(b.u32(a + "feed_forward_length", 0), a + "feed_forward_length", "is 0"),
      CASE(b.str("tokenizer.ggml.pre", "llama-bpe"), "pre-tokenizer 'llama-bpe'", "gpt2 with qwen2"),
      CASE(b.remove("tokenizer.ggml.pre"), "pre-tokenizer ''"),
      CASE(b.str("tokenizer.ggml.model", "llama"), "tokenizer 'llama'"),
      CASE(b.strings("tokenizer.ggml.merges").push_back("hx"), "vocabulary is unusable", "merge 6"),
      CASE(b.strings("tokenizer.ggml.merges").push_back("h zz"), "vocabulary is unusable", "missing"),
      CASE(b.remove("tokenizer.ggml.merges"), "tokenizer.ggml.merges"),
      CASE(b.strings("tokenizer.ggml.tokens")[5] = "\xff", "vocabulary is unusable", "UTF-8"),
      CASE(b.ints("tokenizer.ggml.token_type")[7] = 9, "vocabulary is unusable", "type 9"),
      CASE(b.ints("tokenizer.ggml.token_type").pop_back(), "types do not match"),
      CASE(b.u32("tokenizer.ggml.eos_token_id", 999), "tokenizer.ggml.eos_token_id", "999"),
      CASE(b.u32("tokenizer.ggml.eot_token_id", 26), "tokenizer.ggml.eot_token_id", "26"),
      CASE((b.remove("tokenizer.ggml.eos_token_id"), b.strings("tokenizer.ggml.tokens")[22] = "<|eot|>"),
           "lacks its BOS/EOS"),
      CASE(b.boolean("tokenizer.ggml.add_bos_token", true), "lacks its BOS/EOS"),
      CASE((b.strings("tokenizer.ggml.tokens").push_back("x"), b.ints("tokenizer.ggml.token_type").push_back(1)),
           "token_embd.weight", "rows"),
  };
  run(tiny::qwen3, cases);
}

void modernbert_settings() {
  const std::string a = "modern-bert.";
  std::vector<Case> cases = {
      CASE(b.f32(a + "rope.freq_base", kNaN), a + "rope.freq_base", "nan"),
      CASE(b.f32(a + "rope.freq_base_swa", 0.5f), a + "rope.freq_base_swa", "0.5"),
      CASE(b.f32(a + "attention.layer_norm_epsilon", 0.f), "layer_norm_epsilon", "is 0"),
      CASE(b.u32(a + "attention.head_count", 0), a + "attention.head_count", "is 0"),
      CASE(b.u32(a + "attention.head_count", 3), a + "attention.head_count", "multiple"),
      CASE(b.u32(a + "attention.head_count", 8), a + "attention.head_count", "even"),
      CASE(b.boolean(a + "attention.causal", true), a + "attention.causal", "true"),
      CASE(b.u32(a + "attention.sliding_window", 0), a + "attention.sliding_window", "is 0"),
      CASE(b.u32(a + "attention.sliding_window_pattern", 0), a + "attention.sliding_window_pattern", "is 0"),
      CASE(b.i32s(a + "attention.sliding_window_pattern", {0, 1}), "one entry per layer"),
      CASE(b.str(a + "hidden_activation", "gelu_new"), a + "hidden_activation", "'gelu_new'"),
      CASE(b.u32(a + "pooling_type", 3), a + "pooling_type", "is 3"),
      CASE(b.u32(a + "context_length", 1), a + "context_length", "is 1"),
      CASE(b.u32(a + "block_count", 4), "blk.3.attn_norm.weight"),
      CASE(b.u32(a + "feed_forward_length", 16), "blk.0.ffn_up.weight", "shape"),
      CASE(b.tensor("blk.0.attn_norm.weight", 8, 0, std::vector<float>(8, 1.f)), "blk.0.attn_norm.weight", "unexpected"),
      CASE(b.str("tokenizer.ggml.pre", "qwen2"), "pre-tokenizer 'qwen2'", "gpt2 with modern-bert"),
      CASE(b.str("tokenizer.ggml.model", "bert"), "tokenizer 'bert'"),
      CASE(b.strings("tokenizer.ggml.merges").push_back("hx"), "vocabulary is unusable", "merge 7"),
      CASE(b.u32("tokenizer.ggml.cls_token_id", 26), "tokenizer.ggml.cls_token_id", "26"),
      CASE((b.remove("tokenizer.ggml.seperator_token_id"), b.strings("tokenizer.ggml.tokens")[24] = "[END]"),
           "lacks [CLS]/[SEP]"),
  };
  run(tiny::modernbert, cases);
}

// A NaN or infinity in any tensor the forward pass reads, of any stored
// type, is refused at load naming the tensor and where.
void nonfinite_weights() {
  struct W {
    tiny::Builder (*make)();
    const char* tensor;
    size_t index;
    float value;
    std::vector<std::string> needles;
  };
  const std::vector<W> cases = {
      {tiny::bert, "token_embd_norm.bias", 3, kNaN, {"token_embd_norm.bias", "(nan)", "element 3"}},
      {tiny::bert, "blk.1.ffn_up.weight", 100, kInf, {"blk.1.ffn_up.weight", "(inf)", "row 12, column 4"}},
      {tiny::bert, "blk.1.attn_q.weight", 5, -kInf, {"blk.1.attn_q.weight", "(-inf)"}},           // F16
      {tiny::bert, "blk.1.attn_q.weight", 6, 1e6f, {"blk.1.attn_q.weight", "(inf)"}},  // F16 overflow
      {tiny::bert, "blk.0.ffn_down.weight", 40, kNaN, {"blk.0.ffn_down.weight", "scale", "element 32"}},  // Q8_0
      {tiny::bert, "token_embd.weight", 17 * 8 - 1, kNaN, {"token_embd.weight", "row 16, column 7"}},
      {tiny::bert, "token_types.weight", 9, kNaN, {"token_types.weight"}},
      {tiny::gemma, "dense_2.weight", 255, kInf, {"dense_2.weight", "row 31, column 7"}},
      {tiny::gemma, "dense_3.weight", 0, kNaN, {"dense_3.weight", "scale"}},
      {tiny::gemma, "blk.1.attn_k_norm.weight", 0, kNaN, {"blk.1.attn_k_norm.weight"}},
      {tiny::gemma, "output_norm.weight", 7, -kInf, {"output_norm.weight"}},
      {tiny::qwen3, "blk.1.attn_q_norm.weight", 2, kNaN, {"blk.1.attn_q_norm.weight"}},
      {tiny::qwen3, "blk.0.attn_k.weight", 9, kInf, {"blk.0.attn_k.weight", "(inf)"}},  // F16
      {tiny::qwen3, "blk.1.ffn_down.weight", 33, kNaN, {"blk.1.ffn_down.weight", "scale"}},  // Q8_0
      {tiny::modernbert, "token_embd_norm.weight", 1, kNaN, {"token_embd_norm.weight"}},
      {tiny::modernbert, "output_norm.bias", 7, kInf, {"output_norm.bias"}},
      {tiny::modernbert, "blk.1.attn_qkv.weight", 3, kInf, {"blk.1.attn_qkv.weight", "(inf)"}},  // F16
      {tiny::modernbert, "blk.2.ffn_up.weight", 500, kNaN, {"blk.2.ffn_up.weight"}},
  };
  for (const W& w : cases) {
    tiny::Builder b = w.make();
    b.values(w.tensor)[w.index] = w.value;
    expect_refused(b, w.needles, __LINE__);
  }
}

// Finite weights can still overflow: EmbeddingGemma scales embeddings by
// sqrt(width), so a row of 3e38 becomes infinite, then NaN. The vectors of
// texts using that token are refused naming the first such text; the model
// stays usable for other texts.
void output_check() {
  tiny::Builder b = tiny::gemma();
  const auto& tokens = b.strings("tokenizer.ggml.tokens");
  const size_t row = (size_t)(std::find(tokens.begin(), tokens.end(), "or") - tokens.begin());
  for (size_t c = 0; c < 8; ++c) b.values("token_embd.weight")[row * 8 + c] = 3e38f;
  auto m = load(b);
  auto embed = [&](const std::vector<std::string_view>& texts) {
    const EncodedBatch e = m->encode_batch(texts, "");
    std::vector<float> out(texts.size() * m->dim());
    m->embed_ids(e.ids.data(), e.ids.size(), e.lengths.data(), texts.size(), true, out.data());
    return out;
  };
  try {
    embed({"hello", "hello world", "held", "the world"});
    CHECK_MSG(false, "a NaN vector was returned");
  } catch (const GGUFError& e) {
    const std::string msg = e.what();
    CHECK_MSG(msg.find("non-finite vector for texts[1] and 1 more") != std::string::npos, "%s", msg.c_str());
  }
  const std::vector<float> ok = embed({"hello", "held the"});
  CHECK(std::all_of(ok.begin(), ok.end(), [](float x) { return std::isfinite(x); }));
}

// first_nonfinite against a reference that converts every element to f32
// and asks std::isfinite: random bit patterns (so NaN, infinities and
// subnormals of every type turn up), odd sizes, random sub-ranges.
void scan_matches_reference() {
  std::mt19937_64 rng(11);
  const DType types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                         DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (DType type : types) {
    const DTypeInfo& info = *dtype_info((uint32_t)type);
    const size_t be = info.block_elems;
    const bool blocks = be > 1;
    for (int trial = 0; trial < (blocks ? 100 : 300); ++trial) {
      const size_t n = blocks ? be * (1 + rng() % (be == 32 ? 50 : 8)) : 1 + rng() % 3001;
      std::vector<uint8_t> buf(n / be * info.block_bytes);
      for (uint8_t& x : buf) x = (uint8_t)rng();
      // Random bits are rarely non-finite in F32 (1 in 256); plant some.
      if (type == DType::F32 && trial % 2) {
        const uint32_t special[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f800001u};
        for (int k = 0; k < 2; ++k) std::memcpy(&buf[4 * (rng() % n)], &special[rng() % 4], 4);
      }
      TensorView t;
      t.type = type;
      t.n_dims = 1;
      t.ne[0] = (int64_t)n;
      t.data = buf.data();
      // The reference: every element as the scalar kernels compute it. An
      // infinite scale makes every element of its block NaN or infinite.
      std::vector<float> value(n);
      kernels_scalar().row_to_f32[(size_t)type](buf.data(), value.data(), n);
      size_t begin = rng() % n, end = begin + rng() % (n - begin + 1);
      begin -= begin % be, end -= end % be;
      int64_t want = -1;
      for (size_t i = begin; i < end && want < 0; ++i)
        if (!std::isfinite(value[i])) want = (int64_t)(i - i % be);
      const int64_t got = first_nonfinite(t, begin, end);
      CHECK_MSG(got == want, "%s n=%zu [%zu, %zu): got %lld, want %lld", dtype_name((uint32_t)type), n, begin, end,
                (long long)got, (long long)want);
    }
  }
}

// The pool splits tensors into 1M-element pieces; the error names the first
// bad element in file order whichever thread found what.
void scan_in_pieces() {
  std::vector<uint16_t> big(3u << 20, 0x3c00), small(5, 0x3c00);
  big[2500001] = 0x7c00;
  big[3000000] = 0x7e00;
  small[2] = 0xfc00;
  TensorView a, b;
  a.name = "a";
  b.name = "b";
  a.type = b.type = DType::F16;
  a.n_dims = b.n_dims = 1;
  a.ne[0] = (int64_t)big.size();
  b.ne[0] = 5;
  a.data = big.data();
  b.data = small.data();
  ThreadPool pool(3);
  for (auto order : {std::vector<const TensorView*>{&a, &b}, std::vector<const TensorView*>{&b, &a}}) {
    try {
      check_finite(order, pool);
      CHECK(false);
    } catch (const GGUFError& e) {
      const std::string want = order[0] == &a ? "tensor 'a' holds a non-finite value (inf) at element 2500001"
                                              : "tensor 'b' holds a non-finite value (-inf) at element 2";
      CHECK_MSG(std::string(e.what()).find(want) == 0, "%s", e.what());
    }
  }
  big[2500001] = big[3000000] = 0x3c00;
  small[2] = 0x3c00;
  check_finite({&a, &b}, pool);
  CHECK(true);
}

}  // namespace

int main() {
  valid_models_load();
  bert_settings();
  gemma_settings();
  qwen3_settings();
  modernbert_settings();
  nonfinite_weights();
  output_check();
  scan_matches_reference();
  scan_in_pieces();
  return report();
}
