// Byte-level BPE (GPT-2 style, as Qwen2/Qwen3 and ModernBERT use it),
// reproducing what HF `tokenizers` does with such a tokenizer.json:
//
//   1. Added tokens (<|endoftext|>, <|im_start|>, <think>, [CLS] ...: every
//      control and user-defined entry) are cut out of the raw text first,
//      leftmost-longest.
//   2. Each span between them is NFC-normalized (Qwen; ModernBERT has no
//      normalizer).
//   3. A pre-tokenizer regex splits it into pieces: Qwen2's, or GPT-2's (the
//      one ByteLevel applies itself with use_regex, as ModernBERT's does);
//      qwen2_piece and gpt2_piece spell them out alternative by alternative.
//   4. Each piece's UTF-8 bytes become printable characters (GPT-2's
//      bytes_to_unicode: bytes that are printable Latin-1 stand for themselves,
//      the others are shifted to U+0100 and up), one initial symbol per byte.
//   5. The merges are applied lowest rank first, leftmost first on ties, as HF's
//      Word::merge_all does (a heap of candidate pairs, stale entries skipped).
//
// A byte whose character is not in the vocabulary is dropped, as HF's BPE does
// without an unknown token.
#include <algorithm>
#include <cstring>
#include <queue>
#include <stdexcept>
#include <unordered_map>

#include "added_tokens.h"
#include "tokenizer.h"
#include "unicode.h"

namespace embedq {
namespace {

struct ClassRun {
  char32_t first;
  uint8_t cls;
};
struct Composite {
  char32_t first, second, composite;
};
#include "bpe_tables.inc"

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2 };
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

uint8_t char_class(char32_t cp) {
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    return kOther;
  }
  const ClassRun* end = kClassRuns + std::size(kClassRuns);
  const ClassRun* it = std::upper_bound(kClassRuns, end, cp, [](char32_t c, const ClassRun& r) { return c < r.first; });
  return it == kClassRuns ? (uint8_t)kOther : (it - 1)->cls;
}

// ---- NFC ------------------------------------------------------------------

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kSCount = kLCount * kVCount * kTCount;

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const Composite* end = kComposites + std::size(kComposites);
  const Composite* it = std::lower_bound(kComposites, end, std::make_pair(a, b), [](const Composite& c, auto key) {
    return c.first < key.first || (c.first == key.first && c.second < key.second);
  });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

// Canonical decomposition, then canonical composition (UAX #15): a character
// joins the last starter unless a character between them is a starter or has
// a combining class at least its own.
std::u32string nfc(std::u32string_view s) {
  std::u32string d = unicode::nfd(s), out;
  out.reserve(d.size());
  size_t starter = SIZE_MAX;
  uint8_t last_ccc = 0;
  for (char32_t c : d) {
    const uint8_t ccc = unicode::char_info(c).ccc;
    if (starter != SIZE_MAX) {
      const bool adjacent = out.size() == starter + 1;
      if (adjacent || (last_ccc != 0 && last_ccc < ccc)) {
        if (char32_t p = compose_pair(out[starter], c)) {
          out[starter] = p;
          continue;
        }
      }
    }
    out.push_back(c);
    if (ccc == 0) starter = out.size() - 1;
    last_ccc = ccc;
  }
  return out;
}

// ---- Qwen2 pre-tokenizer --------------------------------------------------
//
//   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}
//   | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
//
// Oniguruma tries the alternatives in order at each position and takes the
// first that matches; every character is matched by one of them.

bool is_space(char32_t c) { return unicode::is_white_space(c); }
bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }

// Case-insensitively, as Oniguruma folds: U+017F (long s) folds to 's'.
bool ci_is(char32_t c, char lower) {
  if (c < 0x80) return (char32_t)(c | 0x20) == (char32_t)lower && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
  return lower == 's' && c == 0x17F;
}

size_t contraction_at(const std::u32string& s, size_t i) {
  if (s[i] != '\'' || i + 1 >= s.size()) return 0;
  const char32_t a = s[i + 1];
  if (ci_is(a, 's') || ci_is(a, 't')) return 2;
  if (i + 2 < s.size()) {
    const char32_t b = s[i + 2];
    if ((ci_is(a, 'r') && ci_is(b, 'e')) || (ci_is(a, 'v') && ci_is(b, 'e')) || (ci_is(a, 'l') && ci_is(b, 'l'))) {
      return 3;
    }
  }
  return ci_is(a, 'm') || ci_is(a, 'd') ? 2 : 0;
}

