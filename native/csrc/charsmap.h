// SentencePiece's "precompiled charsmap" normalizer (nmt_nfkc and friends),
// applied the way HF `tokenizers` applies it (its Precompiled normalizer),
// which is the reference for XLM-RoBERTa's token ids.
//
// The blob: a little-endian uint32 holding the size in bytes of a Darts-clone
// double-array trie, that trie (uint32 units), then the replacement strings,
// each ended by a NUL. A trie key is a UTF-8 byte sequence; its value is the
// offset of its replacement.
//
// HF does not take the longest match over the text as SentencePiece does. It
// walks extended grapheme clusters: a cluster of fewer than 6 bytes whose
// bytes start with any key is replaced WHOLE by the shortest such key's
// replacement (so "a" + U+0301 with a key for "a" alone loses the accent);
// otherwise each character is replaced on its own, or kept. That is what gives
// HF's ids, so it is reproduced as is.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace embedq {

class CharsMap {
 public:
  CharsMap() = default;
  // Throws std::invalid_argument when the blob is malformed (sizes that do not
  // add up, replacement strings that are not UTF-8). An empty blob maps nothing.
  explicit CharsMap(std::string_view blob);

  bool empty() const { return units_.empty(); }
  // Appends the normalized form of `text` (valid UTF-8) to `out`.
  void normalize(std::string_view text, std::string& out) const;

 private:
  // The replacement of the shortest key that `s` starts with; false when none.
  bool lookup(std::string_view s, std::string_view* replacement) const;

  std::vector<uint32_t> units_;
  std::string replacements_;
};

}  // namespace embedq
