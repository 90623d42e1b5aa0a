// Extended grapheme clusters (UAX #29), as HF `tokenizers` computes them
// through the unicode-segmentation crate. Only the Precompiled (SentencePiece
// charsmap) normalizer needs them: it looks a whole cluster up before falling
// back to single characters.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace embedq::unicode {

enum GraphemeBreak : uint8_t {
  kGbOther = 0, kGbCR, kGbLF, kGbControl, kGbExtend, kGbZWJ, kGbRegionalIndicator, kGbPrepend, kGbSpacingMark,
  kGbL, kGbV, kGbT, kGbLV, kGbLVT,
};
enum IndicConjunctBreak : uint8_t { kIncbNone = 0, kIncbLinker, kIncbConsonant, kIncbExtend };

struct GraphemeProps {
  GraphemeBreak gcb;
  bool ext_pict;  // Extended_Pictographic
  IndicConjunctBreak incb;
};

GraphemeProps grapheme_props(char32_t cp);

// Cluster boundaries of `cps`: the index where each cluster starts, in order
// (the first is 0), each cluster ending where the next starts or at the end.
std::vector<size_t> grapheme_starts(const std::u32string_view& cps);

}  // namespace embedq::unicode
