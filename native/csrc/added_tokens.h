// Added tokens (specials such as <s>, <mask>, <start_of_turn>) are cut out of
// the raw text before any normalization, leftmost-longest, as HF's
// AddedVocabulary does. Shared by the SentencePiece-style tokenizers.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer.h"
#include "unicode.h"

namespace embedq {

// Leftmost-longest matcher for the added tokens, a byte trie. Every token is
// valid UTF-8, so a match can only begin on a character boundary.
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

  bool may_start(unsigned char c) const { return first_[c]; }

  // Length of the longest token starting at text[pos], 0 if none.
  size_t longest_at(std::string_view text, size_t pos, int32_t* id) const {
    uint32_t node = 0;
    size_t best = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = edges_.find(((uint64_t)node << 8) | (unsigned char)text[i]);
      if (it == edges_.end()) break;
      node = it->second;
      if (ids_[node] >= 0) {
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
};

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
  size_t span = 0;
  for (size_t pos = 0; pos < text.size();) {
    int32_t id = -1;
    size_t len = 0;
    if (added.may_start((unsigned char)text[pos])) len = added.longest_at(text, pos, &id);
    if (len == 0) {
      ++pos;
      continue;
    }
    encode_span(text.substr(span, pos - span), span, out);
    out.push_back(id);
    if (spans) spans->push_back(TokenSpan{(uint32_t)pos, (uint32_t)(pos + len)});
    pos += len;
    span = pos;
  }
  encode_span(text.substr(span), span, out);
}

}  // namespace embedq
