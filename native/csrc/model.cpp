#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "ops.h"
#include "unicode.h"
#include "validate.h"

namespace embedq {

namespace {

// The id in the first of `keys` the file has (each checked in range), else
// the id of `fallback_text` in the vocabulary, else -1.
int32_t token_id(const GGUFFile& f, const std::vector<std::string>& tokens, std::initializer_list<const char*> keys,
                 const char* fallback_text) {
  for (const char* k : keys) {
    if (f.has(k)) return (int32_t)setting_int(f, k, 0, (int64_t)tokens.size() - 1);
  }
  if (fallback_text) {
    auto it = std::find(tokens.begin(), tokens.end(), fallback_text);
    if (it != tokens.end()) return (int32_t)(it - tokens.begin());
  }
  return -1;
}

// Every special-token id the file declares, used here or not: one out of the
// vocabulary means the file is corrupt.
void check_special_ids(const GGUFFile& f, size_t vocab) {
  const std::string prefix = "tokenizer.ggml.", suffix = "_token_id";
  for (const auto& kv : f.metadata()) {
    const std::string& k = kv.first;
    if (k.size() > prefix.size() + suffix.size() && k.compare(0, prefix.size(), prefix) == 0 &&
        k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0) {
      setting_int(f, k, 0, (int64_t)vocab - 1);
    }
  }
}

// How HF matches some added tokens (tokenizer.json's lstrip / rstrip / normalized flags, which
// the converter writes as embedq.tokenizer.* id lists); the tokenizer checks they are added tokens.
AddedTokenRules added_token_rules(const GGUFFile& f) {
  AddedTokenRules r;
  if (f.has("embedq.tokenizer.lstrip")) r.lstrip = f.get_int_array("embedq.tokenizer.lstrip");
  if (f.has("embedq.tokenizer.rstrip")) r.rstrip = f.get_int_array("embedq.tokenizer.rstrip");
  if (f.has("embedq.tokenizer.normalized")) r.normalized = f.get_int_array("embedq.tokenizer.normalized");
  return r;
}

// The tokenizers report a bad vocabulary as invalid_argument; from a file
// that is a bad model file.
template <typename Make>
std::unique_ptr<Tokenizer> make_tokenizer(Make make) {
  try {
    return make();
  } catch (const std::invalid_argument& e) {
    throw GGUFError(std::string("the model's vocabulary is unusable: ") + e.what());
  }
}

// SentencePiece can always tokenize when it has <unk> or all 256 byte pieces
// (type 5, unused, doesn't count); otherwise some text would fail at embed time.
bool has_all_byte_pieces(const std::vector<std::string>& tokens, const std::vector<int32_t>& types) {
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  std::vector<bool> seen(256);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t.size() != 6 || types[i] == 5 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') continue;
    const int hi = hex(t[3]), lo = hex(t[4]);
    if (hi >= 0 && lo >= 0) seen[(size_t)(hi * 16 + lo)] = true;
  }
  return std::find(seen.begin(), seen.end(), false) == seen.end();
}

// The last line of defence behind the load-time checks: finite weights can
// still overflow, and a NaN vector must never be returned as a result.
// `text_index` maps the rows of `pooled` to the caller's texts.
void check_output(const float* pooled, const std::vector<size_t>& text_index, size_t dim) {
  size_t first = SIZE_MAX, bad = 0;
  for (size_t i = 0; i < text_index.size(); ++i) {
    const float* v = pooled + i * dim;
    if (std::all_of(v, v + dim, [](float x) { return std::isfinite(x); })) continue;
    ++bad;
    first = std::min(first, text_index[i]);
  }
  if (bad == 0) return;
  const std::string more = bad > 1 ? " and " + std::to_string(bad - 1) + " more texts of its batch" : "";
  throw GGUFError("the model computed a non-finite vector for texts[" + std::to_string(first) + "]" + more +
                  "; the model file's weights are probably corrupt (finite values large enough to overflow)");
}

}  // namespace

Model::Model(const std::string& path, const ModelOptions& opts) : file_(GGUFFile::open(path)), opts_(opts) {
  try {
    load();
  } catch (const GGUFError& e) {
    throw GGUFError(std::string(e.what()) + " (file '" + path + "')");
  }
}

