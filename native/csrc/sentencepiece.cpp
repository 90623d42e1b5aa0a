// Gemma 3's tokenizer, reproducing what HF `tokenizers` does with the model's
// tokenizer.json (which is the reference for sentence-transformers):
//
//   1. Added tokens (every control and user-defined piece: <bos>, <start_of_turn>,
//      "\n\n", "\t\t", literal "▁▁" ...) are cut out of the raw text first,
//      leftmost-longest. They are all normalized=false, so they match the text
//      as typed, before spaces become U+2581.
//   2. In each span between them ' ' becomes U+2581. There is no dummy prefix,
//      and the Split(" ") pre-tokenizer that follows never sees a space, so the
//      whole span is a single BPE word.
//   3. BPE starts from single characters (a character without a piece becomes
//      its UTF-8 bytes as <0xXX> pieces, which never merge) and repeatedly
//      applies the best-ranked adjacent merge, leftmost first on ties.
//
// The GGUF stores scores, not merges. HF's converter lists as merges every split
// (l, r) of every piece where both halves are pieces, ordered by
// (score desc, chars(l) desc, chars(r) desc, piece id); for EmbeddingGemma this
// rebuilds tokenizer.json's 514906 merges in exactly their order, so the rank
// of a candidate merge is computed from that key instead of a merge table.
//
// Speed: a span is one HF "word", but no piece crosses the boundary in front of
// a U+2581 that follows another character (Gemma has a single piece, ">▁</",
// with U+2581 inside, and the set of such characters is read from the
// vocabulary), so merges never cross it either. Each such ▁-word is merged on
// its own, which gives the same ids and lets a per-thread cache skip the BPE
// for words seen before.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <unordered_map>

#include "added_tokens.h"
#include "tokenizer.h"
#include "unicode.h"

namespace embedq {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's escaped space

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Piece text -> id. BPE looks up every candidate merge, so this is the hot path:
// open addressing over a flat array avoids the pointer chasing of
// std::unordered_map and compares a stored hash before touching the text.
class PieceIndex {
 public:
  void build(const std::vector<std::string>& pieces, const std::vector<bool>& include) {
    size_t n = 0;
    for (size_t i = 0; i < pieces.size(); ++i) n += include[i] ? 1 : 0;
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    slots_.assign(cap, Slot{0, 0, 0, -1});
    mask_ = cap - 1;
    blob_.clear();
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (!include[i] || pieces[i].empty()) continue;
      const std::string_view s = pieces[i];
      const uint64_t h = hash(s);
      size_t k = (size_t)h & mask_;
      bool dup = false;
      for (; slots_[k].id >= 0; k = (k + 1) & mask_) {
        if (slots_[k].hash == (uint32_t)(h >> 32) && text(slots_[k]) == s) {
          dup = true;  // HF's vocabulary is a map: the first id of a text wins
          break;
        }
      }
      if (dup) continue;
      slots_[k] = Slot{(uint32_t)(h >> 32), (uint32_t)blob_.size(), (uint32_t)s.size(), (int32_t)i};
      blob_.append(s);
      max_len_ = std::max(max_len_, s.size());
    }
  }

  int32_t find(std::string_view s) const {
    if (s.size() > max_len_) return -1;
    const uint64_t h = hash(s);
    for (size_t k = (size_t)h & mask_;; k = (k + 1) & mask_) {
      const Slot& sl = slots_[k];
      if (sl.id < 0) return -1;
      if (sl.hash == (uint32_t)(h >> 32) && sl.len == s.size() && std::memcmp(blob_.data() + sl.offset, s.data(), s.size()) == 0) {
        return sl.id;
      }
    }
  }

 private:
  struct Slot {
    uint32_t hash, offset, len;
    int32_t id;
  };
  static uint64_t hash(std::string_view s) {
    // Mix so both the slot index (low bits) and the stored tag (high bits) vary.
    uint64_t h = std::hash<std::string_view>{}(s);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h;
  }
  std::string_view text(const Slot& s) const { return std::string_view(blob_).substr(s.offset, s.len); }

  std::vector<Slot> slots_;
  std::string blob_;
  size_t mask_ = 0;
  size_t max_len_ = 0;
};

// Recently merged words, per thread so encode() stays lock-free; keyed by the
// tokenizer instance so two vocabularies never share entries.
struct WordCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>> ids;
};
constexpr size_t kCacheMaxWords = 16384;
constexpr size_t kCacheMaxWordBytes = 48;  // long spans (CJK runs) rarely repeat
std::atomic<uint64_t> g_next_instance{1};

