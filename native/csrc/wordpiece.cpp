// BERT WordPiece, reproducing HF `tokenizers` (BertNormalizer ->
// BertPreTokenizer -> WordPiece) token for token.
//
// The text is processed in one streaming pass: each code point flows through
// clean_text, CJK padding, NFD + accent stripping, lowercasing and the
// pre-tokenizer, and every finished word goes straight to the greedy
// longest-match lookup. ASCII bytes, which need none of the Unicode machinery,
// take a table-driven shortcut.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "tokenizer.h"
#include "unicode.h"

namespace embedq {
namespace {

namespace uc = unicode;

// HF WordPiece's max_input_chars_per_word; longer words become [UNK] whole.
constexpr size_t kMaxCharsPerWord = 100;
// llama.cpp's GGUF form marks word-initial pieces with U+2581.
constexpr std::string_view kWordStartMark = "\xE2\x96\x81";

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// Special tokens are the bracketed upper-case names ([CLS], [SEP], [UNK],
// [PAD], [MASK]): exactly the ones HF registers as added tokens for BERT
// vocabularies. [unused0] and friends are plain vocabulary entries that HF
// never matches in text, so they must not qualify.
bool looks_special(std::string_view tok) {
  if (tok.size() < 3 || tok.front() != '[' || tok.back() != ']') return false;
  return std::all_of(tok.begin() + 1, tok.end() - 1, [](char c) { return c >= 'A' && c <= 'Z'; });
}

// Open-addressing map from (piece bytes, continuation?) to id. Keys live in
// one arena and lookups take a pointer+length, so the hot loop never builds a
// std::string (unordered_map<std::string> can't look up a string_view before C++20).
class PieceMap {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;  // load factor <= 0.5 keeps probe chains short
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }

  // Keeps the first id when a key repeats.
  void insert(std::string_view key, bool cont, int32_t id) {
    const uint64_t h = hash(key.data(), key.size(), cont);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s = Slot{static_cast<uint32_t>(h >> 32), static_cast<uint32_t>(arena_.size()), pack(key.size(), cont), id};
        arena_.append(key);
        return;
      }
      if (matches(s, h, key.data(), key.size(), cont)) return;
    }
  }

  int32_t find(const char* p, size_t n, bool cont) const {
    const uint64_t h = hash(p, n, cont);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (matches(s, h, p, n, cont)) return s.id;
    }
  }

 private:
  struct Slot {
    uint32_t hash_hi = 0;
    uint32_t offset = 0;
    uint32_t length_cont = 0;  // length << 1 | continuation
    int32_t id = -1;
  };

  static uint32_t pack(size_t n, bool cont) { return static_cast<uint32_t>(n << 1) | (cont ? 1u : 0u); }

  bool matches(const Slot& s, uint64_t h, const char* p, size_t n, bool cont) const {
    return s.hash_hi == static_cast<uint32_t>(h >> 32) && s.length_cont == pack(n, cont) &&
           std::memcmp(arena_.data() + s.offset, p, n) == 0;
  }

  static uint64_t mix(uint64_t x) {
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    return x;
  }

  // Pieces are short, so eight bytes per multiply is plenty fast.
  static uint64_t hash(const char* p, size_t n, bool cont) {
    uint64_t h = (cont ? 0x9E3779B97F4A7C15ull : 0x2545F4914F6CDD1Dull) ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      h = mix(h ^ w);
      p += 8;
      n -= 8;
    }
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    return mix(h ^ w);
  }

  std::string arena_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

class WordPiece final : public Tokenizer {
 public:
  WordPiece(const std::vector<std::string>& tokens, int32_t unk_id, const WordPieceOptions& opts);
  void encode(std::string_view text, std::vector<int32_t>& out) const override { encode_impl(text, out, nullptr); }
  bool encode_spans(std::string_view text, std::vector<int32_t>& out, std::vector<TokenSpan>& spans) const override {
    encode_impl(text, out, &spans);
    return true;
  }
  size_t vocab_size() const override { return vocab_size_; }

 private:
  friend class SegmentEncoder;

