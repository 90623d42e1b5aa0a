#include "unicode.h"

#include <algorithm>
#include <iterator>

namespace embedq::unicode {
namespace tables {

struct PropRun {
  char32_t first;
  uint8_t flags;
  uint8_t ccc;
};
struct DecompEntry {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct LowerRun {
  char32_t first, last;
  uint32_t stride;
  int32_t delta;
};
struct LowerMulti {
  char32_t cp;
  uint8_t length;
  char32_t chars[3];
};

#include "unicode_tables.inc"

static_assert(kMaxDecompositionLength <= kMaxDecomposition, "regenerate with a larger kMaxDecomposition");

}  // namespace tables

namespace {

// Hangul syllables decompose arithmetically (Unicode ch. 3.12), so the
// generator leaves their 11172 entries out of the tables.
constexpr char32_t kHangulBase = 0xAC00, kHangulL = 0x1100, kHangulV = 0x1161, kHangulT = 0x11A7;
constexpr char32_t kHangulVCount = 21, kHangulTCount = 28, kHangulCount = 11172;

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

}  // namespace

size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xC2) return 0;  // continuation byte or overlong 2-byte lead
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF5) return 4;
  return 0;
}

char32_t utf8_decode(std::string_view s, size_t& pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  const size_t avail = s.size() - pos;
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    pos += 1;
    return b0;
  }
  const size_t len = utf8_sequence_length(b0);
  if (len == 0) {
    pos += 1;
    return kReplacementChar;
  }
  // The second byte's valid range depends on the lead: this is what rejects
  // overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and > U+10FFFF (F4 90..).
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 == 0xE0) lo = 0xA0;
  else if (b0 == 0xED) hi = 0x9F;
  else if (b0 == 0xF0) lo = 0x90;
  else if (b0 == 0xF4) hi = 0x8F;
  char32_t cp = b0 & (0xFF >> (len + 1));
  for (size_t i = 1; i < len; ++i) {
    if (i >= avail) {
      pos += i;
      return kReplacementChar;
    }
    const unsigned char b = p[i];
    const bool ok = (i == 1) ? (b >= lo && b <= hi) : is_continuation(b);
    if (!ok) {
      pos += i;  // the maximal subpart ends before the offending byte
      return kReplacementChar;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  pos += len;
  return cp;
}

size_t utf8_encode(char32_t cp, char* out) {
  if (cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacementChar;
  if (cp < 0x80) {
    out[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<char>(0xC0 | (cp >> 6));
    out[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<char>(0xE0 | (cp >> 12));
    out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<char>(0xF0 | (cp >> 18));
  out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

void utf8_append(std::string& out, char32_t cp) {
  char buf[4];
  out.append(buf, utf8_encode(cp, buf));
}

bool utf8_is_valid(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const size_t start = pos;
    if (utf8_decode(s, pos) == kReplacementChar) {
      // A literal U+FFFD (EF BF BD) is valid; a replacement for bad bytes is not.
      if (pos - start != 3 || static_cast<unsigned char>(s[start]) != 0xEF) return false;
    }
  }
  return true;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (size_t pos = 0; pos < s.size(); ++n) utf8_decode(s, pos);
  return n;
}

std::u32string utf8_to_utf32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) out.push_back(utf8_decode(s, pos));
  return out;
}

std::string utf32_to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) utf8_append(out, cp);
  return out;
}

CharInfo char_info(char32_t cp) {
  using namespace tables;
  if (cp > kMaxCodePoint) return {0, 0};
  // kBlockRun narrows the search to the runs overlapping cp's 256-block;
  // most blocks hold a single run, so this is usually one or two compares.
  const size_t block = cp >> 8;
  const PropRun* lo = kRuns + kBlockRun[block];
  const PropRun* hi = kRuns + kBlockRun[block + 1] + 1;
  const PropRun* it = std::upper_bound(lo, hi, cp, [](char32_t c, const PropRun& r) { return c < r.first; });
  const PropRun& r = *(it - 1);
  return {r.flags, r.ccc};
}

const char* unicode_version() { return tables::kUnicodeVersion; }

size_t canonical_decompose(char32_t cp, char32_t* out) {
  using namespace tables;
  if (cp >= kHangulBase && cp < kHangulBase + kHangulCount) {
    const char32_t s = cp - kHangulBase;
    out[0] = kHangulL + s / (kHangulVCount * kHangulTCount);
    out[1] = kHangulV + (s % (kHangulVCount * kHangulTCount)) / kHangulTCount;
    const char32_t t = s % kHangulTCount;
    if (t == 0) return 2;
    out[2] = kHangulT + t;
    return 3;
  }
  const DecompEntry* end = kDecomp + std::size(kDecomp);
  const DecompEntry* it =
      std::lower_bound(kDecomp, end, cp, [](const DecompEntry& e, char32_t c) { return e.cp < c; });
  if (it == end || it->cp != cp) {
    out[0] = cp;
    return 1;
  }
  std::copy_n(kDecompData + it->offset, it->length, out);
  return it->length;
}

std::u32string nfd(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  char32_t buf[kMaxDecomposition];
  for (char32_t cp : s) {
    if (char_info(cp).flags & kDecomposes) {
      const size_t n = canonical_decompose(cp, buf);
      out.append(buf, n);
    } else {
      out.push_back(cp);
    }
  }
  // Canonical ordering: stable sort of every run of non-starters by class.
  for (size_t i = 0; i < out.size();) {
    if (char_info(out[i]).ccc == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && char_info(out[j]).ccc != 0) ++j;
    std::stable_sort(out.begin() + i, out.begin() + j,
                     [](char32_t a, char32_t b) { return char_info(a).ccc < char_info(b).ccc; });
    i = j;
  }
  return out;
}

size_t to_lower(char32_t cp, char32_t* out) {
  using namespace tables;
  if (cp < 0x80) {
    out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    return 1;
  }
  for (const LowerMulti& m : kLowerMulti) {
    if (m.cp == cp) {
      std::copy_n(m.chars, m.length, out);
      return m.length;
    }
  }
  const LowerRun* end = kLower + std::size(kLower);
  const LowerRun* it = std::upper_bound(kLower, end, cp, [](char32_t c, const LowerRun& r) { return c < r.first; });
  if (it != kLower) {
    const LowerRun& r = *(it - 1);
    if (cp <= r.last && (cp - r.first) % r.stride == 0) {
      out[0] = static_cast<char32_t>(static_cast<int64_t>(cp) + r.delta);
      return 1;
    }
  }
  out[0] = cp;
  return 1;
}

}  // namespace embedq::unicode
