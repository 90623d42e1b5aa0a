#include "gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>

namespace embedq {

std::string utf8_safe(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1fu) : len == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = (unsigned char)s[i + k];
      ok = (cc >> 6) == 2;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF, as Python does.
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok) ok = cp >= min_cp[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) && cp != 0;
    if (ok) {
      out.append(s.substr(i, len));
    } else {
      out += '?';
      len = 1;
    }
    i += len;
  }
  return out;
}

namespace {

// Indexed by ggml type id; name only for ids we refuse (so errors can name them).
struct DTypeEntry {
  DTypeInfo info;
  bool supported;
};

constexpr DTypeEntry kTypes[] = {
    {{"F32", 1, 4, 0, {0, 0}}, true},
    {{"F16", 1, 2, 0, {0, 0}}, true},
    {{"Q4_0", QK4_0, sizeof(BlockQ4_0), 1, {offsetof(BlockQ4_0, d), 0}}, true},
    {{"Q4_1", QK4_1, sizeof(BlockQ4_1), 2, {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)}}, true},
    {{"Q4_2", 0, 0, 0, {0, 0}}, false},  // removed from ggml long ago
    {{"Q4_3", 0, 0, 0, {0, 0}}, false},
    {{"Q5_0", QK5_0, sizeof(BlockQ5_0), 1, {offsetof(BlockQ5_0, d), 0}}, true},
    {{"Q5_1", QK5_1, sizeof(BlockQ5_1), 2, {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)}}, true},
    {{"Q8_0", QK8_0, sizeof(BlockQ8_0), 1, {offsetof(BlockQ8_0, d), 0}}, true},
    {{"Q8_1", 0, 0, 0, {0, 0}}, false},
    {{"Q2_K", QK_K, sizeof(BlockQ2_K), 2, {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)}}, true},
    {{"Q3_K", QK_K, sizeof(BlockQ3_K), 1, {offsetof(BlockQ3_K, d), 0}}, true},
    {{"Q4_K", QK_K, sizeof(BlockQ4_K), 2, {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)}}, true},
    {{"Q5_K", QK_K, sizeof(BlockQ5_K), 2, {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)}}, true},
    {{"Q6_K", QK_K, sizeof(BlockQ6_K), 1, {offsetof(BlockQ6_K, d), 0}}, true},
    {{"Q8_K", 0, 0, 0, {0, 0}}, false},
    {{"IQ2_XXS", 0, 0, 0, {0, 0}}, false},
    {{"IQ2_XS", 0, 0, 0, {0, 0}}, false},
    {{"IQ3_XXS", 0, 0, 0, {0, 0}}, false},
    {{"IQ1_S", 0, 0, 0, {0, 0}}, false},
    {{"IQ4_NL", 0, 0, 0, {0, 0}}, false},
    {{"IQ3_S", 0, 0, 0, {0, 0}}, false},
    {{"IQ2_S", 0, 0, 0, {0, 0}}, false},
    {{"IQ4_XS", 0, 0, 0, {0, 0}}, false},
    {{"I8", 0, 0, 0, {0, 0}}, false},
    {{"I16", 0, 0, 0, {0, 0}}, false},
    {{"I32", 0, 0, 0, {0, 0}}, false},
    {{"I64", 0, 0, 0, {0, 0}}, false},
    {{"F64", 0, 0, 0, {0, 0}}, false},
    {{"IQ1_M", 0, 0, 0, {0, 0}}, false},
    {{"BF16", 1, 2, 0, {0, 0}}, true},
    {{"Q4_0_4_4", 0, 0, 0, {0, 0}}, false},  // 31..33: ARM repacks, no longer written
    {{"Q4_0_4_8", 0, 0, 0, {0, 0}}, false},
    {{"Q4_0_8_8", 0, 0, 0, {0, 0}}, false},
    {{"TQ1_0", 0, 0, 0, {0, 0}}, false},
    {{"TQ2_0", 0, 0, 0, {0, 0}}, false},
    {{"IQ4_NL_4_4", 0, 0, 0, {0, 0}}, false},
    {{"IQ4_NL_4_8", 0, 0, 0, {0, 0}}, false},
    {{"IQ4_NL_8_8", 0, 0, 0, {0, 0}}, false},
    {{"MXFP4", 0, 0, 0, {0, 0}}, false},
    {{"NVFP4", 0, 0, 0, {0, 0}}, false},
    {{"Q1_0", 0, 0, 0, {0, 0}}, false},
    {{"Q2_0", 0, 0, 0, {0, 0}}, false},
};
constexpr size_t kNumTypes = sizeof(kTypes) / sizeof(kTypes[0]);
static_assert(kDTypeSlots == (size_t)DType::BF16 + 1, "per-type tables end at BF16, the largest supported id");

}  // namespace