  enum class Ascii : uint8_t { kSkip, kSpace, kPunct, kWord };
  struct AsciiAction {
    Ascii kind = Ascii::kWord;
    char byte = 0;     // the (lowercased) byte a kWord appends
    int32_t id = -1;   // the token a kPunct emits
  };
  struct Special {
    std::string text;
    int32_t id;
  };

  // spans: null unless the caller wants offsets; then `base` is where `text` starts in the whole
  // text and `src` holds, per byte of `word`, the source bytes it was normalized from.
  void encode_impl(std::string_view text, std::vector<int32_t>& out, std::vector<TokenSpan>* spans) const;
  void encode_segment(std::string_view text, size_t base, std::vector<int32_t>& out,
                      std::vector<TokenSpan>* spans) const;
  void encode_word(std::string_view word, size_t nchars, std::vector<int32_t>& out, const TokenSpan* src,
                   std::vector<TokenSpan>* spans) const;

  WordPieceOptions opts_;
  int32_t unk_id_;
  size_t vocab_size_;
  PieceMap pieces_;
  size_t max_initial_ = 0, max_continuation_ = 0;  // longest piece, in bytes
  AsciiAction ascii_[128];
  std::vector<Special> specials_;
};

// Per-call state of the streaming normalizer + pre-tokenizer for one segment
// of text (specials already split off, as HF does before normalizing).
class SegmentEncoder {
 public:
  SegmentEncoder(const WordPiece& wp, std::vector<int32_t>& out, std::vector<TokenSpan>* spans, size_t base)
      : wp_(wp), opts_(wp.opts_), out_(out), spans_(spans), base_(base) {}

