// Mutation fuzz of model loading, past the file parser: the setting checks,
// the tensor shape checks, the weight scan, the tokenizer constructors and a
// forward pass. A tiny BERT, EmbeddingGemma and Qwen3 (tiny_gguf.h) are
// mutated a few thousand times each: bit flips, random bytes, hostile values
// aimed at the length, type and value fields the builder recorded, special
// floats in tensor data, truncation, bytes inserted or deleted.
//
// Every mutant must be refused with GGUFError, or load and turn a few texts
// into finite vectors (or have a vector refused by the output check, also a
// GGUFError). Any other exception fails the test; a crash or an ASan/UBSan
// report fails it too (ctest runs this under the sanitizers).
//
// EMBEDQ_FUZZ_ITERATIONS (per model, default 5000) and EMBEDQ_FUZZ_SEED
// (default 20240607) make longer or different runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "model.h"
#include "tiny_gguf.h"
#include "unicode.h"

using namespace embedq;

namespace {

struct Stats {
  int parse_rejected = 0, model_rejected = 0, loaded = 0, output_refused = 0, bad = 0;
};

uint64_t env_u64(const char* name, uint64_t dflt) {
  const char* s = std::getenv(name);
  return s && *s ? std::strtoull(s, nullptr, 10) : dflt;
}

void write_le(std::vector<uint8_t>& m, size_t pos, uint64_t v, size_t width) {
  for (size_t k = 0; k < width && pos + k < m.size(); ++k) m[pos + k] = (uint8_t)(v >> (8 * k));
}

uint64_t read_le(const std::vector<uint8_t>& m, size_t pos, size_t width) {
  uint64_t v = 0;
  for (size_t k = 0; k < width && pos + k < m.size(); ++k) v |= (uint64_t)m[pos + k] << (8 * k);
  return v;
}

const uint64_t kEvilInts[] = {0, 1, 2, 3, 4, 7, 8, 0x7f, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
                              1ull << 32, 1ull << 40, 0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull};
const float kEvilFloats[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                             -std::numeric_limits<float>::infinity(), 0.f, -0.f, -1.f, 1e-45f, 1e-30f, 1e-12f,
                             0.5f, 1.f, 2.f, 1e10f, 3e38f, -3e38f};
const uint16_t kEvilHalves[] = {0x7c00, 0xfc00, 0x7e00, 0x7bff, 0x0001};

// A hostile value for the field at `s`: its type decides the width and what
// hostile means (huge counts, unknown types, NaN epsilons...).
void mutate_site(std::vector<uint8_t>& m, const tiny::Site& s, std::mt19937_64& rng) {
  const uint64_t evil = kEvilInts[rng() % (sizeof kEvilInts / sizeof kEvilInts[0])];
  const float evil_f = kEvilFloats[rng() % (sizeof kEvilFloats / sizeof kEvilFloats[0])];
  switch (s.kind) {
    case tiny::Field::COUNT: case tiny::Field::LENGTH: case tiny::Field::DIM: case tiny::Field::OFFSET:
    case tiny::Field::U64: {
      const uint64_t old = read_le(m, s.offset, 8);
      const uint64_t delta = 1 + rng() % 3;
      write_le(m, s.offset, rng() % 2 ? evil : (rng() % 2 ? old + delta : old - delta), 8);
      break;
    }
    case tiny::Field::TYPE: case tiny::Field::TENSOR_TYPE:
      write_le(m, s.offset, rng() % 2 ? rng() % 32 : evil, 4);
      break;
    case tiny::Field::INT: case tiny::Field::N_DIMS: {
      const uint64_t old = read_le(m, s.offset, 4);
      write_le(m, s.offset, rng() % 2 ? evil : old + (rng() % 5) - 2, 4);
      break;
    }
    case tiny::Field::F32: {
      uint32_t bits;
      std::memcpy(&bits, &evil_f, 4);
      write_le(m, s.offset, bits, 4);
      break;
    }
    case tiny::Field::F64: {
      const double d = evil_f;
      uint64_t bits;
      std::memcpy(&bits, &d, 8);
      write_le(m, s.offset, bits, 8);
      break;
    }
    case tiny::Field::BOOL: {
      const uint8_t choices[] = {0, 1, 2, 0xff};
      write_le(m, s.offset, choices[rng() % 4], 1);
      break;
    }
  }
}

// Metadata values and tensor dimensions: hostile values there mostly parse,
// so they are what reaches the model's own checks.
std::vector<tiny::Site> value_sites(const tiny::Built& b) {
  std::vector<tiny::Site> out;
  for (const tiny::Site& s : b.sites) {
    if (s.kind == tiny::Field::INT || s.kind == tiny::Field::U64 || s.kind == tiny::Field::F32 ||
        s.kind == tiny::Field::F64 || s.kind == tiny::Field::BOOL || s.kind == tiny::Field::DIM) {
      out.push_back(s);
    }
  }
  return out;
}

void mutate(std::vector<uint8_t>& m, const tiny::Built& b, const std::vector<tiny::Site>& values, std::mt19937_64& rng) {
  if (m.empty()) return;
  const size_t pos = rng() % m.size();
  const size_t header = std::min(b.data_begin, m.size());
  switch (rng() % 10) {
    case 0: m[pos] ^= (uint8_t)(1u << (rng() % 8)); break;
    case 1: m[pos] = (uint8_t)rng(); break;
    case 2: case 3: mutate_site(m, b.sites[rng() % b.sites.size()], rng); break;
    case 4: case 5: mutate_site(m, values[rng() % values.size()], rng); break;
    case 6: {  // special values in tensor data, as f32 or as f16
      if (m.size() <= b.data_begin + 4) break;
      const size_t at = b.data_begin + (rng() % (m.size() - b.data_begin - 4)) / 2 * 2;
      if (rng() % 2) {
        uint32_t bits;
        std::memcpy(&bits, &kEvilFloats[rng() % (sizeof kEvilFloats / sizeof kEvilFloats[0])], 4);
        write_le(m, at, bits, 4);
      } else {
        write_le(m, at, kEvilHalves[rng() % (sizeof kEvilHalves / sizeof kEvilHalves[0])], 2);
      }
      break;
    }
    case 7: m.resize(rng() % m.size()); break;
    case 8: {  // delete a few header bytes: every later field shifts
      const size_t at = rng() % header, n = std::min<size_t>(1 + rng() % 8, m.size() - at);
      m.erase(m.begin() + (long)at, m.begin() + (long)(at + n));
      break;
    }
    default: {  // insert a few random header bytes
      const size_t at = rng() % (header + 1);
      std::vector<uint8_t> junk(1 + rng() % 8);
      for (uint8_t& x : junk) x = (uint8_t)rng();
      m.insert(m.begin() + (long)at, junk.begin(), junk.end());
    }
  }
}

// Loads one mutant and, when it loads, embeds a few texts. Returns false (and
// says why) for any outcome but a GGUFError or finite vectors.
bool try_mutant(const std::vector<uint8_t>& bytes, Stats& st) {
  std::shared_ptr<GGUFFile> file;
  std::unique_ptr<Model> model;
  try {
    file = GGUFFile::from_buffer(bytes.data(), bytes.size());
  } catch (const GGUFError&) {
    ++st.parse_rejected;
    return true;
  } catch (const std::exception& e) {
    std::printf("  parsing threw %s\n", e.what());
    return false;
  }
  try {
    ModelOptions o;
    o.threads = 1;
    model.reset(new Model(file, o));
  } catch (const GGUFError&) {
    ++st.model_rejected;
    return true;
  } catch (const std::exception& e) {
    std::printf("  loading threw %s\n", e.what());
    return false;
  }
  ++st.loaded;
  try {
    bool ok = model->max_tokens() >= 3;
    for (int64_t d : model->dims_allowed()) ok = ok && d >= 1 && (size_t)d <= model->dim();
    for (const auto& p : model->prompts()) ok = ok && unicode::utf8_is_valid(p.first) && unicode::utf8_is_valid(p.second);
    if (!ok) {
      std::printf("  loaded with settings out of range\n");
      return false;
    }
    std::string long_text;
    for (int i = 0; i < 40; ++i) long_text += "hello world ";
    const std::vector<std::string_view> texts = {"hello world", "The cat HELD a wolf!", "h\xC3\xA9llo \xff wor|d: ex",
                                                 long_text};
    const std::string prefix = model->prompts().empty() ? "" : model->prompts()[0].second;
    const EncodedBatch e = model->encode_batch(texts, prefix);
    for (bool normalize : {true, false}) {
      std::vector<float> out(texts.size() * model->dim());
      model->embed_ids(e.ids.data(), e.ids.size(), e.lengths.data(), texts.size(), normalize, out.data());
      for (float x : out) {
        if (!std::isfinite(x)) {
          std::printf("  a non-finite vector was returned\n");
          return false;
        }
      }
    }
  } catch (const GGUFError& e) {
    if (!std::strstr(e.what(), "non-finite vector")) {
      std::printf("  embedding threw GGUFError: %s\n", e.what());
      return false;
    }
    ++st.output_refused;
  } catch (const std::exception& e) {
    std::printf("  embedding threw %s\n", e.what());
    return false;
  }
  return true;
}

void fuzz(const char* name, const tiny::Builder& builder, uint64_t iterations, uint64_t seed) {
  const tiny::Built base = builder.build();
  const std::vector<tiny::Site> values = value_sites(base);
  Stats st;
  // The unmutated model must load and embed, or every mutant is vacuous.
  CHECK(try_mutant(base.bytes, st) && st.loaded == 1);
  std::mt19937_64 rng(seed);
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t it = 0; it < iterations; ++it) {
    std::vector<uint8_t> m = base.bytes;
    const int n = 1 + (int)(rng() % 3);
    for (int j = 0; j < n; ++j) mutate(m, base, values, rng);
    if (!try_mutant(m, st)) {
      ++st.bad;
      std::printf("  (%s mutant %llu, seed %llu)\n", name, (unsigned long long)it, (unsigned long long)seed);
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: %llu mutants in %.1f s (%zu-byte file): %d refused by the parser, %d by the model checks, "
              "%d loaded (%d of them had a vector refused by the output check), %d bad\n",
              name, (unsigned long long)iterations, s, base.bytes.size(), st.parse_rejected, st.model_rejected,
              st.loaded - 1, st.output_refused, st.bad);
  CHECK(st.bad == 0);
  // The mutations must reach past the parser, and some mutants must load
  // (mostly changed weights or harmless settings), or this tests nothing.
  CHECK_MSG(st.model_rejected >= (int)iterations / 20, "%s: only %d mutants reached the model checks", name,
            st.model_rejected);
  CHECK_MSG(st.loaded - 1 >= (int)iterations / 20, "%s: only %d mutants loaded", name, st.loaded - 1);
}

}  // namespace

int main() {
  const uint64_t iterations = env_u64("EMBEDQ_FUZZ_ITERATIONS", 5000);
  const uint64_t seed = env_u64("EMBEDQ_FUZZ_SEED", 20240607);
  fuzz("tiny bert", tiny::bert(), iterations, seed);
  fuzz("tiny gemma", tiny::gemma(), iterations, seed + 1);
  fuzz("tiny qwen3", tiny::qwen3(), iterations, seed + 2);
  fuzz("tiny modernbert", tiny::modernbert(), iterations, seed + 3);
  return report();
}