const DTypeInfo* dtype_info(uint32_t t) {
  return t < kNumTypes && kTypes[t].supported ? &kTypes[t].info : nullptr;
}

const char* dtype_name(uint32_t t) { return t < kNumTypes ? kTypes[t].info.name : "unknown"; }

bool dtype_supported(uint32_t t) { return dtype_info(t) != nullptr; }

const char* dtype_supported_list() {
  static const std::string list = [] {
    std::string s;
    for (uint32_t t = 0; t < kNumTypes; ++t) {
      if (!kTypes[t].supported) continue;
      if (!s.empty()) s += ", ";
      s += kTypes[t].info.name;
    }
    return s;
  }();
  return list.c_str();
}

size_t dtype_block_elems(DType t) { return dtype_info((uint32_t)t)->block_elems; }

size_t dtype_block_bytes(DType t) { return dtype_info((uint32_t)t)->block_bytes; }

size_t TensorView::row_bytes() const {
  return (size_t)ne[0] / dtype_block_elems(type) * dtype_block_bytes(type);
}

namespace {

constexpr uint64_t kMaxStringLen = 1ull << 30;
constexpr uint64_t kMaxDimension = 1ull << 40;

// Bounds-checked little-endian cursor over the file.
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size) : base_(base), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      throw GGUFError(std::string("GGUF file is truncated: reading ") + what + " needs " +
                      std::to_string(n) + " bytes at offset " + std::to_string(pos_) + ", only " +
                      std::to_string(remaining()) + " left");
    }
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > kMaxStringLen) throw GGUFError(std::string("GGUF string too long while reading ") + what);
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(base_ + pos_), (size_t)n);
    pos_ += (size_t)n;
    return s;
  }
  const uint8_t* skip(uint64_t n, const char* what) {
    need(n, what);
    const uint8_t* p = base_ + pos_;
    pos_ += (size_t)n;
    return p;
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
};

size_t scalar_size(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
    default: return 0;
  }
}

bool valid_type(uint32_t t) { return t <= 12; }

void read_scalar(Cursor& c, GGUFType t, GGUFValue& v, const std::string& key) {
  const char* w = "metadata value";
  switch (t) {
    case GGUFType::UINT8: v.u = c.read<uint8_t>(w); v.i = (int64_t)v.u; v.f = (double)v.u; break;
    case GGUFType::INT8: v.i = c.read<int8_t>(w); v.u = (uint64_t)v.i; v.f = (double)v.i; break;
    case GGUFType::UINT16: v.u = c.read<uint16_t>(w); v.i = (int64_t)v.u; v.f = (double)v.u; break;
    case GGUFType::INT16: v.i = c.read<int16_t>(w); v.u = (uint64_t)v.i; v.f = (double)v.i; break;
    case GGUFType::UINT32: v.u = c.read<uint32_t>(w); v.i = (int64_t)v.u; v.f = (double)v.u; break;
    case GGUFType::INT32: v.i = c.read<int32_t>(w); v.u = (uint64_t)v.i; v.f = (double)v.i; break;
    case GGUFType::UINT64: v.u = c.read<uint64_t>(w); v.i = (int64_t)v.u; v.f = (double)v.u; break;
    case GGUFType::INT64: v.i = c.read<int64_t>(w); v.u = (uint64_t)v.i; v.f = (double)v.i; break;
    case GGUFType::FLOAT32: v.f = c.read<float>(w); v.i = 0; break;
    case GGUFType::FLOAT64: v.f = c.read<double>(w); v.i = 0; break;
    case GGUFType::BOOL: {
      const uint8_t b = c.read<uint8_t>(w);
      if (b > 1) throw GGUFError("GGUF metadata key '" + key + "' has an invalid bool byte");
      v.u = b; v.i = b; v.f = b;
      break;
    }
    case GGUFType::STRING: v.s = c.read_string(w); break;
    default: throw GGUFError("GGUF metadata key '" + key + "' has an invalid type");
  }
}

}  // namespace

