// GGUF reader tests: a valid file built in memory parses to what was written;
// every truncation and many random mutations of it either parse or throw
// GGUFError, never crash (run under AddressSanitizer/UBSan in CI).
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "gguf.h"

using namespace embedq;

namespace {

struct Writer {
  std::vector<uint8_t> b;
  template <typename T> void put(T v) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) { put<uint64_t>(s.size()); b.insert(b.end(), s.begin(), s.end()); }
  void align(size_t a) { while (b.size() % a) b.push_back(0); }
};

// A small model-like file: string, int, float and array metadata plus an F32,
// an F16 and a Q8_0 tensor.
std::vector<uint8_t> make_file() {
  Writer w;
  w.put<uint32_t>(0x46554747u);
  w.put<uint32_t>(3);
  w.put<uint64_t>(3);  // tensors
  w.put<uint64_t>(5);  // kv
  w.str("general.architecture"); w.put<uint32_t>(8); w.str("bert");
  w.str("bert.block_count"); w.put<uint32_t>(4); w.put<uint32_t>(6);
  w.str("bert.attention.layer_norm_epsilon"); w.put<uint32_t>(6); w.put<float>(1e-12f);
  w.str("tokenizer.ggml.tokens"); w.put<uint32_t>(9); w.put<uint32_t>(8); w.put<uint64_t>(3);
  w.str("[CLS]"); w.str("\xe2\x96\x81hello"); w.str("lo");
  w.str("tokenizer.ggml.scores"); w.put<uint32_t>(9); w.put<uint32_t>(6); w.put<uint64_t>(3);
  w.put<float>(0.f); w.put<float>(-1.f); w.put<float>(-2.f);
  // tensor infos
  w.str("a.weight"); w.put<uint32_t>(2); w.put<uint64_t>(4); w.put<uint64_t>(2); w.put<uint32_t>(0); w.put<uint64_t>(0);
  w.str("b.weight"); w.put<uint32_t>(1); w.put<uint64_t>(8); w.put<uint32_t>(1); w.put<uint64_t>(32);
  w.str("c.weight"); w.put<uint32_t>(2); w.put<uint64_t>(32); w.put<uint64_t>(2); w.put<uint32_t>(8); w.put<uint64_t>(64);
  w.align(32);
  for (int i = 0; i < 8; ++i) w.put<float>((float)i);     // a: 32 bytes
  for (int i = 0; i < 8; ++i) w.put<uint16_t>(0x3c00);    // b: 16 bytes of 1.0h
  w.b.resize(w.b.size() + 16, 0);                         // pad to offset 64
  for (int blk = 0; blk < 2; ++blk) {                      // c: 2 Q8_0 blocks
    w.put<uint16_t>(0x3800);                               // d = 0.5
    for (int i = 0; i < 32; ++i) w.put<int8_t>((int8_t)(i - 16));
  }
  return w.b;
}

void test_valid() {
  const auto bytes = make_file();
  auto f = GGUFFile::from_buffer(bytes.data(), bytes.size());
  CHECK(f->version() == 3);
  CHECK(f->get_string("general.architecture") == "bert");
  CHECK(f->get_int("bert.block_count") == 6);
  CHECK(f->get_float("bert.attention.layer_norm_epsilon") > 0);
  const auto toks = f->get_string_array("tokenizer.ggml.tokens");
  CHECK(toks.size() == 3 && toks[1] == "\xe2\x96\x81hello");
  const auto sc = f->get_float_array("tokenizer.ggml.scores");
  CHECK(sc.size() == 3 && sc[2] == -2.f);
  CHECK(f->tensors().size() == 3);
  const TensorView& a = f->tensor("a.weight", 4, 2);
  CHECK(static_cast<const float*>(a.data)[7] == 7.f);
  const TensorView& c = f->tensor("c.weight", 32, 2);
  CHECK(c.type == DType::Q8_0 && c.nbytes == 68);
  const BlockQ8_0* q = static_cast<const BlockQ8_0*>(c.data);
  CHECK(q[1].qs[31] == 15 && fp16_to_fp32(q[1].d) == 0.5f);
  bool threw = false;
  try { f->tensor("a.weight", 2, 4); } catch (const GGUFError&) { threw = true; }
  CHECK(threw);
  threw = false;
  try { f->get_int("general.architecture"); } catch (const GGUFError&) { threw = true; }
  CHECK(threw);
}

// Parses `bytes`; a GGUFError is fine, anything else (crash, other exception) is not.
bool parses_or_rejects(const std::vector<uint8_t>& bytes, bool* ok) {
  try {
    auto f = GGUFFile::from_buffer(bytes.data(), bytes.size());
    // Touch every tensor byte so ASan sees any out-of-range view.
    volatile uint8_t sink = 0;
    for (const TensorView& t : f->tensors()) {
      const uint8_t* p = static_cast<const uint8_t*>(t.data);
      for (uint64_t i = 0; i < t.nbytes; ++i) sink ^= p[i];
    }
    for (const auto& kv : f->metadata()) {
      if (kv.second.type == GGUFType::ARRAY && kv.second.elem_type == GGUFType::STRING) {
        for (const auto& s : kv.second.strings) for (char ch : s) sink ^= (uint8_t)ch;
      }
    }
    *ok = true;
    return true;
  } catch (const GGUFError&) {
    *ok = false;
    return true;
  } catch (...) {
    return false;
  }
}

void test_truncations() {
  const auto bytes = make_file();
  int rejected = 0;
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + (long)n);
    bool ok = false;
    CHECK(parses_or_rejects(cut, &ok));
    rejected += !ok;
  }
  // Every proper prefix loses tensor data, so every one must be rejected.
  CHECK(rejected == (int)bytes.size());
}

void test_mutations() {
  const auto bytes = make_file();
  std::mt19937_64 rng(1234);
  const uint64_t evil[] = {0, 1, 0xff, 0xffff, 0x7fffffffull, 0xffffffffull, 0x8000000000000000ull, ~0ull, 1ull << 40};
  int bad = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> m = bytes;
    const int n_mut = 1 + (int)(rng() % 4);
    for (int j = 0; j < n_mut; ++j) {
      const size_t pos = rng() % m.size();
      switch (rng() % 3) {
        case 0: m[pos] ^= (uint8_t)(1u << (rng() % 8)); break;
        case 1: m[pos] = (uint8_t)rng(); break;
        default: {  // overwrite an aligned-ish word with a hostile value
          const uint64_t v = evil[rng() % (sizeof(evil) / sizeof(evil[0]))];
          const size_t width = (rng() % 2) ? 8 : 4;
          for (size_t k = 0; k < width && pos + k < m.size(); ++k) m[pos + k] = (uint8_t)(v >> (8 * k));
        }
      }
    }
    bool ok;
    if (!parses_or_rejects(m, &ok)) ++bad;
  }
  CHECK(bad == 0);
}

}  // namespace

int main() {
  test_valid();
  test_truncations();
  test_mutations();
  return report();
}
