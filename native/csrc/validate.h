// Model settings and weights, checked once at load. A corrupt or hostile file
// must fail there, with one GGUFError that names the key or tensor and the
// bad value, instead of loading and computing NaN vectors later (four bytes
// that made layer_norm_epsilon NaN once did exactly that: issue 10).
//
// What is checked where:
//   - every setting a forward pass or tokenizer reads: here (setting_int /
//     setting_float with a range) and in model.cpp, bert.cpp, gemma3.cpp;
//   - every tensor shape the forward pass indexes: GGUFFile::tensor, when the
//     encoder picks up its weights;
//   - every weight value: NaN or infinity anywhere in a tensor the forward
//     pass reads is refused at load (check_finite);
//   - what's left (finite weights whose products overflow) is caught by the
//     output check in Model::embed_ids.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gguf.h"
#include "threadpool.h"

namespace embedq {

// Norm epsilons must be > 0, so a constant row never divides zero by zero,
// and a normal float (they're used as float), hence the lower bound far below
// BERT's 1e-12, the smallest in use. Above 0.1 a norm no longer normalizes
// what models feed it; published models use 1e-12 .. 1e-5.
constexpr double kMinNormEps = 1e-30;
constexpr double kMaxNormEps = 0.1;
// Sizes far past any embedding model's, small enough that products of two of
// them fit size_t; a file that claims more is corrupt.
constexpr int64_t kMaxWidth = 1 << 16;        // embedding width, head size
constexpr int64_t kMaxFeedForward = 1 << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxContext = 1 << 20;
// Special tokens plus one piece of text need at least three positions.
constexpr int64_t kMinContext = 3;

// Integer setting `key` (or `dflt` when absent), required in [lo, hi].
int64_t setting_int(const GGUFFile& f, const std::string& key, int64_t lo, int64_t hi);
int64_t setting_int(const GGUFFile& f, const std::string& key, int64_t dflt, int64_t lo, int64_t hi);
// Float setting `key` (or `dflt`), required finite and in [lo, hi].
double setting_float(const GGUFFile& f, const std::string& key, double dflt, double lo, double hi);
// Error for a setting that is in range alone but not with the others.
[[noreturn]] void bad_setting(const GGUFFile& f, const std::string& key, const std::string& why);

// Index of the first element of t in [begin, end) that is NaN or infinite
// once converted to f32, or -1. For block types, begin and end are multiples of the
// block size (only the block scales can be non-finite).
int64_t first_nonfinite(const TensorView& t, uint64_t begin, uint64_t end);
// Throws GGUFError naming the tensor, the element and its value if any
// element of any tensor is not finite. Tensors are cut into pieces spread
// over the pool: weights are most of the file.
// With `release_after`, the pages of a file mapping the scan read are handed back afterwards.
void check_finite(const std::vector<const TensorView*>& tensors, ThreadPool& pool, bool release_after = false);
void check_finite(const TensorView& t);
// Drops this process's mapping of the whole pages inside [data, data + nbytes) of a file mapping:
// resident memory shrinks, the pages stay in the page cache, and a later read faults them back in.
void release_pages(const void* data, uint64_t nbytes);

}  // namespace embedq
