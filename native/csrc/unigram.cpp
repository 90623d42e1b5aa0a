// XLM-RoBERTa's tokenizer, reproducing what HF `tokenizers` does with the
// pipeline transformers 5 builds for it (XLMRobertaTokenizer), which is what
// sentence-transformers feeds the model:
//
//   1. Added tokens (<s>, <pad>, </s>, <unk>, <mask>: every control, unknown and
//      user-defined piece) are cut out of the raw text first, leftmost-longest.
//   2. Each span between them goes through the precompiled charsmap
//      (charsmap.h), then is split at White_Space characters, which vanish.
//   3. Every word gets U+2581 in front (unless it starts with one, or the file
//      turns the space prefix off) and is split again before each U+2581, so
//      "a\u2581\u2581b" is three pieces: "\u2581a", "\u2581", "\u2581b".
//   4. Each piece is segmented by Viterbi over the piece scores: the best total
//      log-probability, summed in double as HF does. A character that starts
//      no single-character piece may be covered by an unknown node scoring
//      (lowest piece score - 10); runs of unknown nodes become one <unk>.
//
// Ties in Viterbi go to the candidate seen first: candidates ending at a
// position are offered in order of their start, earliest first, and a later
// one must score strictly higher to replace the current best.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "added_tokens.h"
#include "charsmap.h"
#include "tokenizer.h"
#include "unicode.h"

