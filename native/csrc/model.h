// A loaded embedding model: GGUF file + tokenizer + one architecture's
// forward pass, behind one interface the bindings use.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf.h"
#include "runtime.h"
#include "tokenizer.h"

namespace embedq {

enum class Pooling { MEAN = 1, CLS = 2, LAST = 3 };

// One architecture's forward pass over a packed batch. `seqs` are complete
// token sequences (specials included, already truncated); `out` receives
// n_seqs x dim pooled vectors, not normalized.
class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual void forward(Runtime& rt, const std::vector<std::vector<int32_t>>& seqs, float* out) = 0;
  virtual size_t dim() const = 0;
  virtual size_t max_positions() const = 0;
};

std::unique_ptr<Encoder> load_bert(const GGUFFile& f);
std::unique_ptr<Encoder> load_gemma3(const GGUFFile& f);

struct EmbedStats {
  double tokenize_ms = 0;
  double forward_ms = 0;
  int64_t tokens = 0;
  int64_t truncated = 0;
};

struct ModelOptions {
  int threads = 0;  // 0 = hardware concurrency
  ActivationMode activations = ActivationMode::F32;
  int64_t max_tokens = 0;  // 0 = from the file
  size_t batch_tokens = 8192;  // forward passes are split to bound memory
  std::string kernels;  // kernel set name; empty = best this CPU supports
};

class Model {
 public:
  Model(const std::string& path, const ModelOptions& opts);

  // Ids with the special tokens the model adds, not truncated.
  std::vector<int32_t> tokenize(const std::string& text) const;
  // What the forward pass sees: specials added, truncated to max_tokens.
  std::vector<int32_t> encode(const std::string& text, bool* truncated) const;
  // out: texts.size() x dim. Texts are grouped by length into sub-batches.
  void embed(const std::vector<std::string>& texts, bool normalize, float* out, EmbedStats* stats);
  void embed_ids(const std::vector<std::vector<int32_t>>& seqs, bool normalize, float* out);

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

 private:
  std::shared_ptr<GGUFFile> file_;
  std::string arch_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Encoder> encoder_;
  std::unique_ptr<Runtime> rt_;
  // One forward pass at a time: the runtime's scratch and activations are
  // shared. Tokenization needs no lock.
  std::mutex compute_mu_;
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