Model::Model(std::shared_ptr<GGUFFile> file, const ModelOptions& opts) : file_(std::move(file)), opts_(opts) { load(); }

void Model::load() {
  const GGUFFile& f = *file_;
  arch_ = f.get_string("general.architecture");
  name_ = utf8_safe(f.get_string("general.name", ""));
  tokenizer_name_ = utf8_safe(f.get_string("tokenizer.ggml.model", ""));
  const std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (tokens.empty()) throw GGUFError("the model's vocabulary is empty");
  if (tokens.size() > (size_t)INT32_MAX) throw GGUFError("the model's vocabulary has more than 2^31 tokens");
  vocab_size_ = tokens.size();
  check_special_ids(f, vocab_size_);

  if (arch_ == "bert" && tokenizer_name_ == "t5") {
    // XLM-RoBERTa: a BERT encoder under a SentencePiece Unigram vocabulary.
    encoder_ = load_bert(f);
    const std::vector<int32_t> types = f.get_int_array("tokenizer.ggml.token_type");
    // Scores in double when the converter found some that float would round
    // (HF sums them in double); else the float scores llama.cpp reads.
    const std::vector<double> scores = f.has("embedq.tokenizer.scores_f64")
                                           ? f.get_double_array("embedq.tokenizer.scores_f64")
                                           : f.get_double_array("tokenizer.ggml.scores");
    if (scores.size() != tokens.size() || types.size() != tokens.size()) {
      throw GGUFError("tokenizer scores/types do not match the vocabulary size");
    }
    const int32_t unk = token_id(f, tokens, {"tokenizer.ggml.unknown_token_id"}, "<unk>");
    if (unk < 0) throw GGUFError("the vocabulary has no <unk> token");
    UnigramOptions uo;
    if (f.has("tokenizer.ggml.precompiled_charsmap")) uo.charsmap = f.get_bytes("tokenizer.ggml.precompiled_charsmap");
    uo.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
    uo.added = added_token_rules(f);
    tok_ = make_tokenizer([&] { return make_unigram(tokens, scores, types, unk, uo); });
    bos_ = token_id(f, tokens, {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.cls_token_id"}, "<s>");
    eos_ = token_id(f, tokens, {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.seperator_token_id"}, "</s>");
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", true);
    add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", true);
    if ((add_bos_ && bos_ < 0) || (add_eos_ && eos_ < 0)) throw GGUFError("the vocabulary lacks <s>/</s>");
  } else if (arch_ == "bert") {
    if (tokenizer_name_ != "bert") {
      throw GGUFError("bert model with tokenizer '" + tokenizer_name_ + "' is not supported (bert, t5)");
    }
    encoder_ = load_bert(f);
    WordPieceOptions wo;
    wo.lowercase = f.get_bool("embedq.do_lower_case", true);
    wo.strip_accents = wo.lowercase;
    const int32_t unk = token_id(f, tokens, {"tokenizer.ggml.unknown_token_id"}, "[UNK]");
    if (unk < 0) throw GGUFError("the vocabulary has no [UNK] token");
    tok_ = make_tokenizer([&] { return make_wordpiece(tokens, unk, wo); });
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
    if (unk < 0 && !has_all_byte_pieces(tokens, types)) {
      throw GGUFError("the vocabulary has neither <unk> nor the 256 byte pieces <0x00>..<0xFF>: "
                      "some texts could not be tokenized");
    }
    tok_ = make_tokenizer([&] { return make_sentencepiece(tokens, scores, types, unk); });
    bos_ = token_id(f, tokens, {"tokenizer.ggml.bos_token_id"}, "<bos>");
    eos_ = token_id(f, tokens, {"tokenizer.ggml.eos_token_id"}, "<eos>");
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", true);
    add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", true);
    if ((add_bos_ && bos_ < 0) || (add_eos_ && eos_ < 0)) throw GGUFError("the vocabulary lacks <bos>/<eos>");
  } else if (arch_ == "qwen3") {
    encoder_ = load_qwen3(f);
    const std::string pre = f.get_string("tokenizer.ggml.pre", "");
    if (tokenizer_name_ != "gpt2" || pre != "qwen2") {
      throw GGUFError("qwen3 model with tokenizer '" + tokenizer_name_ + "' (pre-tokenizer '" + utf8_safe(pre) +
                      "') is not supported (gpt2 with qwen2)");
    }
    const std::vector<int32_t> types = f.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != tokens.size()) throw GGUFError("tokenizer types do not match the vocabulary size");
    const std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
    ByteBpeOptions bo;
    bo.added = added_token_rules(f);
    tok_ = make_tokenizer([&] { return make_byte_bpe(tokens, types, merges, bo); });
    // Qwen has no BOS; its tokenizer appends <|endoftext|>, which the file
    // names as EOS (llama.cpp's converter takes it from the post-processor).
    bos_ = token_id(f, tokens, {"tokenizer.ggml.bos_token_id"}, nullptr);
    eos_ = token_id(f, tokens, {"tokenizer.ggml.eos_token_id"}, "<|endoftext|>");
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", false);
    add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", true);
    if ((add_bos_ && bos_ < 0) || (add_eos_ && eos_ < 0)) throw GGUFError("the vocabulary lacks its BOS/EOS token");
  } else if (arch_ == "modern-bert") {
    encoder_ = load_modernbert(f);
    // ModernBERT's tokenizer: ByteLevel with GPT-2's regex, no normalizer;
    // llama.cpp names that pre-tokenizer after the model.
    const std::string pre = f.get_string("tokenizer.ggml.pre", "");
    if (tokenizer_name_ != "gpt2" || pre != "modern-bert") {
      throw GGUFError("modern-bert model with tokenizer '" + tokenizer_name_ + "' (pre-tokenizer '" + utf8_safe(pre) +
                      "') is not supported (gpt2 with modern-bert)");
    }
    const std::vector<int32_t> types = f.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != tokens.size()) throw GGUFError("tokenizer types do not match the vocabulary size");
    const std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
    ByteBpeOptions bo;
    bo.split = ByteBpeOptions::Split::GPT2;
    bo.nfc = false;
    bo.added = added_token_rules(f);
    tok_ = make_tokenizer([&] { return make_byte_bpe(tokens, types, merges, bo); });
    // [CLS] text [SEP], as its post-processor writes them.
    bos_ = token_id(f, tokens, {"tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"}, "[CLS]");
    eos_ = token_id(f, tokens, {"tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eos_token_id"}, "[SEP]");
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", true);
    add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", true);
    if ((add_bos_ && bos_ < 0) || (add_eos_ && eos_ < 0)) throw GGUFError("the vocabulary lacks [CLS]/[SEP]");
  } else {
    throw GGUFError("model architecture '" + arch_ +
                    "' is not supported (supported: bert, gemma-embedding, modern-bert, qwen3)");
  }

  // Token ids index the embedding table; llama.cpp likewise requires one row
  // per token (converters pad the vocabulary, not the table).
  if (encoder_->vocab_rows() != vocab_size_) {
    throw GGUFError("tensor 'token_embd.weight' has " + std::to_string(encoder_->vocab_rows()) +
                    " rows but the vocabulary (tokenizer.ggml.tokens) has " + std::to_string(vocab_size_) + " tokens");
  }
  // A longer max_seq_length than the encoder has positions is clamped below,
  // as before; only values no model could mean are refused.
  max_tokens_ = setting_int(f, "embedq.max_seq_length", (int64_t)encoder_->max_positions(), kMinContext, kMaxContext);
  if (opts_.max_tokens > 0) max_tokens_ = opts_.max_tokens;
  max_tokens_ = std::min<int64_t>(max_tokens_, (int64_t)encoder_->max_positions());
  if (max_tokens_ < kMinContext) throw GGUFError("the model's maximum sequence length is too small");
  normalize_default_ = f.get_bool("embedq.normalize", true);

  if (f.has("embedq.prompt_names") || f.has("embedq.prompt_texts")) {
    const auto names = f.get_string_array("embedq.prompt_names");
    const auto texts = f.get_string_array("embedq.prompt_texts");
    if (names.size() != texts.size()) throw GGUFError("embedq.prompt_names and embedq.prompt_texts differ in length");
    for (size_t i = 0; i < names.size(); ++i) {
      // Prompts go to Python as str and are prepended to users' texts.
      if (names[i].empty() || !unicode::utf8_is_valid(names[i])) {
        bad_setting(f, "embedq.prompt_names", "entry " + std::to_string(i) + " is empty or not valid UTF-8");
      }
      if (!unicode::utf8_is_valid(texts[i])) {
        bad_setting(f, "embedq.prompt_texts", "entry " + std::to_string(i) + " is not valid UTF-8");
      }
      for (const auto& p : prompts_) {
        if (p.first == names[i]) bad_setting(f, "embedq.prompt_names", "prompt '" + names[i] + "' appears twice");
      }
      prompts_.emplace_back(names[i], texts[i]);
    }
  }
  if (f.has("embedq.dims_allowed")) {
    for (int32_t d : f.get_int_array("embedq.dims_allowed")) {
      if (d < 1 || (size_t)d > encoder_->dim()) {
        bad_setting(f, "embedq.dims_allowed", "it holds " + std::to_string(d) + "; every entry must be in [1, " +
                                                  std::to_string(encoder_->dim()) + "], the model's width");
      }
      dims_allowed_.push_back(d);
    }
  }
  if (dims_allowed_.empty()) dims_allowed_.push_back((int64_t)encoder_->dim());

  int threads = opts_.threads > 0 ? opts_.threads : (int)std::thread::hardware_concurrency();
  if (threads < 1) threads = 1;
  const Kernels* k = opts_.kernels.empty() ? &kernels_best() : kernels_by_name(opts_.kernels.c_str());
  if (!k) throw std::invalid_argument("kernel set '" + opts_.kernels + "' is not available on this CPU");
  if (opts_.activations == ActivationMode::AUTO)
    opts_.activations = k->prefer_i16 ? ActivationMode::INT16 : ActivationMode::F32;
  rt_.reset(new Runtime(threads, opts_.activations, *k));

  // Every weight the forward pass reads, scanned once: a NaN or infinity in
  // any of them is refused here rather than found in results. See README
  // ("Bad input") for what this costs at load.
  check_finite(encoder_->tensors(), rt_->pool, file_->mapped());
  prepare_weights(*rt_, encoder_->matrices(), file_->mapped());
}

std::vector<int32_t> Model::tokenize(std::string_view text) const {
  texts_tokenized_.fetch_add(1, std::memory_order_relaxed);
  std::vector<int32_t> ids;
  if (add_bos_) ids.push_back(bos_);
  tok_->encode(text, ids);
  if (add_eos_) ids.push_back(eos_);
  return ids;
}

bool Model::tokenize_spans(std::string_view text, std::vector<int32_t>& ids, std::vector<TokenSpan>& spans) const {
  texts_tokenized_.fetch_add(1, std::memory_order_relaxed);
  return tok_->encode_spans(text, ids, spans);
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
    check_output(pooled.data(), batch_idx, dim);
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
  m["name"] = name_;
  m["path"] = file_->path();
  m["tokenizer"] = tokenizer_name_;
  // The dominant weight type: the type of the most bytes among 2-D tensors.
  std::map<std::string, uint64_t> bytes;
  for (const TensorView& t : file_->tensors())
    if (t.n_dims >= 2) bytes[dtype_name((uint32_t)t.type)] += t.nbytes;
  std::string best;
  uint64_t most = 0;
  for (auto& kv : bytes)
    if (kv.second > most) { most = kv.second; best = kv.first; }
  m["weight_type"] = best;
  m["activations"] = opts_.activations == ActivationMode::INT8    ? "int8"
                     : opts_.activations == ActivationMode::INT16 ? "int16"
                                                                  : "f32";
  m["normalize"] = normalize_default_ ? "true" : "false";
  return m;
}

OpTimes Model::op_times() {
  std::lock_guard<std::mutex> lock(compute_mu_);
  return rt_->times;
}

void Model::reset_op_times() {
  std::lock_guard<std::mutex> lock(compute_mu_);
  rt_->times = OpTimes{};
}

}  // namespace embedq