// Length of the piece starting at s[i] (i < s.size()).
size_t qwen2_piece(const std::u32string& s, const std::vector<uint8_t>& cls, size_t i) {
  const size_t n = s.size();
  if (size_t len = contraction_at(s, i)) return len;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  size_t j = i;
  if (cls[j] != kLetter && cls[j] != kNumber && !is_newline(s[j]) && j + 1 < n && cls[j + 1] == kLetter) ++j;
  if (cls[j] == kLetter) {
    while (j < n && cls[j] == kLetter) ++j;
    return j - i;
  }
  if (cls[i] == kNumber) return 1;
  // ' '?[^\s\p{L}\p{N}]+[\r\n]*
  auto other = [&](size_t k) { return k < n && cls[k] == kOther && !is_space(s[k]); };
  j = i;
  if (s[j] == ' ' && other(j + 1)) ++j;
  if (other(j)) {
    while (other(j)) ++j;
    while (j < n && is_newline(s[j])) ++j;
    return j - i;
  }
  // Whitespace from here on: s[i] is neither letter, number nor other.
  size_t end = i;
  while (end < n && is_space(s[end])) ++end;
  // \s*[\r\n]+ : backtracks to the last newline of the run.
  for (size_t k = end; k > i; --k) {
    if (is_newline(s[k - 1])) return k - i;
  }
  // \s+(?!\S) : at the end of the text the whole run, else all but its last character.
  if (end == n || end - i == 1) return end - i;
  return end - 1 - i;
}