namespace embedq {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581
constexpr double kUnknownPenalty = 10.0;

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

class Unigram final : public Tokenizer {
 public:
  Unigram(const std::vector<std::string>& tokens, const std::vector<double>& scores, const std::vector<int32_t>& types,
          int32_t unk_id, const UnigramOptions& opts)
      : n_vocab_(tokens.size()), unk_id_(unk_id), space_prefix_(opts.add_space_prefix), charsmap_(opts.charsmap) {
    if (tokens.empty()) throw std::invalid_argument("unigram: empty vocabulary");
    if (scores.size() != tokens.size() || types.size() != tokens.size()) {
      throw std::invalid_argument("unigram: tokens, scores and types differ in length");
    }
    if (tokens.size() > (size_t)INT32_MAX) throw std::invalid_argument("unigram: vocabulary too large");
    if (unk_id < 0 || (size_t)unk_id >= tokens.size()) throw std::invalid_argument("unigram: unk id out of range");

    std::vector<uint32_t> order;
    double min_score = 0.0;
    bool any = false;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int32_t t = types[i];
      if (t < kNormal || t > kByte) throw std::invalid_argument("unigram: unknown token type " + std::to_string(t));
      if (!std::isfinite(scores[i])) throw std::invalid_argument("unigram: token score is not finite");
      // Padding placeholders ("[PAD7]") are not pieces of HF's vocabulary.
      if (t == kUnused || tokens[i].empty()) continue;
      if (t == kUnknown || t == kControl || t == kUserDefined) added_.add(tokens[i], (int32_t)i);
      order.push_back((uint32_t)i);
      min_score = any ? std::min(min_score, scores[i]) : scores[i];
      any = true;
    }
    added_.apply(opts.added);
    unk_score_ = min_score - kUnknownPenalty;
    scores_ = scores;
    // HF's vocabulary is a map filled in id order, so of two equal pieces the
    // later id is the one it knows: keep it.
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return tokens[a] < tokens[b]; });
    for (size_t k = 0; k < order.size(); ++k) {
      if (k + 1 < order.size() && tokens[order[k]] == tokens[order[k + 1]]) continue;
      const std::string& s = tokens[order[k]];
      entries_.push_back(Entry{(uint32_t)blob_.size(), (uint32_t)s.size(), (int32_t)order[k]});
      blob_.append(s);
    }
  }

  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    Scratch sc;
    encode_around_added(text, added_, out,
                        [&](std::string_view span, size_t, std::vector<int32_t>& ids) { encode_span(span, sc, ids); });
  }

  size_t vocab_size() const override { return n_vocab_; }

 private:
  struct Entry {
    uint32_t offset, len;  // the piece's bytes in blob_
    int32_t id;
  };
  struct Best {
    double score;
    int32_t start;  // -1: nothing reaches this byte yet
    int32_t id;
  };
  struct Scratch {
    std::string norm, piece;
    std::vector<Best> best;
    std::vector<std::pair<uint32_t, int32_t>> path;  // (start, id), last piece first
  };

  unsigned char byte(const Entry& e, size_t d) const { return (unsigned char)blob_[e.offset + d]; }

  // Calls f(length, id) for every piece that `s` starts with, shortest first.
  // entries_ is sorted, so the pieces sharing the first d bytes of s form one
  // range, headed by the piece that is exactly those d bytes if there is one.
  template <class F>
  void prefixes(std::string_view s, F&& f) const {
    size_t lo = 0, hi = entries_.size();
    for (size_t d = 0; d < s.size(); ++d) {
      const unsigned char c = (unsigned char)s[d];
      if (lo < hi && entries_[lo].len == d) ++lo;
      lo = (size_t)(std::partition_point(entries_.begin() + lo, entries_.begin() + hi,
                                         [&](const Entry& e) { return byte(e, d) < c; }) - entries_.begin());
      hi = (size_t)(std::partition_point(entries_.begin() + lo, entries_.begin() + hi,
                                         [&](const Entry& e) { return byte(e, d) == c; }) - entries_.begin());
      if (lo == hi) return;
      if (entries_[lo].len == d + 1) f(d + 1, entries_[lo].id);
    }
  }

  int32_t find(std::string_view s) const {
    int32_t id = -1;
    prefixes(s, [&](size_t len, int32_t i) { if (len == s.size()) id = i; });
    return id;
  }

  void encode_span(std::string_view span, Scratch& sc, std::vector<int32_t>& out) const {
    if (span.empty()) return;
    sc.norm.clear();
    charsmap_.normalize(span, sc.norm);
    const std::string_view norm = sc.norm;
    size_t word = 0;
    for (size_t pos = 0; pos < norm.size();) {
      size_t next = pos;
      if (unicode::is_white_space(unicode::utf8_decode(norm, next))) {
        encode_word(norm.substr(word, pos - word), sc, out);
        word = next;
      }
      pos = next;
    }
    encode_word(norm.substr(word), sc, out);
  }

  void encode_word(std::string_view word, Scratch& sc, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    sc.piece.clear();
    if (space_prefix_ && word.substr(0, kSpaceMark.size()) != kSpaceMark) sc.piece.append(kSpaceMark);
    sc.piece.append(word);
    const std::string_view w = sc.piece;
    size_t start = 0;
    for (size_t at = w.find(kSpaceMark, 1); at != std::string::npos; at = w.find(kSpaceMark, at + 1)) {
      viterbi(w.substr(start, at - start), sc, out);
      start = at;
    }
    viterbi(w.substr(start), sc, out);
  }

  void viterbi(std::string_view s, Scratch& sc, std::vector<int32_t>& out) const {
    if (s.empty()) return;
    sc.best.assign(s.size() + 1, Best{0.0, -1, -1});
    for (size_t at = 0; at < s.size();) {
      const double here = sc.best[at].score;
      const size_t char_len = std::max<size_t>(1, unicode::utf8_sequence_length((unsigned char)s[at]));
      bool single = false;
      auto offer = [&](size_t end, int32_t id, double score) {
        Best& b = sc.best[end];
        if (b.start < 0 || here + score > b.score) b = Best{here + score, (int32_t)at, id};
      };
      prefixes(s.substr(at), [&](size_t len, int32_t id) {
        offer(at + len, id, scores_[(size_t)id]);
        single = single || len == char_len;
      });
      if (!single) offer(std::min(at + char_len, s.size()), unk_id_, unk_score_);
      at += char_len;
    }
    sc.path.clear();
    for (size_t end = s.size(); end > 0;) {
      const Best& b = sc.best[end];
      sc.path.emplace_back((uint32_t)b.start, b.id);
      end = (size_t)b.start;
    }
    // Emit left to right; a run of unknown nodes is one token: the piece its
    // text spells if the vocabulary has one (HF looks it up), else <unk>.
    // path[k] ends where path[k - 1] starts.
    for (size_t k = sc.path.size(); k-- > 0;) {
      if (sc.path[k].second != unk_id_) {
        out.push_back(sc.path[k].second);
        continue;
      }
      const size_t run_start = sc.path[k].first;
      while (k > 0 && sc.path[k - 1].second == unk_id_) --k;
      const size_t run_end = k > 0 ? sc.path[k - 1].first : s.size();
      const int32_t id = find(s.substr(run_start, run_end - run_start));
      out.push_back(id >= 0 ? id : unk_id_);
    }
  }

  size_t n_vocab_;
  int32_t unk_id_;
  bool space_prefix_;
  double unk_score_ = 0.0;
  std::vector<double> scores_;
  std::vector<Entry> entries_;  // pieces sorted by their bytes, one per distinct text
  std::string blob_;
  AddedTokenMatcher added_;
  CharsMap charsmap_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_unigram(const std::vector<std::string>& tokens, const std::vector<double>& scores,
                                        const std::vector<int32_t>& types, int32_t unk_id, const UnigramOptions& opts) {
  return std::make_unique<Unigram>(tokens, scores, types, unk_id, opts);
}

}  // namespace embedq