std::shared_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw GGUFError("cannot open GGUF file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw GGUFError("cannot stat GGUF file '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw GGUFError("'" + path + "' is not a regular file");
  }
  std::shared_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = path;
  f->size_ = (size_t)st.st_size;
  if (f->size_ == 0) {
    ::close(fd);
    throw GGUFError("GGUF file '" + path + "' is empty");
  }
  void* p = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw GGUFError("cannot map GGUF file '" + path + "': " + std::strerror(errno));
  f->base_ = static_cast<const uint8_t*>(p);
  f->mapped_ = true;
  try {
    f->parse();
  } catch (const GGUFError& e) {
    throw GGUFError(std::string(e.what()) + " (file '" + path + "')");
  }
  return f;
}

std::shared_ptr<GGUFFile> GGUFFile::from_buffer(const void* data, size_t size) {
  std::shared_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = "<buffer>";
  // Keep at least one byte so base_ is never null, and 64-byte alignment so
  // tensor data sits where it would in a page-aligned mapping.
  f->owned_.resize(size + 64);
  const uintptr_t a = reinterpret_cast<uintptr_t>(f->owned_.data());
  const size_t pad = (64 - (a & 63)) & 63;
  if (size) std::memcpy(f->owned_.data() + pad, data, size);
  f->base_ = f->owned_.data() + pad;
  f->size_ = size;
  f->parse();
  return f;
}

GGUFFile::~GGUFFile() {
  if (mapped_ && base_) munmap(const_cast<uint8_t*>(base_), size_);
}

void GGUFFile::parse() {
  Cursor c(base_, size_);
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != 0x46554747u) throw GGUFError("not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("version");
  if (version_ < 2 || version_ > 3) {
    throw GGUFError("unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key-value needs at least 8 (key length) + 4 (type) + 1 bytes, each
  // tensor info at least 8 + 4 + 4 + 8: reject counts the file cannot hold
  // before allocating anything for them.
  if (n_kv > c.remaining() / 13) throw GGUFError("GGUF metadata count " + std::to_string(n_kv) + " exceeds file size");
  if (n_tensors > c.remaining() / 24) throw GGUFError("GGUF tensor count " + std::to_string(n_tensors) + " exceeds file size");

  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key(c.read_string("metadata key"));
    if (key.empty()) throw GGUFError("GGUF metadata key #" + std::to_string(i) + " is empty");
    const uint32_t t = c.read<uint32_t>("metadata type");
    if (!valid_type(t)) throw GGUFError("GGUF metadata key '" + key + "' has invalid type " + std::to_string(t));
    GGUFValue v;
    v.type = (GGUFType)t;
    if (v.type == GGUFType::ARRAY) {
      const uint32_t et = c.read<uint32_t>("array element type");
      if (!valid_type(et) || (GGUFType)et == GGUFType::ARRAY) {
        throw GGUFError("GGUF metadata array '" + key + "' has invalid element type " + std::to_string(et));
      }
      v.elem_type = (GGUFType)et;
      v.count = c.read<uint64_t>("array length");
      if (v.elem_type == GGUFType::STRING) {
        if (v.count > c.remaining() / 8) throw GGUFError("GGUF metadata array '" + key + "' is longer than the file");
        v.strings.reserve((size_t)v.count);
        for (uint64_t j = 0; j < v.count; ++j) v.strings.push_back(c.read_string("array string"));
      } else {
        const size_t es = scalar_size(v.elem_type);
        if (v.count > c.remaining() / es) throw GGUFError("GGUF metadata array '" + key + "' is longer than the file");
        v.data = c.skip(v.count * es, "array data");
      }
    } else {
      read_scalar(c, v.type, v, key);
    }
    if (!kv_.emplace(key, std::move(v)).second) throw GGUFError("GGUF metadata key '" + key + "' appears twice");
  }

  if (const GGUFValue* a = find("general.alignment")) {
    if (a->type != GGUFType::UINT32 && a->type != GGUFType::INT32 && a->type != GGUFType::UINT64) {
      throw GGUFError("general.alignment must be an integer");
    }
    if (a->u == 0 || a->u > (1u << 20) || (a->u & (a->u - 1)) != 0) {
      throw GGUFError("general.alignment " + std::to_string(a->u) + " is not a power of two");
    }
    alignment_ = (uint32_t)a->u;
  }

  tensors_.reserve((size_t)n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorView t;
    t.name = std::string(c.read_string("tensor name"));
    const uint32_t nd = c.read<uint32_t>("tensor dims");
    if (nd == 0 || nd > 4) throw GGUFError("tensor '" + t.name + "' has " + std::to_string(nd) + " dimensions (1..4 allowed)");
    t.n_dims = (int)nd;
    uint64_t total = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t ne = c.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > kMaxDimension) throw GGUFError("tensor '" + t.name + "' has invalid dimension " + std::to_string(ne));
      if (total > (std::numeric_limits<uint64_t>::max() >> 2) / ne) throw GGUFError("tensor '" + t.name + "' is too large");
      total *= ne;
      t.ne[d] = (int64_t)ne;
    }
    if (total > kMaxDimension) throw GGUFError("tensor '" + t.name + "' is too large");
    const uint32_t ty = c.read<uint32_t>("tensor type");
    if (!dtype_supported(ty)) {
      throw GGUFError("tensor '" + t.name + "' has type " + dtype_name(ty) + " (" + std::to_string(ty) +
                      "), which embedq cannot compute with; supported types are " + dtype_supported_list());
    }
    t.type = (DType)ty;
    const size_t be = dtype_block_elems(t.type);
    if ((uint64_t)t.ne[0] % be != 0) {
      throw GGUFError("tensor '" + t.name + "' row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                      dtype_name(ty) + " block size (" + std::to_string(be) + ")");
    }
    t.nbytes = total / be * dtype_block_bytes(t.type);
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.offset % alignment_ != 0) throw GGUFError("tensor '" + t.name + "' data offset is not aligned");
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) throw GGUFError("tensor '" + t.name + "' appears twice");
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_start > size_) throw GGUFError("GGUF file is truncated before its tensor data");
  for (TensorView& t : tensors_) {
    const uint64_t avail = size_ - data_start;
    if (t.offset > avail || t.nbytes > avail - t.offset) {
      throw GGUFError("GGUF file is truncated: tensor '" + t.name + "' needs bytes " + std::to_string(data_start + t.offset) +
                      ".." + std::to_string(data_start + t.offset + t.nbytes) + " of a " + std::to_string(size_) + "-byte file");
    }
    t.data = base_ + data_start + t.offset;
  }
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

