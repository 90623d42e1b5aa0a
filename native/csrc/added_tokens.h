// Added tokens (specials such as <s>, <mask>, <start_of_turn>) are cut out of
// the raw text before any normalization, leftmost-longest, as HF's
// AddedVocabulary does. Shared by the SentencePiece-style tokenizers.
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer.h"
#include "unicode.h"

namespace embedq {

// Leftmost-longest matcher for the added tokens, a byte trie. Every token is
// valid UTF-8, so a match can only begin on a character boundary.
//
// HF matches in two passes: first the tokens declared normalized=False (the
// specials), then, in the text between those, the normalized ones (ModernBERT's
// runs of spaces). Where the file lists the second kind (AddedTokenRules), so
// does this; otherwise every token is matched in the first pass. The order
// matters next to a token that takes white space: in "  [MASK]" HF's [MASK]
// takes both spaces before the "  " token is ever looked for.
class AddedTokenMatcher final {
 public:
  void add(std::string_view s, int32_t id) {
    if (s.empty()) return;
    if (ids_.empty()) ids_.push_back(-1);
    uint32_t node = 0;
    for (unsigned char c : s) {
      const uint64_t key = ((uint64_t)node << 8) | c;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, (uint32_t)ids_.size()).first;
        ids_.push_back(-1);
      }
      node = it->second;
    }
    // Several ids may share a text (HF keeps the first added); keep the first.
    if (ids_[node] < 0) ids_[node] = id;
    first_[(unsigned char)s[0]] = true;
  }

  // Applies the file's rules to tokens already added. Ids that are not added tokens are refused:
  // a rule for them would mean the file and its vocabulary disagree.
  void apply(const AddedTokenRules& rules) {
    auto mark = [&](const std::vector<int32_t>& ids, uint8_t flag) {
      for (int32_t id : ids) {
        if (id < 0 || std::find(ids_.begin(), ids_.end(), id) == ids_.end()) {
          throw std::invalid_argument("added-token rules name token " + std::to_string(id) +
                                      ", which is not an added token");
        }
        flags_[id] |= flag;
      }
    };
    mark(rules.lstrip, kLeft);
    mark(rules.rstrip, kRight);
    mark(rules.normalized, kSecondPass);
    two_passes_ = !rules.normalized.empty();
  }

  bool may_start(unsigned char c) const { return first_[c]; }
  bool two_passes() const { return two_passes_; }

  static constexpr uint8_t kLeft = 1, kRight = 2, kSecondPass = 4;
  uint8_t flags(int32_t id) const {
    auto it = flags_.find(id);
    return it == flags_.end() ? 0 : it->second;
  }

  // Length of the longest token of pass `second` starting at text[pos], 0 if none.
  size_t longest_at(std::string_view text, size_t pos, bool second, int32_t* id) const {
    uint32_t node = 0;
    size_t best = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = edges_.find(((uint64_t)node << 8) | (unsigned char)text[i]);
      if (it == edges_.end()) break;
      node = it->second;
      if (ids_[node] >= 0 && ((flags(ids_[node]) & kSecondPass) != 0) == second) {
        best = i + 1 - pos;
        *id = ids_[node];
      }
    }
    return best;
  }

 private:
  std::unordered_map<uint64_t, uint32_t> edges_;  // (node << 8 | byte) -> child
  std::vector<int32_t> ids_;                      // per node: token ending here, or -1
  bool first_[256] = {};
  std::unordered_map<int32_t, uint8_t> flags_;    // id -> kLeft | kRight | kSecondPass
  bool two_passes_ = false;
};

// Where the run of white space that ends at `end` starts, not before `floor`.
inline size_t white_space_before(std::string_view text, size_t end, size_t floor) {
  while (end > floor) {
    size_t start = end - 1;
    while (start > floor && ((unsigned char)text[start] & 0xC0) == 0x80) --start;  // back to a lead byte
    size_t at = start;
    if (!unicode::is_white_space(unicode::utf8_decode(text, at))) break;
    end = start;
  }
  return end;
}

// Where the run of white space that starts at `begin` ends, not after `ceiling`.
inline size_t white_space_after(std::string_view text, size_t begin, size_t ceiling) {
  while (begin < ceiling) {
    size_t next = begin;
    if (!unicode::is_white_space(unicode::utf8_decode(text, next)) || next > ceiling) break;
    begin = next;
  }
  return begin;
}

// One pass over text[from, to): gap(a, b) for each stretch between tokens of the pass (possibly
// empty), token(id, begin, end) for each token. A token that takes white space (lstrip/rstrip)
// has it in its match, and so in its offsets as in HF, never reaching into the previous token.
template <class Gap, class Token>
void scan_added(std::string_view text, size_t from, size_t to, const AddedTokenMatcher& added, bool second,
                Gap&& gap, Token&& token) {
  const std::string_view upto = text.substr(0, to);
  size_t span = from;
  for (size_t pos = from; pos < to;) {
    int32_t id = -1;
    size_t len = 0;
    if (added.may_start((unsigned char)text[pos])) len = added.longest_at(upto, pos, second, &id);
    if (len == 0) {
      ++pos;
      continue;
    }
    const uint8_t f = added.flags(id);
    const size_t begin = f & AddedTokenMatcher::kLeft ? white_space_before(text, pos, span) : pos;
    const size_t end = f & AddedTokenMatcher::kRight ? white_space_after(text, pos + len, to) : pos + len;
    gap(span, begin);
    token(id, begin, end);
    pos = span = end;
  }
  gap(span, to);
}

// The outer loop the SentencePiece-style tokenizers share: invalid UTF-8 becomes U+FFFD, added
// tokens are cut out and emitted as their ids, and `encode_span(std::string_view span, size_t at, out)`
// tokenizes each stretch of text between them (possibly empty), `at` being where it starts in `text`.
// With `spans`, each added token's bytes are appended to it (the caller adds the stretches' own);
// offsets only mean something for valid UTF-8, so callers that want them check that first.
template <class EncodeSpan>
void encode_around_added(std::string_view text, const AddedTokenMatcher& added, std::vector<int32_t>& out,
                         EncodeSpan&& encode_span, std::vector<TokenSpan>* spans = nullptr) {
  std::string cleaned;
  bool ascii = true;
  for (unsigned char c : text) ascii = ascii && !(c & 0x80);
  if (!ascii && !unicode::utf8_is_valid(text)) {
    cleaned.reserve(text.size() + 8);
    for (size_t pos = 0; pos < text.size();) unicode::utf8_append(cleaned, unicode::utf8_decode(text, pos));
    text = cleaned;
  }
  auto token = [&](int32_t id, size_t begin, size_t end) {
    out.push_back(id);
    if (spans) spans->push_back(TokenSpan{(uint32_t)begin, (uint32_t)end});
  };
  auto stretch = [&](size_t a, size_t b) { encode_span(text.substr(a, b - a), a, out); };
  if (!added.two_passes()) {
    scan_added(text, 0, text.size(), added, false, stretch, token);
    return;
  }
  scan_added(
      text, 0, text.size(), added, false,
      [&](size_t a, size_t b) { scan_added(text, a, b, added, true, stretch, token); }, token);
}

}  // namespace embedq