class SentencePieceBpe final : public Tokenizer {
 public:
  SentencePieceBpe(const std::vector<std::string>& tokens, const std::vector<float>& scores,
                   const std::vector<int32_t>& types, int32_t unk_id)
      : instance_(g_next_instance.fetch_add(1)), n_vocab_(tokens.size()), unk_id_(unk_id) {
    if (tokens.empty()) throw std::invalid_argument("sentencepiece: empty vocabulary");
    if (scores.size() != tokens.size() || types.size() != tokens.size()) {
      throw std::invalid_argument("sentencepiece: tokens, scores and types differ in length");
    }
    if (tokens.size() > (size_t)INT32_MAX) throw std::invalid_argument("sentencepiece: vocabulary too large");
    if (unk_id >= (int32_t)tokens.size()) throw std::invalid_argument("sentencepiece: unk id out of range");

    std::vector<std::string> pieces(tokens.size());
    std::vector<bool> in_index(tokens.size());
    std::vector<float> rank_score(tokens.size());
    nchars_.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int32_t t = types[i];
      if (t < kNormal || t > kByte) throw std::invalid_argument("sentencepiece: unknown token type " + std::to_string(t));
      if (std::isnan(scores[i])) throw std::invalid_argument("sentencepiece: token score is NaN");
      // SentencePiece escapes whitespace, so no real piece holds U+0020; llama.cpp's
      // converter writes user-defined pieces with spaces ("pre-normalized").
      // Undo that: HF matches "▁▁" literally and merges spaces into it as ▁▁.
      pieces[i] = replace_spaces(tokens[i]);
      nchars_[i] = (uint32_t)std::min<size_t>(unicode::utf8_length(pieces[i]), 0xFFFF);
      // Padding placeholders ("[PAD7]") are not pieces of the model.
      in_index[i] = t != kUnused;
      const bool added = t == kUnknown || t == kControl || t == kUserDefined;
      if (added && !pieces[i].empty()) added_.add(pieces[i], (int32_t)i);
      // The model file gives control and user-defined pieces score 0, and that is
      // what HF ranks their merges by (whitespace runs merge before any word);
      // llama.cpp's converter stores -1000 for them instead.
      rank_score[i] = added ? 0.0f : scores[i];
    }
    index_.build(pieces, in_index);
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (!in_index[i]) continue;
      const std::string& p = pieces[i];
      for (size_t at = p.find(kSpaceMark, 1); at != std::string::npos; at = p.find(kSpaceMark, at + 1)) {
        size_t k = at - 1;
        while (k > 0 && ((unsigned char)p[k] & 0xC0) == 0x80) --k;
        size_t pos = k;
        const char32_t prev = unicode::utf8_decode(p, pos);
        if (pos == at && std::string_view(p).substr(k, at - k) != kSpaceMark) joins_space_.push_back(prev);
      }
    }
    // Without a U+2581 piece a space falls back to bytes or <unk>, and fused
    // <unk> runs could then cross a word boundary: keep spans whole.
    split_words_ = index_.find(kSpaceMark) >= 0;
    std::sort(joins_space_.begin(), joins_space_.end());
    joins_space_.erase(std::unique(joins_space_.begin(), joins_space_.end()), joins_space_.end());

    // Merges compare scores first; a dense rank keeps the merge key an integer.
    std::vector<uint32_t> order(tokens.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = (uint32_t)i;
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return rank_score[a] > rank_score[b]; });
    score_rank_.resize(tokens.size());
    uint32_t rank = 0;
    for (size_t k = 0; k < order.size(); ++k) {
      // -0.0 == 0.0 here as in Python's sort: "▁t" (score -0) ties with the
      // whitespace pieces and loses to "▁▁" on piece id.
      if (k > 0 && rank_score[order[k]] != rank_score[order[k - 1]]) ++rank;
      score_rank_[order[k]] = rank;
    }

    // Most initial symbols are ASCII characters: a table spares them the hash.
    for (int c = 0; c < 0x80; ++c) ascii_ids_[c] = index_.find(std::string(1, (char)c));
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      byte_ids_[b] = index_.find(name);
    }
  }

  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    Scratch sc;
    encode_around_added(text, added_, out, [&](std::string_view span, size_t, std::vector<int32_t>& ids) {
      encode_span(span, sc, ids, nullptr, 0);
    });
  }

  // Offsets as HF reports them for this tokenizer: a piece covers the source bytes of the normalized
  // bytes it holds ("▁" standing for the space it replaced), widened to whole characters for
  // byte-fallback pieces that hold part of one.
  bool encode_spans(std::string_view text, std::vector<int32_t>& out, std::vector<TokenSpan>& spans) const override {
    if (!unicode::utf8_is_valid(text)) return false;  // offsets into a text we had to repair mean nothing
    Scratch sc;
    encode_around_added(
        text, added_, out,
        [&](std::string_view span, size_t at, std::vector<int32_t>& ids) { encode_span(span, sc, ids, &spans, at); },
        &spans);
    return true;
  }

  size_t vocab_size() const override { return n_vocab_; }

 private:
  struct Symbol {
    uint32_t start, end;  // bytes of the word
    int32_t prev, next;
    int32_t id;
    bool mergeable;  // byte-fallback and unknown symbols have no merges
    bool alive;
  };
  struct Candidate {
    uint64_t key;    // score rank, then longer left part, then longer right part
    int32_t merged;  // then piece id
    uint32_t left;   // then position: HF applies equal merges left to right
    uint32_t end;    // end of the right symbol when queued, to detect stale entries
  };
  // Heap comparator: true when a ranks after b.
  struct Later {
    bool operator()(const Candidate& a, const Candidate& b) const {
      if (a.key != b.key) return a.key > b.key;
      if (a.merged != b.merged) return a.merged > b.merged;
      return a.left > b.left;
    }
  };
  struct Scratch {
    std::string norm;
    std::vector<uint32_t> src;    // with offsets: per byte of norm (and one past), its byte in the span
    std::vector<uint32_t> words;  // end offsets in norm
    std::vector<Symbol> syms;
    std::vector<Candidate> heap;
  };

  static std::string replace_spaces(const std::string& s) {
    if (s.find(' ') == std::string::npos) return s;
    std::string r;
    for (char c : s) {
      if (c == ' ') r.append(kSpaceMark);
      else r.push_back(c);
    }
    return r;
  }

  void push_pair(std::string_view word, Scratch& sc, int32_t a, int32_t b) const {
    const Symbol& l = sc.syms[a];
    const Symbol& r = sc.syms[b];
    if (!l.mergeable || !r.mergeable) return;
    const int32_t m = index_.find(word.substr(l.start, r.end - l.start));
    if (m < 0) return;
    const uint64_t key = ((uint64_t)score_rank_[m] << 32) | ((uint64_t)(0xFFFF - nchars_[l.id]) << 16) |
                         (uint64_t)(0xFFFF - nchars_[r.id]);
    sc.heap.push_back(Candidate{key, m, (uint32_t)a, r.end});
    std::push_heap(sc.heap.begin(), sc.heap.end(), Later{});
  }

  void add_symbol(Scratch& sc, uint32_t start, uint32_t end, int32_t id, bool mergeable) const {
    const int32_t n = (int32_t)sc.syms.size();
    sc.syms.push_back(Symbol{start, end, n - 1, -1, id, mergeable, true});
    if (n > 0) sc.syms[n - 1].next = n;
  }

  bool joins_space(char32_t c) const { return std::binary_search(joins_space_.begin(), joins_space_.end(), c); }

  // spans: null unless offsets are wanted; then `at` is where `span` starts in the whole text.
  void encode_span(std::string_view span, Scratch& sc, std::vector<int32_t>& out, std::vector<TokenSpan>* spans,
                   size_t at) const {
    if (span.empty()) return;
    sc.norm.clear();
    sc.src.clear();
    sc.words.clear();
    sc.norm.reserve(span.size() + span.size() / 2);
    char32_t prev = 0;
    for (size_t pos = 0; pos < span.size();) {
      const size_t start = pos;
      const char32_t c = unicode::utf8_decode(span, pos);  // span is valid UTF-8 here
      const bool space = c == U' ' || c == 0x2581;
      if (space && split_words_ && start > 0 && prev != 0x2581 && !joins_space(prev)) {
        sc.words.push_back((uint32_t)sc.norm.size());
      }
      if (c == U' ') sc.norm.append(kSpaceMark);
      else sc.norm.append(span.data() + start, pos - start);
      if (spans) sc.src.resize(sc.norm.size(), (uint32_t)start);  // every byte of it maps to its character
      prev = space ? 0x2581 : c;
    }
    sc.words.push_back((uint32_t)sc.norm.size());
    const std::string_view norm = sc.norm;
    uint32_t ws = 0;
    for (uint32_t we : sc.words) {
      if (spans) {
        bpe(norm.substr(ws, we - ws), sc, out);  // the word cache keeps ids only, not where they came from
        add_spans(norm, span, ws, sc, at, *spans);
      } else {
        encode_word(norm.substr(ws, we - ws), sc, out);
      }
      ws = we;
    }
  }

  // The spans of the symbols bpe() left for the word starting at norm[ws].
  static void add_spans(std::string_view norm, std::string_view span, uint32_t ws, const Scratch& sc, size_t at,
                        std::vector<TokenSpan>& spans) {
    auto char_start = [&](uint32_t k) {  // back to the start of the character holding norm[k]
      while (k > 0 && ((unsigned char)norm[k] & 0xC0) == 0x80) --k;
      return k;
    };
    for (int32_t i = 0; i >= 0; i = sc.syms[i].next) {
      const uint32_t b = char_start(ws + sc.syms[i].start);
      uint32_t e = ws + sc.syms[i].end;
      while (e < norm.size() && ((unsigned char)norm[e] & 0xC0) == 0x80) ++e;
      const uint32_t sb = sc.src[b];
      // The source character that norm[e - 1] came from ends where the next one begins.
      uint32_t se = sc.src[e - 1];
      se += (uint32_t)std::max<size_t>(1, unicode::utf8_sequence_length((unsigned char)span[se]));
      spans.push_back(TokenSpan{(uint32_t)(at + sb), (uint32_t)(at + se)});
    }
  }

  void encode_word(std::string_view word, Scratch& sc, std::vector<int32_t>& out) const {
    if (word.size() > kCacheMaxWordBytes) {
      bpe(word, sc, out);
      return;
    }
    static thread_local WordCache cache;
    if (cache.owner != instance_) {
      cache.ids.clear();
      cache.owner = instance_;
    }
    std::string key(word);
    auto it = cache.ids.find(key);
    if (it != cache.ids.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    const size_t first = out.size();
    bpe(word, sc, out);
    if (cache.ids.size() >= kCacheMaxWords) cache.ids.clear();
    cache.ids.emplace(std::move(key), std::vector<int32_t>(out.begin() + (std::ptrdiff_t)first, out.end()));
  }

  // HF's BPE over one word (normalized text), starting from its characters.
  void bpe(std::string_view word, Scratch& sc, std::vector<int32_t>& out) const {
    sc.syms.clear();
    sc.heap.clear();
    bool last_unk = false;
    for (size_t pos = 0; pos < word.size();) {
      const uint32_t start = (uint32_t)pos;
      pos += std::max<size_t>(1, unicode::utf8_sequence_length((unsigned char)word[pos]));
      const uint32_t end = (uint32_t)std::min(pos, word.size());
      const std::string_view ch = word.substr(start, end - start);
      const unsigned char c0 = (unsigned char)word[start];
      const int32_t id = c0 < 0x80 ? ascii_ids_[c0] : index_.find(ch);
      if (id >= 0) {
        add_symbol(sc, start, end, id, true);
        last_unk = false;
        continue;
      }
      bool have_bytes = true;
      for (unsigned char b : ch) have_bytes = have_bytes && byte_ids_[b] >= 0;
      if (have_bytes) {
        for (uint32_t k = start; k < end; ++k) add_symbol(sc, k, k + 1, byte_ids_[(unsigned char)word[k]], false);
        last_unk = false;
      } else if (last_unk) {
        sc.syms.back().end = end;  // HF fuses runs of unknown characters into one <unk>
      } else if (unk_id_ >= 0) {
        add_symbol(sc, start, end, unk_id_, false);
        last_unk = true;
      } else {
        throw std::runtime_error("sentencepiece: character without a piece, byte pieces or <unk>");
      }
    }

    const int32_t n = (int32_t)sc.syms.size();
    for (int32_t i = 0; i + 1 < n; ++i) push_pair(word, sc, i, i + 1);
    while (!sc.heap.empty()) {
      std::pop_heap(sc.heap.begin(), sc.heap.end(), Later{});
      const Candidate c = sc.heap.back();
      sc.heap.pop_back();
      Symbol& l = sc.syms[c.left];
      // Merges only ever grow a symbol to the right, so a queued pair is still
      // current iff its left symbol lives and its right neighbour ends where it did.
      if (!l.alive || l.next < 0 || sc.syms[l.next].end != c.end) continue;
      Symbol& r = sc.syms[l.next];
      l.end = r.end;
      l.id = c.merged;
      l.next = r.next;
      r.alive = false;
      if (l.next >= 0) sc.syms[l.next].prev = (int32_t)c.left;
      if (l.prev >= 0) push_pair(word, sc, l.prev, (int32_t)c.left);
      if (l.next >= 0) push_pair(word, sc, (int32_t)c.left, l.next);
    }
    // The first symbol only ever absorbs its neighbours, so it heads the list.
    for (int32_t i = 0; i >= 0; i = sc.syms[i].next) out.push_back(sc.syms[i].id);
  }

  uint64_t instance_;
  size_t n_vocab_;
  int32_t unk_id_;
  bool split_words_ = false;
  std::vector<char32_t> joins_space_;  // characters some piece puts right before U+2581
  PieceIndex index_;
  AddedTokenMatcher added_;
  std::vector<uint32_t> score_rank_;
  std::vector<uint32_t> nchars_;
  int32_t byte_ids_[256];
  int32_t ascii_ids_[0x80];
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece(const std::vector<std::string>& tokens, const std::vector<float>& scores,
                                              const std::vector<int32_t>& types, int32_t unk_id) {
  return std::make_unique<SentencePieceBpe>(tokens, scores, types, unk_id);
}

}  // namespace embedq
