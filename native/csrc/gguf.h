// GGUF v2/v3 reader over a read-only memory map. Every count, offset and size
// read from the file is checked against the file before it is used: a
// truncated or hostile file raises GGUFError, never reads out of bounds.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "quant.h"

namespace embedq {

// Messages quote names read from the file; they are made valid UTF-8 (bad
// bytes become '?') so Python can always show them.
std::string utf8_safe(std::string_view s);

class GGUFError : public std::runtime_error {
 public:
  explicit GGUFError(const std::string& msg) : std::runtime_error(utf8_safe(msg)) {}
};

enum class GGUFType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

struct GGUFValue {
  GGUFType type = GGUFType::UINT8;
  // scalars (the field matching `type` is set; integers also fill `f`)
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string_view s;  // points into the mapping
  // arrays: element type, count, and raw position in the mapping
  GGUFType elem_type = GGUFType::UINT8;
  uint64_t count = 0;
  const uint8_t* data = nullptr;            // numeric arrays: packed little-endian elements
  std::vector<std::string_view> strings;    // string arrays
};

struct TensorView {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (innermost) dimension
  uint64_t offset = 0;           // relative to the data section
  uint64_t nbytes = 0;
  const void* data = nullptr;

  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const;
};

class GGUFFile {
 public:
  static std::shared_ptr<GGUFFile> open(const std::string& path);
  // Parses a copy of `size` bytes (used by tests and fuzzers).
  static std::shared_ptr<GGUFFile> from_buffer(const void* data, size_t size);
  ~GGUFFile();
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool mapped() const { return mapped_; }  // tensor data is a file mapping (not a caller's buffer)

  const std::map<std::string, GGUFValue>& metadata() const { return kv_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GGUFValue* find(const std::string& key) const;
  // Typed getters: throw GGUFError naming the key when missing or mistyped.
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& dflt) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;
  std::vector<double> get_double_array(const std::string& key) const;
  // A UINT8 or INT8 array as its raw bytes (e.g. a SentencePiece charsmap).
  std::string get_bytes(const std::string& key) const;
  std::vector<int32_t> get_int_array(const std::string& key) const;

  const TensorView* find_tensor(const std::string& name) const;
  // Tensor with the expected shape (ne0, ne1); throws with a clear message.
  const TensorView& tensor(const std::string& name, int64_t ne0, int64_t ne1 = 1) const;

 private:
  GGUFFile() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::vector<uint8_t> owned_;

  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  std::map<std::string, GGUFValue> kv_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace embedq