  void run(std::string_view s) {
    word_.reserve(64);
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
      const size_t at = i;
      const auto b = static_cast<unsigned char>(s[i]);
      if (b >= 0x80) {
        const char32_t cp = uc::utf8_decode(s, i);
        raw_char(cp, span(at, i));
        continue;
      }
      ++i;
      const WordPiece::AsciiAction& a = wp_.ascii_[b];
      if (a.kind == WordPiece::Ascii::kSkip) continue;
      // ASCII is a starter: pending marks are complete and must be emitted first.
      if (!marks_.empty()) flush_marks();
      switch (a.kind) {
        case WordPiece::Ascii::kWord:
          word_.push_back(a.byte);
          if (spans_) word_src_.push_back(span(at, i));
          ++word_chars_;
          break;
        case WordPiece::Ascii::kSpace:
          end_word();
          break;
        case WordPiece::Ascii::kPunct:
          end_word();
          out_.push_back(a.id);
          if (spans_) spans_->push_back(span(at, i));
          break;
        case WordPiece::Ascii::kSkip:
          break;
      }
    }
    flush_marks();
    end_word();
  }

 private:
  // Every code point carries `src`, the bytes of the raw character it came from, through
  // normalization (a decomposed or lowercased character's parts all keep their source's bytes).
  struct Mark {
    char32_t cp;
    uc::CharInfo info;
    TokenSpan src;
  };

  TokenSpan span(size_t a, size_t b) const { return {static_cast<uint32_t>(base_ + a), static_cast<uint32_t>(base_ + b)}; }

  // BertNormalizer, step 1-2: clean_text, then CJK padding.
  void raw_char(char32_t cp, TokenSpan src) {
    const uc::CharInfo info = uc::char_info(cp);
    if (opts_.clean_text) {
      if (info.flags & uc::kControl) return;
      if (info.flags & uc::kWhitespace) return decompose(' ', uc::char_info(' '), src);
    }
    if (opts_.handle_chinese_chars && (info.flags & uc::kCjk)) {
      const uc::CharInfo space = uc::char_info(' ');
      decompose(' ', space, src);
      decompose(cp, info, src);
      decompose(' ', space, src);
      return;
    }
    decompose(cp, info, src);
  }

  // Step 3: HF runs NFD only as part of strip_accents; without it text stays as is.
  void decompose(char32_t cp, uc::CharInfo info, TokenSpan src) {
    if (!opts_.strip_accents) return finish(cp, info, src);
    if (!(info.flags & uc::kDecomposes)) return reorder(cp, info, src);
    char32_t buf[uc::kMaxDecomposition];
    const size_t n = uc::canonical_decompose(cp, buf);
    for (size_t k = 0; k < n; ++k) reorder(buf[k], uc::char_info(buf[k]), src);
  }

  // Canonical ordering: non-starters wait until the next starter so that each
  // run can be sorted by combining class before anything downstream sees it.
  void reorder(char32_t cp, uc::CharInfo info, TokenSpan src) {
    if (info.ccc != 0) {
      marks_.push_back({cp, info, src});
      return;
    }
    if (!marks_.empty()) flush_marks();
    finish(cp, info, src);
  }

  void flush_marks() {
    if (marks_.size() > 1) {
      std::stable_sort(marks_.begin(), marks_.end(), [](const Mark& a, const Mark& b) { return a.info.ccc < b.info.ccc; });
    }
    for (const Mark& m : marks_) finish(m.cp, m.info, m.src);
    marks_.clear();
  }

  // Steps 3b-4: drop non-spacing marks, lowercase.
  void finish(char32_t cp, uc::CharInfo info, TokenSpan src) {
    if (opts_.strip_accents && (info.flags & uc::kMark)) return;
    if (opts_.lowercase && (info.flags & uc::kHasLower)) {
      char32_t buf[uc::kMaxLowercase];
      const size_t n = uc::to_lower(cp, buf);
      for (size_t k = 0; k < n; ++k) split(buf[k], uc::char_info(buf[k]), src);
      return;
    }
    split(cp, info, src);
  }

  // BertPreTokenizer: white space ends a word, punctuation is a word of its own.
  void split(char32_t cp, uc::CharInfo info, TokenSpan src) {
    if (info.flags & uc::kWhitespace) return end_word();
    if (info.flags & uc::kPunct) {
      end_word();
      char buf[4];
      const size_t n = uc::utf8_encode(cp, buf);
      const TokenSpan srcs[4] = {src, src, src, src};
      wp_.encode_word(std::string_view(buf, n), 1, out_, srcs, spans_);
      return;
    }
    uc::utf8_append(word_, cp);
    if (spans_) word_src_.resize(word_.size(), src);
    ++word_chars_;
  }

  void end_word() {
    if (word_chars_ == 0) return;
    wp_.encode_word(word_, word_chars_, out_, spans_ ? word_src_.data() : nullptr, spans_);
    word_.clear();
    word_src_.clear();
    word_chars_ = 0;
  }

  const WordPiece& wp_;
  const WordPieceOptions& opts_;
  std::vector<int32_t>& out_;
  std::vector<TokenSpan>* spans_;  // null: ids only
  size_t base_;
  std::string word_;
  std::vector<TokenSpan> word_src_;  // per byte of word_, when spans_ is set
  size_t word_chars_ = 0;
  std::vector<Mark> marks_;
};

WordPiece::WordPiece(const std::vector<std::string>& tokens, int32_t unk_id, const WordPieceOptions& opts)
    : opts_(opts), unk_id_(unk_id), vocab_size_(tokens.size()) {
  if (tokens.empty()) throw std::invalid_argument("WordPiece: empty vocabulary");
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) throw std::invalid_argument("WordPiece: vocabulary too large");
  if (unk_id < 0 || static_cast<size_t>(unk_id) >= tokens.size()) {
    throw std::invalid_argument("WordPiece: unknown-token id " + std::to_string(unk_id) + " outside vocabulary of " +
                                std::to_string(tokens.size()));
  }
  pieces_.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string_view t = tokens[i];
    const auto id = static_cast<int32_t>(i);
    if (starts_with(t, kWordStartMark)) {
      t.remove_prefix(kWordStartMark.size());
      if (t.empty()) continue;
      pieces_.insert(t, false, id);
      max_initial_ = std::max(max_initial_, t.size());
    } else if (!t.empty()) {
      if (looks_special(t)) specials_.push_back({std::string(t), id});
      pieces_.insert(t, true, id);
      max_continuation_ = std::max(max_continuation_, t.size());
    }
  }
  // Leftmost-longest matching wants the longer of two specials sharing a start.
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const Special& a, const Special& b) { return a.text.size() > b.text.size(); });

  for (int b = 0; b < 128; ++b) {
    const uc::CharInfo info = uc::char_info(static_cast<char32_t>(b));
    AsciiAction& a = ascii_[b];
    if (opts_.clean_text && (info.flags & uc::kControl)) {
      a.kind = Ascii::kSkip;
    } else if (info.flags & uc::kWhitespace) {
      a.kind = Ascii::kSpace;
    } else if (info.flags & uc::kPunct) {
      a.kind = Ascii::kPunct;
      const char c = static_cast<char>(b);
      a.id = pieces_.find(&c, 1, false);
      if (a.id < 0) a.id = unk_id_;
    } else {
      a.kind = Ascii::kWord;
      a.byte = static_cast<char>((opts_.lowercase && b >= 'A' && b <= 'Z') ? b + 32 : b);
    }
  }
}

