#include "charsmap.h"

#include <cstring>
#include <stdexcept>

#include "grapheme.h"
#include "unicode.h"

namespace embedq {

namespace {

// Fields of a Darts-clone unit.
bool has_leaf(uint32_t u) { return (u >> 8) & 1; }
uint32_t value(uint32_t u) { return u & 0x7FFFFFFFu; }
uint32_t label(uint32_t u) { return u & 0x800000FFu; }  // a leaf's top bit keeps it from matching a byte
size_t offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

// Clusters this long or longer are never looked up whole.
constexpr size_t kWholeClusterMaxBytes = 5;

}  // namespace

CharsMap::CharsMap(std::string_view blob) {
  if (blob.empty()) return;
  if (blob.size() < 4) throw std::invalid_argument("precompiled charsmap: shorter than its header");
  const uint8_t* p = reinterpret_cast<const uint8_t*>(blob.data());
  const uint64_t trie_bytes = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
  if (trie_bytes % 4 != 0 || trie_bytes > blob.size() - 4) {
    throw std::invalid_argument("precompiled charsmap: trie size " + std::to_string(trie_bytes) +
                                " does not fit the " + std::to_string(blob.size()) + "-byte blob");
  }
  units_.resize((size_t)trie_bytes / 4);
  for (size_t i = 0; i < units_.size(); ++i) {
    const uint8_t* u = p + 4 + 4 * i;
    units_[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
  }
  replacements_.assign(blob.substr(4 + (size_t)trie_bytes));
  if (!unicode::utf8_is_valid(replacements_)) {
    throw std::invalid_argument("precompiled charsmap: replacement strings are not UTF-8");
  }
}

bool CharsMap::lookup(std::string_view s, std::string_view* replacement) const {
  if (units_.empty()) return false;
  size_t node = offset(units_[0]);
  for (unsigned char c : s) {
    node ^= c;
    if (node >= units_.size()) return false;
    const uint32_t u = units_[node];
    if (label(u) != c) return false;
    node ^= offset(u);
    if (!has_leaf(u)) continue;
    if (node >= units_.size()) return false;
    const size_t start = value(units_[node]);
    if (start > replacements_.size()) return false;
    const size_t nul = replacements_.find('\0', start);
    const std::string_view r = std::string_view(replacements_).substr(start, (nul == std::string::npos ? replacements_.size() : nul) - start);
    // An offset into the middle of a character is not a replacement HF can use.
    if (!unicode::utf8_is_valid(r)) return false;
    *replacement = r;
    return true;
  }
  return false;
}

void CharsMap::normalize(std::string_view text, std::string& out) const {
  if (units_.empty()) {
    out.append(text);
    return;
  }
  std::u32string cps;
  std::vector<size_t> at;  // byte offset of each code point, then text.size()
  for (size_t pos = 0; pos < text.size();) {
    at.push_back(pos);
    cps.push_back(unicode::utf8_decode(text, pos));
  }
  at.push_back(text.size());
  const std::vector<size_t> starts = unicode::grapheme_starts(cps);
  for (size_t g = 0; g < starts.size(); ++g) {
    const size_t first = starts[g], last = g + 1 < starts.size() ? starts[g + 1] : cps.size();
    const std::string_view cluster = text.substr(at[first], at[last] - at[first]);
    std::string_view r;
    if (cluster.size() <= kWholeClusterMaxBytes && lookup(cluster, &r)) {
      out.append(r);
      continue;
    }
    for (size_t i = first; i < last; ++i) {
      const std::string_view ch = text.substr(at[i], at[i + 1] - at[i]);
      if (lookup(ch, &r)) out.append(r);
      else out.append(ch);
    }
  }
}

}  // namespace embedq