// ---- GPT-2 pre-tokenizer (ByteLevel's own, use_regex = true) ---------------
//
//   's|'t|'re|'ve|'m|'ll|'d | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
//
// Unlike Qwen2's: contractions are case-sensitive, digits run together, a
// letter run takes at most one leading space (not any one character), and no
// alternative treats newlines apart.
size_t gpt2_contraction_at(const std::u32string& s, size_t i) {
  if (s[i] != '\'' || i + 1 >= s.size()) return 0;
  const char32_t a = s[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < s.size()) {
    const char32_t b = s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

size_t gpt2_piece(const std::u32string& s, const std::vector<uint8_t>& cls, size_t i) {
  const size_t n = s.size();
  if (size_t len = gpt2_contraction_at(s, i)) return len;
  const size_t j = s[i] == ' ' && i + 1 < n ? i + 1 : i;
  auto run = [&](auto in_class) {
    size_t k = j;
    while (k < n && in_class(k)) ++k;
    return k - i;
  };
  if (cls[j] == kLetter) return run([&](size_t k) { return cls[k] == kLetter; });
  if (cls[j] == kNumber) return run([&](size_t k) { return cls[k] == kNumber; });
  if (!is_space(s[j])) return run([&](size_t k) { return cls[k] == kOther && !is_space(s[k]); });
  // Whitespace from here on (s[i], and s[i+1] if s[i] is a space).
  size_t end = i;
  while (end < n && is_space(s[end])) ++end;
  // \s+(?!\S): at the end of the text the whole run, else all but its last character.
  if (end == n || end - i == 1) return end - i;
  return end - 1 - i;
}

// ---- byte-level BPE -------------------------------------------------------

// GPT-2's bytes_to_unicode.
char32_t byte_char(unsigned char b) {
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
  int n = 0;
  for (int x = 0; x < b; ++x) {
    if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++n;
  }
  return 0x100 + (char32_t)n;
}

class ByteLevelBpe final : public Tokenizer {
 public:
  ByteLevelBpe(const std::vector<std::string>& tokens, const std::vector<int32_t>& types,
               const std::vector<std::string>& merges, const ByteBpeOptions& opts)
      : n_vocab_(tokens.size()), opts_(opts) {
    if (tokens.empty()) throw std::invalid_argument("bpe: empty vocabulary");
    if (types.size() != tokens.size()) throw std::invalid_argument("bpe: tokens and types differ in length");
    if (tokens.size() > (size_t)INT32_MAX || merges.size() > (size_t)INT32_MAX) {
      throw std::invalid_argument("bpe: vocabulary or merges too large");
    }
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int32_t t = types[i];
      if (t < kNormal || t > kByte) throw std::invalid_argument("bpe: unknown token type " + std::to_string(t));
      if (!unicode::utf8_is_valid(tokens[i])) {
        throw std::invalid_argument("bpe: token " + std::to_string(i) + " is not valid UTF-8");
      }
      if (t == kControl || t == kUserDefined) added_.add(tokens[i], (int32_t)i);
      // Padding placeholders ("[PAD7]") are not pieces of the model; HF's
      // vocabulary is a map, so the first id of a text wins.
      if (t != kUnused) index_.emplace(tokens[i], (int32_t)i);
    }
    added_.apply(opts.added);
    for (int b = 0; b < 256; ++b) {
      std::string c;
      unicode::utf8_append(c, byte_char((unsigned char)b));
      auto it = index_.find(c);
      byte_ids_[b] = it == index_.end() ? -1 : it->second;
    }
    merges_.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos) {
        throw std::invalid_argument("bpe: merge " + std::to_string(r) + " is not two tokens separated by a space");
      }
      const std::string a = m.substr(0, sp), b = m.substr(sp + 1);
      auto ia = index_.find(a), ib = index_.find(b), iab = index_.find(a + b);
      if (ia == index_.end() || ib == index_.end() || iab == index_.end()) {
        throw std::invalid_argument("bpe: merge " + std::to_string(r) + " names a token missing from the vocabulary");
      }
      // HF keeps the first rank of a repeated pair.
      merges_.emplace(key(ia->second, ib->second), Merge{(uint32_t)r, iab->second});
    }
  }

  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    encode_around_added(text, added_, out, [&](std::string_view span, size_t, std::vector<int32_t>& ids) {
      if (span.empty()) return;
      bool ascii = true;
      for (unsigned char c : span) ascii = ascii && c < 0x80;
      const std::u32string s =
          ascii || !opts_.nfc ? unicode::utf8_to_utf32(span) : nfc(unicode::utf8_to_utf32(span));
      std::vector<uint8_t> cls(s.size());
      for (size_t i = 0; i < s.size(); ++i) cls[i] = char_class(s[i]);
      std::string piece;
      for (size_t i = 0; i < s.size();) {
        const size_t len = opts_.split == ByteBpeOptions::Split::GPT2 ? gpt2_piece(s, cls, i) : qwen2_piece(s, cls, i);
        piece = unicode::utf32_to_utf8(std::u32string_view(s).substr(i, len));
        encode_piece(piece, ids);
        i += len;
      }
    });
  }

  size_t vocab_size() const override { return n_vocab_; }

 private:
  struct Merge {
    uint32_t rank;
    int32_t merged;
  };
  struct Symbol {
    int32_t id, prev, next;
    bool alive;
  };
  struct Candidate {
    uint32_t rank, pos;
    int32_t merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  static uint64_t key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

  const Merge* find_merge(int32_t a, int32_t b) const {
    auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  void encode_piece(const std::string& piece, std::vector<int32_t>& out) const {
    std::vector<Symbol> sym;
    sym.reserve(piece.size());
    for (unsigned char b : piece) {
      if (byte_ids_[b] < 0) continue;
      const int32_t i = (int32_t)sym.size();
      sym.push_back(Symbol{byte_ids_[b], i - 1, i + 1, true});
    }
    if (sym.empty()) return;
    sym.back().next = -1;
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
    auto push = [&](int32_t pos) {
      if (pos < 0 || sym[(size_t)pos].next < 0) return;
      if (const Merge* m = find_merge(sym[(size_t)pos].id, sym[(size_t)sym[(size_t)pos].next].id)) {
        heap.push(Candidate{m->rank, (uint32_t)pos, m->merged});
      }
    };
    for (size_t i = 0; i + 1 < sym.size(); ++i) push((int32_t)i);
    while (!heap.empty()) {
      const Candidate top = heap.top();
      heap.pop();
      Symbol& left = sym[top.pos];
      if (!left.alive || left.next < 0) continue;
      // The pair may have changed since it was queued.
      const Merge* m = find_merge(left.id, sym[(size_t)left.next].id);
      if (!m || m->merged != top.merged) continue;
      Symbol& right = sym[(size_t)left.next];
      left.id = top.merged;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) sym[(size_t)right.next].prev = (int32_t)top.pos;
      push(left.prev);
      push((int32_t)top.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[(size_t)i].next) out.push_back(sym[(size_t)i].id);
  }

  size_t n_vocab_;
  ByteBpeOptions opts_;
  AddedTokenMatcher added_;
  std::unordered_map<std::string, int32_t> index_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_bpe(const std::vector<std::string>& tokens, const std::vector<int32_t>& types,
                                         const std::vector<std::string>& merges, const ByteBpeOptions& opts) {
  return std::unique_ptr<Tokenizer>(new ByteLevelBpe(tokens, types, merges, opts));
}

}  // namespace embedq
