#include "model.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "ops.h"

namespace embedq {

namespace {

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

  if (encoder_->vocab_rows() < vocab_size_) throw GGUFError("the token embedding has fewer rows than the vocabulary");
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

std::vector<int32_t> Model::tokenize(std::string_view text) const {
  texts_tokenized_.fetch_add(1, std::memory_order_relaxed);
  std::vector<int32_t> ids;
  if (add_bos_) ids.push_back(bos_);
  tok_->encode(text, ids);
  if (add_eos_) ids.push_back(eos_);
  return ids;
}

std::vector<int32_t> Model::encode(std::string_view text, bool* truncated) const {
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

EncodedBatch Model::encode_batch(const std::vector<std::string_view>& texts, std::string_view prefix) const {
  EncodedBatch b;
  b.lengths.reserve(texts.size());
  b.truncated.reserve(texts.size());
  std::string prefixed(prefix);
  for (std::string_view text : texts) {
    bool truncated = false;
    std::vector<int32_t> ids;
    if (prefix.empty()) {
      ids = encode(text, &truncated);
    } else {
      prefixed.resize(prefix.size());
      prefixed.append(text);
      ids = encode(prefixed, &truncated);
    }
    b.ids.insert(b.ids.end(), ids.begin(), ids.end());
    b.lengths.push_back((int64_t)ids.size());
    b.truncated.push_back(truncated);
  }
  return b;
}

void Model::check_ids(const int32_t* ids, size_t n_ids, const int64_t* lengths, size_t n) const {
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (lengths[i] < 1 || lengths[i] > max_tokens_) {
      throw std::invalid_argument("sequence " + std::to_string(i) + " has length " + std::to_string(lengths[i]) +
                                  "; lengths must be 1.." + std::to_string(max_tokens_));
    }
    total += (size_t)lengths[i];
  }
  if (total != n_ids) {
    throw std::invalid_argument("lengths sum to " + std::to_string(total) + " but there are " + std::to_string(n_ids) +
                                " ids");
  }
  for (size_t j = 0; j < n_ids; ++j) {
    if (ids[j] < 0 || (size_t)ids[j] >= vocab_size_) {
      throw std::invalid_argument("token id " + std::to_string(ids[j]) + " at position " + std::to_string(j) +
                                  " is outside the vocabulary (0.." + std::to_string(vocab_size_ - 1) + ")");
    }
  }
}

void Model::embed_ids(const int32_t* ids, size_t n_ids, const int64_t* lengths, size_t n, bool normalize, float* out) {
  check_ids(ids, n_ids, lengths, n);
  const size_t dim = encoder_->dim();
  std::vector<size_t> offset(n + 1, 0);
  for (size_t i = 0; i < n; ++i) offset[i + 1] = offset[i] + (size_t)lengths[i];
  // Sort by length so forward passes hold similar sequences, then cut them at
  // the token budget: memory stays bounded and attention scratch stays small.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] < lengths[b]; });

  std::lock_guard<std::mutex> lock(compute_mu_);
  std::vector<int32_t> packed;
  PackedBatch batch;
  std::vector<size_t> batch_idx;
  std::vector<float> pooled;
  auto flush = [&] {
    if (batch_idx.empty()) return;
    batch.ids = packed.data();
    pooled.resize(batch_idx.size() * dim);
    encoder_->forward(*rt_, batch, pooled.data());
    for (size_t i = 0; i < batch_idx.size(); ++i) {
      float* o = out + batch_idx[i] * dim;
      std::copy(pooled.begin() + i * dim, pooled.begin() + (i + 1) * dim, o);
      if (normalize) l2_normalize(o, dim);
    }
    packed.clear();
    batch.start.assign(1, 0);
    batch_idx.clear();
  };
  for (size_t i : order) {
    if (!batch_idx.empty() && packed.size() + (size_t)lengths[i] > opts_.batch_tokens) flush();
    packed.insert(packed.end(), ids + offset[i], ids + offset[i + 1]);
    batch.start.push_back(packed.size());
    batch_idx.push_back(i);
  }
  flush();
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