namespace {
bool is_int(GGUFType t) {
  return t == GGUFType::UINT8 || t == GGUFType::INT8 || t == GGUFType::UINT16 || t == GGUFType::INT16 ||
         t == GGUFType::UINT32 || t == GGUFType::INT32 || t == GGUFType::UINT64 || t == GGUFType::INT64 ||
         t == GGUFType::BOOL;
}
}  // namespace

std::string GGUFFile::get_string(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw GGUFError("GGUF metadata key '" + key + "' is missing");
  if (v->type != GGUFType::STRING) throw GGUFError("GGUF metadata key '" + key + "' is not a string");
  return std::string(v->s);
}
std::string GGUFFile::get_string(const std::string& key, const std::string& dflt) const {
  return has(key) ? get_string(key) : dflt;
}
int64_t GGUFFile::get_int(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw GGUFError("GGUF metadata key '" + key + "' is missing");
  if (!is_int(v->type)) throw GGUFError("GGUF metadata key '" + key + "' is not an integer");
  return v->i;
}
int64_t GGUFFile::get_int(const std::string& key, int64_t dflt) const { return has(key) ? get_int(key) : dflt; }
double GGUFFile::get_float(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw GGUFError("GGUF metadata key '" + key + "' is missing");
  if (v->type != GGUFType::FLOAT32 && v->type != GGUFType::FLOAT64 && !is_int(v->type)) {
    throw GGUFError("GGUF metadata key '" + key + "' is not a number");
  }
  return v->f;
}
double GGUFFile::get_float(const std::string& key, double dflt) const { return has(key) ? get_float(key) : dflt; }
bool GGUFFile::get_bool(const std::string& key, bool dflt) const {
  const GGUFValue* v = find(key);
  if (!v) return dflt;
  if (!is_int(v->type)) throw GGUFError("GGUF metadata key '" + key + "' is not a bool");
  return v->u != 0;
}

