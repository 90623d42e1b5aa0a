// A loaded embedding model: GGUF file + tokenizer + one architecture's
// forward pass, behind one interface the bindings use.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gguf.h"
#include "linear.h"
#include "runtime.h"
#include "tokenizer.h"

namespace embedq {

enum class Pooling { MEAN = 1, CLS = 2, LAST = 3 };

// Token sequences packed back to back: sequence s is ids[start[s] .. start[s+1]).
struct PackedBatch {
  const int32_t* ids = nullptr;
  std::vector<size_t> start{0};
  size_t size() const { return start.size() - 1; }
};

// One architecture's forward pass over a packed batch of complete sequences
// (specials included, already truncated). Only Model::embed_ids calls it, after
// checking every length (1..max_tokens <= max_positions) and every id (below
// the vocabulary size, which the Model's constructor checked is == vocab_rows).
// `out` receives batch.size() x dim pooled vectors, not normalized.
// Constructors read and range-check every setting and tensor shape the
// forward pass depends on (validate.h), throwing GGUFError.
class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual void forward(Runtime& rt, const PackedBatch& batch, float* out) = 0;
  virtual size_t dim() const = 0;
  virtual size_t max_positions() const = 0;
  virtual size_t vocab_rows() const = 0;  // rows of the token embedding table
  // Every tensor the forward pass reads, for the load-time finiteness scan.
  virtual const std::vector<const TensorView*>& tensors() const = 0;
  // The weight matrices it passes to linear(), which the runtime prepares at load (prepare_weights).
  virtual const std::vector<const TensorView*>& matrices() const = 0;
};

// What the encoders share while loading: every tensor they read is recorded (the finiteness scan
// goes over exactly those), and 1-D tensors stored in another type are converted to f32 once.
class FileEncoder : public Encoder {
 public:
  const std::vector<const TensorView*>& tensors() const override { return reads_; }
  const std::vector<const TensorView*>& matrices() const override { return matrices_; }

 protected:
  const TensorView& use(const TensorView& t) {
    reads_.push_back(&t);
    return t;
  }
  // A 1-D tensor of n values, as f32.
  const float* vec(const GGUFFile& f, const std::string& name, size_t n) {
    converted_.emplace_back();
    return vector_f32(use(f.tensor(name, (int64_t)n)), converted_.back());
  }
  // A weight matrix of `out` rows of `in` values for linear(), no bias.
  Weight matrix(const GGUFFile& f, const std::string& name, size_t in, size_t out) {
    Weight w;
    w.t = &use(f.tensor(name, (int64_t)in, (int64_t)out));
    matrices_.push_back(w.t);
    return w;
  }

 private:
  std::vector<const TensorView*> reads_, matrices_;
  std::vector<std::vector<float>> converted_;  // inner buffers stay put when the outer vector grows
};

std::unique_ptr<Encoder> load_bert(const GGUFFile& f);
std::unique_ptr<Encoder> load_gemma3(const GGUFFile& f);
std::unique_ptr<Encoder> load_qwen3(const GGUFFile& f);
std::unique_ptr<Encoder> load_modernbert(const GGUFFile& f);

// Texts as the forward pass sees them, back to back.
struct EncodedBatch {
  std::vector<int32_t> ids;        // every text's ids, concatenated
  std::vector<int64_t> lengths;    // ids per text
  std::vector<uint8_t> truncated;  // 1 where the text was cut at max_tokens
};

struct ModelOptions {
  int threads = 0;  // 0 = hardware concurrency
  ActivationMode activations = ActivationMode::AUTO;
  int64_t max_tokens = 0;  // 0 = from the file
  size_t batch_tokens = 8192;  // forward passes are split to bound memory
  std::string kernels;  // kernel set name; empty = best this CPU supports
};

class Model {
 public:
  // Both throw GGUFError for a file that is not a usable model: unreadable,
  // a setting out of range, a tensor of the wrong shape, a non-finite weight.
  Model(const std::string& path, const ModelOptions& opts);
  // From a parsed file (tests and fuzzers build models in memory).
  Model(std::shared_ptr<GGUFFile> file, const ModelOptions& opts);

  // Ids with the special tokens the model adds, not truncated. The one entry
  // point to the tokenizer: each call counts one text in texts_tokenized().
  std::vector<int32_t> tokenize(std::string_view text) const;
  // The tokenizer's ids WITHOUT the model's special tokens, with each id's source bytes in
  // `text`; false where the tokenizer does not track them. Counts one text.
  bool tokenize_spans(std::string_view text, std::vector<int32_t>& ids, std::vector<TokenSpan>& spans) const;
  // The ids tokenize() puts around a text; -1 where the model adds none.
  int32_t leading_special() const { return add_bos_ ? bos_ : -1; }
  int32_t trailing_special() const { return add_eos_ ? eos_ : -1; }
  // What the forward pass sees: specials added, truncated to max_tokens.
  std::vector<int32_t> encode(std::string_view text, bool* truncated) const;
  // encode(prefix + text) for every text.
  EncodedBatch encode_batch(const std::vector<std::string_view>& texts, std::string_view prefix) const;

  // Throws std::invalid_argument unless there are n lengths, each 1..max_tokens,
  // summing to n_ids, and every id is in [0, vocab_size).
  void check_ids(const int32_t* ids, size_t n_ids, const int64_t* lengths, size_t n) const;
  // out: n x dim for the n sequences packed in ids (checked first). Sequences
  // are grouped by length into forward passes of at most batch_tokens tokens.
  // A vector with a NaN or infinity throws GGUFError naming the text instead
  // of being returned: finite weights can still overflow.
  void embed_ids(const int32_t* ids, size_t n_ids, const int64_t* lengths, size_t n, bool normalize, float* out);

  uint64_t texts_tokenized() const { return texts_tokenized_.load(std::memory_order_relaxed); }
  size_t dim() const { return encoder_->dim(); }
  int64_t max_tokens() const { return max_tokens_; }
  const GGUFFile& file() const { return *file_; }
  const std::string& architecture() const { return arch_; }
  std::map<std::string, std::string> info() const;
  const std::vector<std::pair<std::string, std::string>>& prompts() const { return prompts_; }
  const std::vector<int64_t>& dims_allowed() const { return dims_allowed_; }
  int threads() const { return rt_->pool.size(); }
  size_t vocab_size() const { return vocab_size_; }
  const char* kernels_name() const { return rt_->k.name; }
  // Read or reset under the compute lock, so never halfway through a forward pass.
  OpTimes op_times();
  void reset_op_times();

 private:
  void load();

  std::shared_ptr<GGUFFile> file_;
  std::string arch_;
  std::string name_, tokenizer_name_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Encoder> encoder_;
  std::unique_ptr<Runtime> rt_;
  // One forward pass at a time: the runtime's scratch and activations are
  // shared. Tokenization needs no lock.
  std::mutex compute_mu_;
  mutable std::atomic<uint64_t> texts_tokenized_{0};
  ModelOptions opts_;
  int64_t max_tokens_ = 512;
  size_t vocab_size_ = 0;
  int32_t bos_ = -1, eos_ = -1;  // [CLS]/[SEP] for BERT, <bos>/<eos> for Gemma
  bool add_bos_ = true, add_eos_ = true;
  bool normalize_default_ = true;
  std::vector<std::pair<std::string, std::string>> prompts_;
  std::vector<int64_t> dims_allowed_;
};

}  // namespace embedq