void WordPiece::encode_impl(std::string_view text, std::vector<int32_t>& out, std::vector<TokenSpan>* spans) const {
  // HF matches its added special tokens in the raw text before normalizing,
  // so "[CLS]" typed by a user becomes the [CLS] id, as it does in HF.
  size_t segment = 0;
  if (!specials_.empty()) {
    for (size_t pos = text.find('['); pos != std::string_view::npos; pos = text.find('[', pos)) {
      const Special* hit = nullptr;
      for (const Special& s : specials_) {
        if (text.compare(pos, s.text.size(), s.text) == 0) {
          hit = &s;
          break;
        }
      }
      if (!hit) {
        ++pos;
        continue;
      }
      encode_segment(text.substr(segment, pos - segment), segment, out, spans);
      out.push_back(hit->id);
      if (spans) spans->push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(pos + hit->text.size())});
      pos += hit->text.size();
      segment = pos;
    }
  }
  encode_segment(text.substr(segment), segment, out, spans);
}

void WordPiece::encode_segment(std::string_view text, size_t base, std::vector<int32_t>& out,
                               std::vector<TokenSpan>* spans) const {
  if (text.empty()) return;
  SegmentEncoder(*this, out, spans, base).run(text);
}

// The source bytes of word bytes [a, b). Min and max, not first and last: without accent
// stripping, reordered combining marks can come from a later character than what follows them.
TokenSpan cover(const TokenSpan* src, size_t a, size_t b) {
  TokenSpan s = src[a];
  for (size_t i = a + 1; i < b; ++i) {
    s.begin = std::min(s.begin, src[i].begin);
    s.end = std::max(s.end, src[i].end);
  }
  return s;
}

void WordPiece::encode_word(std::string_view word, size_t nchars, std::vector<int32_t>& out, const TokenSpan* src,
                            std::vector<TokenSpan>* spans) const {
  if (nchars > kMaxCharsPerWord) {
    out.push_back(unk_id_);
    if (spans) spans->push_back(cover(src, 0, word.size()));
    return;
  }
  const size_t first = out.size();
  const size_t first_span = spans ? spans->size() : 0;
  const size_t n = word.size();
  const auto at_boundary = [&](size_t i) { return i == n || (static_cast<unsigned char>(word[i]) & 0xC0) != 0x80; };
  for (size_t start = 0; start < n;) {
    const bool cont = start > 0;
    size_t end = std::min(n, start + (cont ? max_continuation_ : max_initial_));
    while (end > start && !at_boundary(end)) --end;
    int32_t id = -1;
    while (end > start) {
      id = pieces_.find(word.data() + start, end - start, cont);
      if (id >= 0) break;
      do --end;
      while (end > start && !at_boundary(end));
    }
    if (id < 0) {
      // Any unmatched remainder makes the whole word unknown.
      out.resize(first);
      out.push_back(unk_id_);
      if (spans) {
        spans->resize(first_span);
        spans->push_back(cover(src, 0, n));
      }
      return;
    }
    out.push_back(id);
    if (spans) spans->push_back(cover(src, start, end));
    start = end;
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_wordpiece(const std::vector<std::string>& tokens, int32_t unk_id,
                                          const WordPieceOptions& opts) {
  return std::make_unique<WordPiece>(tokens, unk_id, opts);
}

}  // namespace embedq