std::vector<std::string> GGUFFile::get_string_array(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw GGUFError("GGUF metadata key '" + key + "' is missing");
  if (v->type != GGUFType::ARRAY || v->elem_type != GGUFType::STRING) {
    throw GGUFError("GGUF metadata key '" + key + "' is not a string array");
  }
  return std::vector<std::string>(v->strings.begin(), v->strings.end());
}

std::vector<float> GGUFFile::get_float_array(const std::string& key) const {
  const std::vector<double> d = get_double_array(key);
  return std::vector<float>(d.begin(), d.end());
}

std::vector<double> GGUFFile::get_double_array(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw GGUFError("GGUF metadata key '" + key + "' is missing");
  if (v->type != GGUFType::ARRAY || (v->elem_type != GGUFType::FLOAT32 && v->elem_type != GGUFType::FLOAT64)) {
    throw GGUFError("GGUF metadata key '" + key + "' is not a float array");
  }
  std::vector<double> out((size_t)v->count);
  for (size_t i = 0; i < out.size(); ++i) {
    if (v->elem_type == GGUFType::FLOAT32) {
      float f;
      std::memcpy(&f, v->data + 4 * i, 4);
      out[i] = f;
    } else {
      std::memcpy(&out[i], v->data + 8 * i, 8);
    }
  }
  return out;
}

std::string GGUFFile::get_bytes(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw GGUFError("GGUF metadata key '" + key + "' is missing");
  if (v->type != GGUFType::ARRAY || (v->elem_type != GGUFType::UINT8 && v->elem_type != GGUFType::INT8)) {
    throw GGUFError("GGUF metadata key '" + key + "' is not a byte array");
  }
  if (v->count == 0) return std::string();
  return std::string(reinterpret_cast<const char*>(v->data), (size_t)v->count);
}

std::vector<int32_t> GGUFFile::get_int_array(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw GGUFError("GGUF metadata key '" + key + "' is missing");
  if (v->type != GGUFType::ARRAY || !is_int(v->elem_type)) {
    throw GGUFError("GGUF metadata key '" + key + "' is not an integer array");
  }
  const size_t es = scalar_size(v->elem_type);
  std::vector<int32_t> out((size_t)v->count);
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t* p = v->data + es * i;
    int64_t x = 0;
    switch (v->elem_type) {
      case GGUFType::UINT8: case GGUFType::BOOL: x = *p; break;
      case GGUFType::INT8: x = (int8_t)*p; break;
      case GGUFType::UINT16: { uint16_t t; std::memcpy(&t, p, 2); x = t; break; }
      case GGUFType::INT16: { int16_t t; std::memcpy(&t, p, 2); x = t; break; }
      case GGUFType::UINT32: { uint32_t t; std::memcpy(&t, p, 4); x = t; break; }
      case GGUFType::INT32: { int32_t t; std::memcpy(&t, p, 4); x = t; break; }
      case GGUFType::UINT64: {
        uint64_t t;
        std::memcpy(&t, p, 8);
        x = t > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)t;
        break;
      }
      default: { int64_t t; std::memcpy(&t, p, 8); x = t; break; }
    }
    // Never wrap: 2^32 + 768 must not read as 768.
    if (x < INT32_MIN || x > INT32_MAX) {
      throw GGUFError("GGUF metadata array '" + key + "' element " + std::to_string(i) + " = " + std::to_string(x) +
                      " does not fit a 32-bit integer");
    }
    out[i] = (int32_t)x;
  }
  return out;
}

const TensorView* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& GGUFFile::tensor(const std::string& name, int64_t ne0, int64_t ne1) const {
  const TensorView* t = find_tensor(name);
  if (!t) throw GGUFError("tensor '" + name + "' is missing from the model file");
  if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
    throw GGUFError("tensor '" + name + "' has shape [" + std::to_string(t->ne[0]) + ", " + std::to_string(t->ne[1]) +
                    ", " + std::to_string(t->ne[2]) + ", " + std::to_string(t->ne[3]) + "], expected [" +
                    std::to_string(ne0) + ", " + std::to_string(ne1) + "]");
  }
  return *t;
}

}  // namespace embedq
