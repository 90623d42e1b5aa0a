#include "model.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "ops.h"

namespace embedq {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int32_t token_id(const GGUFFile& f, const std::vector<std::string>& tokens, std::initializer_list<const char*> keys,
                 const char* fallback_text) {
  for (const char* k : keys) {
    if (f.has(k)) {
      const int64_t id = f.get_int(k);
      if (id >= 0 && (size_t)id < tokens.size()) return (int32_t)id;
      throw GGUFError(std::string("GGUF metadata key '") + k + "' is out of the vocabulary range");
    }
  }
  if (fallback_text) {
    auto it = std::find(tokens.begin(), tokens.end(), fallback_text);
    if (it != tokens.end()) return (int32_t)(it - tokens.begin());
  }
  return -1;
}

}  // namespace

Model::Model(const std::string& path, const ModelOptions& opts) : opts_(opts) {
  file_ = GGUFFile::open(path);
  const GGUFFile& f = *file_;
  arch_ = f.get_string("general.architecture");
  const std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (tokens.empty()) throw GGUFError("the model's vocabulary is empty");
  vocab_size_ = tokens.size();
  const std::string tok_model = f.get_string("tokenizer.ggml.model", "");

  if (arch_ == "bert") {
    if (tok_model != "bert") throw GGUFError("bert model with tokenizer '" + tok_model + "' is not supported");
    encoder_ = load_bert(f);
    WordPieceOptions wo;
    wo.lowercase = f.get_bool("embedq.do_lower_case", true);
    wo.strip_accents = wo.lowercase;
    const int32_t unk = token_id(f, tokens, {"tokenizer.ggml.unknown_token_id"}, "[UNK]");
    if (unk < 0) throw GGUFError("the vocabulary has no [UNK] token");
    tok_ = make_wordpiece(tokens, unk, wo);
    bos_ = token_id(f, tokens, {"tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"}, "[CLS]");
    eos_ = token_id(f, tokens, {"tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eos_token_id"}, "[SEP]");
    if (bos_ < 0 || eos_ < 0) throw GGUFError("the vocabulary has no [CLS]/[SEP] tokens");
  } else if (arch_ == "gemma-embedding" || arch_ == "gemma3") {
    encoder_ = load_gemma3(f);
    const std::vector<float> scores = f.get_float_array("tokenizer.ggml.scores");
    const std::vector<int32_t> types = f.get_int_array("tokenizer.ggml.token_type");
    if (scores.size() != tokens.size() || types.size() != tokens.size()) {
      throw GGUFError("tokenizer scores/types do not match the vocabulary size");
    }
    const int32_t unk = token_id(f, tokens, {"tokenizer.ggml.unknown_token_id"}, "<unk>");
    tok_ = make_sentencepiece(tokens, scores, types, unk);
    bos_ = token_id(f, tokens, {"tokenizer.ggml.bos_token_id"}, "<bos>");
    eos_ = token_id(f, tokens, {"tokenizer.ggml.eos_token_id"}, "<eos>");
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", true);
    add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", true);
    if ((add_bos_ && bos_ < 0) || (add_eos_ && eos_ < 0)) throw GGUFError("the vocabulary lacks <bos>/<eos>");
  } else {
    throw GGUFError("model architecture '" + arch_ + "' is not supported (supported: bert, gemma-embedding)");
  }

  max_tokens_ = f.get_int("embedq.max_seq_length", (int64_t)encoder_->max_positions());
  if (opts.max_tokens > 0) max_tokens_ = opts.max_tokens;
  max_tokens_ = std::min<int64_t>(max_tokens_, (int64_t)encoder_->max_positions());
  if (max_tokens_ < 3) throw GGUFError("the model's maximum sequence length is too small");
  normalize_default_ = f.get_bool("embedq.normalize", true);

  if (f.has("embedq.prompt_names") && f.has("embedq.prompt_texts")) {
    const auto names = f.get_string_array("embedq.prompt_names");
    const auto texts = f.get_string_array("embedq.prompt_texts");
    if (names.size() != texts.size()) throw GGUFError("embedq.prompt_names and embedq.prompt_texts differ in length");
    for (size_t i = 0; i < names.size(); ++i) prompts_.emplace_back(names[i], texts[i]);
  }
  if (f.has("embedq.dims_allowed")) {
    for (int32_t d : f.get_int_array("embedq.dims_allowed")) dims_allowed_.push_back(d);
  }
  if (dims_allowed_.empty()) dims_allowed_.push_back((int64_t)encoder_->dim());

  int threads = opts.threads > 0 ? opts.threads : (int)std::thread::hardware_concurrency();
  if (threads < 1) threads = 1;
  const Kernels* k = opts.kernels.empty() ? &kernels_best() : kernels_by_name(opts.kernels.c_str());
  if (!k) throw std::invalid_argument("kernel set '" + opts.kernels + "' is not available on this CPU");
  rt_.reset(new Runtime(threads, opts.activations, *k));
}

