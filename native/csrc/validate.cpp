#include "validate.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace embedq {

namespace {

// The value as the file holds it, for messages: unsigned types print as
// unsigned, so a corrupt 0xffffffffffffffff reads as such and not as -1.
std::string show_value(const GGUFValue& v) {
  char buf[64];
  switch (v.type) {
    case GGUFType::UINT8: case GGUFType::UINT16: case GGUFType::UINT32: case GGUFType::UINT64:
      std::snprintf(buf, sizeof buf, "%" PRIu64, v.u);
      return buf;
    case GGUFType::INT8: case GGUFType::INT16: case GGUFType::INT32: case GGUFType::INT64:
      std::snprintf(buf, sizeof buf, "%" PRId64, v.i);
      return buf;
    case GGUFType::BOOL: return v.u ? "true" : "false";
    case GGUFType::FLOAT32: case GGUFType::FLOAT64:
      std::snprintf(buf, sizeof buf, "%.9g", v.f);
      return buf;
    case GGUFType::STRING: {
      const std::string_view s = v.s.substr(0, 60);
      return "'" + std::string(s) + (s.size() < v.s.size() ? "...'" : "'");
    }
    case GGUFType::ARRAY: return "an array of " + std::to_string(v.count);
  }
  return "?";
}

std::string show_double(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

// A float is NaN or infinite exactly when its exponent bits are all ones.
// Testing bits instead of calling isfinite keeps the inner loop branch-free,
// so the compiler vectorizes it; weights are hundreds of megabytes.
template <typename Bits>
int64_t scan_exponents(const uint8_t* p, size_t stride, Bits exp_mask, uint64_t begin, uint64_t end) {
  constexpr uint64_t kChunk = 1024;
  for (uint64_t c = begin; c < end; c += kChunk) {
    const uint64_t e = std::min(end, c + kChunk);
    unsigned bad = 0;
    for (uint64_t i = c; i < e; ++i) {
      Bits v;
      std::memcpy(&v, p + i * stride, sizeof v);
      bad |= (Bits)(v & exp_mask) == exp_mask;
    }
    if (!bad) continue;
    for (uint64_t i = c; i < e; ++i) {
      Bits v;
      std::memcpy(&v, p + i * stride, sizeof v);
      if ((Bits)(v & exp_mask) == exp_mask) return (int64_t)i;
    }
  }
  return -1;
}

bool is_block_type(DType t) { return t != DType::F32 && t != DType::F16 && t != DType::BF16; }

// Element i of t as f32, for the error message; for a block type, the first
// non-finite scale of the block holding it.
float element(const TensorView& t, uint64_t i) {
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  switch (t.type) {
    case DType::F32: { float x; std::memcpy(&x, p + 4 * i, 4); return x; }
    case DType::F16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return fp16_to_fp32(h); }
    case DType::BF16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return bf16_to_fp32(h); }
    default: break;
  }
  const DTypeInfo& info = *dtype_info((uint32_t)t.type);
  const uint8_t* block = p + i / info.block_elems * info.block_bytes;
  for (int s = 0; s < info.n_scales; ++s) {
    uint16_t h;
    std::memcpy(&h, block + info.scale_offset[s], 2);
    if (!std::isfinite(fp16_to_fp32(h))) return fp16_to_fp32(h);
  }
  uint16_t h;
  std::memcpy(&h, block + info.scale_offset[0], 2);
  return fp16_to_fp32(h);
}

[[noreturn]] void throw_nonfinite(const TensorView& t, uint64_t i) {
  const uint64_t row = i / (uint64_t)t.ne[0], col = i % (uint64_t)t.ne[0];
  std::string where = "element " + std::to_string(i);
  if (t.n_dims > 1) where += " (row " + std::to_string(row) + ", column " + std::to_string(col) + ")";
  const std::string what = is_block_type(t.type) ? "the scale of the block holding " + where : where;
  throw GGUFError("tensor '" + t.name + "' holds a non-finite value (" + show_double(element(t, i)) + ") at " + what +
                  "; the model file is corrupt");
}

}  // namespace

[[noreturn]] void bad_setting(const GGUFFile& f, const std::string& key, const std::string& why) {
  const GGUFValue* v = f.find(key);
  throw GGUFError("GGUF metadata key '" + key + "' is " + (v ? show_value(*v) : "missing") + ": " + why);
}