std::vector<int32_t> Model::tokenize(const std::string& text) const {
  std::vector<int32_t> ids;
  if (add_bos_) ids.push_back(bos_);
  tok_->encode(text, ids);
  if (add_eos_) ids.push_back(eos_);
  return ids;
}

std::vector<int32_t> Model::encode(const std::string& text, bool* truncated) const {
  std::vector<int32_t> ids = tokenize(text);
  *truncated = (int64_t)ids.size() > max_tokens_;
  if (*truncated) {
    // Keep the head of the text and the closing special token, as
    // sentence-transformers' tokenizer truncation does.
    ids.resize((size_t)max_tokens_);
    if (add_eos_) ids.back() = eos_;
  }
  return ids;
}

void Model::embed_ids(const std::vector<std::vector<int32_t>>& seqs, bool normalize, float* out) {
  std::lock_guard<std::mutex> lock(compute_mu_);
  const size_t dim = encoder_->dim();
  // Sort by length so sub-batches hold similar sequences, then cut them at the
  // token budget: memory stays bounded and attention scratch stays small.
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].size() < seqs[b].size(); });
  std::vector<std::vector<int32_t>> batch;
  std::vector<size_t> batch_idx;
  std::vector<float> pooled;
  size_t batch_tokens = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    pooled.resize(batch.size() * dim);
    encoder_->forward(*rt_, batch, pooled.data());
    for (size_t i = 0; i < batch.size(); ++i) {
      float* o = out + batch_idx[i] * dim;
      std::copy(pooled.begin() + i * dim, pooled.begin() + (i + 1) * dim, o);
      if (normalize) l2_normalize(o, dim);
    }
    batch.clear();
    batch_idx.clear();
    batch_tokens = 0;
  };
  for (size_t i : order) {
    if (!batch.empty() && batch_tokens + seqs[i].size() > opts_.batch_tokens) flush();
    batch.push_back(seqs[i]);
    batch_idx.push_back(i);
    batch_tokens += seqs[i].size();
  }
  flush();
}

void Model::embed(const std::vector<std::string>& texts, bool normalize, float* out, EmbedStats* stats) {
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> seqs(texts.size());
  int64_t truncated = 0, tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    bool tr = false;
    seqs[i] = encode(texts[i], &tr);
    truncated += tr;
    tokens += (int64_t)seqs[i].size();
  }
  const double tok_ms = ms_since(t0);
  auto t1 = std::chrono::steady_clock::now();
  embed_ids(seqs, normalize, out);
  if (stats) {
    stats->tokenize_ms = tok_ms;
    stats->forward_ms = ms_since(t1);
    stats->tokens = tokens;
    stats->truncated = truncated;
  }
}

std::map<std::string, std::string> Model::info() const {
  std::map<std::string, std::string> m;
  m["architecture"] = arch_;
  m["name"] = file_->get_string("general.name", "");
  m["path"] = file_->path();
  m["tokenizer"] = file_->get_string("tokenizer.ggml.model", "");
  // The dominant weight type: the type of the most bytes among 2-D tensors.
  std::map<std::string, uint64_t> bytes;
  for (const TensorView& t : file_->tensors())
    if (t.n_dims >= 2) bytes[dtype_name((uint32_t)t.type)] += t.nbytes;
  std::string best;
  uint64_t most = 0;
  for (auto& kv : bytes)
    if (kv.second > most) { most = kv.second; best = kv.first; }
  m["weight_type"] = best;
  m["activations"] = opts_.activations == ActivationMode::INT8 ? "int8" : "f32";
  m["normalize"] = normalize_default_ ? "true" : "false";
  return m;
}

}  // namespace embedq