int64_t setting_int(const GGUFFile& f, const std::string& key, int64_t lo, int64_t hi) {
  const int64_t x = f.get_int(key);
  const GGUFValue* v = f.find(key);
  const bool wrapped = v->type == GGUFType::UINT64 && v->u > (uint64_t)INT64_MAX;
  if (wrapped || x < lo || x > hi) {
    bad_setting(f, key, "it must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return x;
}

int64_t setting_int(const GGUFFile& f, const std::string& key, int64_t dflt, int64_t lo, int64_t hi) {
  return f.has(key) ? setting_int(f, key, lo, hi) : dflt;
}

double setting_float(const GGUFFile& f, const std::string& key, double dflt, double lo, double hi) {
  const double x = f.get_float(key, dflt);
  // Written so that NaN fails it.
  if (!(x >= lo && x <= hi)) {
    bad_setting(f, key, "it must be a finite number in [" + show_double(lo) + ", " + show_double(hi) + "]");
  }
  return x;
}

int64_t first_nonfinite(const TensorView& t, uint64_t begin, uint64_t end) {
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  switch (t.type) {
    case DType::F32: return scan_exponents<uint32_t>(p, 4, 0x7f800000u, begin, end);
    case DType::F16: return scan_exponents<uint16_t>(p, 2, 0x7c00u, begin, end);
    case DType::BF16: return scan_exponents<uint16_t>(p, 2, 0x7f80u, begin, end);
    default: break;
  }
  // Block types: only the fp16 scales can be non-finite (the quants are
  // small integers), so scan each scale field across the blocks.
  const DTypeInfo& info = *dtype_info((uint32_t)t.type);
  int64_t first = -1;
  for (int s = 0; s < info.n_scales; ++s) {
    const int64_t b = scan_exponents<uint16_t>(p + info.scale_offset[s], info.block_bytes, 0x7c00u,
                                               begin / info.block_elems, end / info.block_elems);
    if (b >= 0 && (first < 0 || b < first)) first = b;
  }
  return first < 0 ? -1 : first * (int64_t)info.block_elems;
}

void check_finite(const TensorView& t) {
  const int64_t i = first_nonfinite(t, 0, (uint64_t)t.nelements());
  if (i >= 0) throw_nonfinite(t, (uint64_t)i);
}

void release_pages(const void* data, uint64_t nbytes) {
#if defined(__unix__) || defined(__APPLE__)
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t begin = ((uintptr_t)data + page - 1) / page * page;  // whole pages inside the tensor
  const uintptr_t end = ((uintptr_t)data + nbytes) / page * page;
  if (end > begin) madvise((void*)begin, end - begin, MADV_DONTNEED);
#else
  (void)data;
  (void)nbytes;
#endif
}

void check_finite(const std::vector<const TensorView*>& tensors, ThreadPool& pool, bool release_after) {
  // Pieces of 1M elements (a multiple of every block size): enough of them to
  // keep every thread busy on the big matrices, few enough to cost nothing.
  constexpr uint64_t kPiece = 1 << 20;
  struct Piece {
    const TensorView* t;
    uint64_t begin, end;
  };
  std::vector<Piece> pieces;
  for (const TensorView* t : tensors) {
    const uint64_t n = (uint64_t)t->nelements();
    for (uint64_t b = 0; b < n; b += kPiece) pieces.push_back({t, b, std::min(n, b + kPiece)});
  }
  std::vector<int64_t> found(pieces.size(), -1);
  pool.parallel_for(pieces.size(), [&](size_t i, int) {
    found[i] = first_nonfinite(*pieces[i].t, pieces[i].begin, pieces[i].end);
  });
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (found[i] >= 0) throw_nonfinite(*pieces[i].t, (uint64_t)found[i]);
  }
  // The scan read every page; give them back, so resident memory grows by what the forward
  // passes touch (a few embedding rows), not the whole file. They stay in the page cache: a
  // later read is a minor fault, not a disk read.
  if (release_after) {
    for (const TensorView* t : tensors) release_pages(t->data, t->nbytes);
  }
}

}  // namespace embedq
