#include "grapheme.h"

#include <algorithm>

namespace embedq::unicode {

namespace {

struct GraphemeRun {
  char32_t first;
  uint8_t props;  // bits 0-3 GraphemeBreak, bit 4 Extended_Pictographic, bits 5-6 IndicConjunctBreak
};

#include "grapheme_tables.inc"

bool is_control(GraphemeBreak g) { return g == kGbCR || g == kGbLF || g == kGbControl; }

}  // namespace

GraphemeProps grapheme_props(char32_t cp) {
  if (cp > 0x10FFFF) return GraphemeProps{kGbOther, false, kIncbNone};
  const GraphemeRun* end = kGraphemeRuns + sizeof kGraphemeRuns / sizeof kGraphemeRuns[0];
  const GraphemeRun* it = std::upper_bound(kGraphemeRuns, end, cp, [](char32_t c, const GraphemeRun& r) { return c < r.first; });
  const uint8_t p = (it - 1)->props;
  return GraphemeProps{(GraphemeBreak)(p & 0x0F), (p & 0x10) != 0, (IndicConjunctBreak)((p >> 5) & 3)};
}

// The rules GB3..GB13 decide between each pair of characters; the three that
// look further back (emoji ZWJ sequences, regional-indicator pairs, Indic
// conjuncts) keep a small state of what the current run has seen.
std::vector<size_t> grapheme_starts(const std::u32string_view& cps) {
  std::vector<size_t> starts;
  if (cps.empty()) return starts;
  starts.push_back(0);
  GraphemeProps prev = grapheme_props(cps[0]);
  int emoji = prev.ext_pict ? 1 : 0;               // 1: ExtPict Extend*, 2: ... then ZWJ
  size_t ri_run = prev.gcb == kGbRegionalIndicator;  // regional indicators ending at prev
  int conjunct = prev.incb == kIncbConsonant ? 1 : 0;  // 1: Consonant [Extend]*, 2: a Linker seen too
  for (size_t i = 1; i < cps.size(); ++i) {
    const GraphemeProps cur = grapheme_props(cps[i]);
    const GraphemeBreak a = prev.gcb, b = cur.gcb;
    bool join;
    if (a == kGbCR && b == kGbLF) join = true;                                  // GB3
    else if (is_control(a) || is_control(b)) join = false;                      // GB4, GB5
    else if (a == kGbL && (b == kGbL || b == kGbV || b == kGbLV || b == kGbLVT)) join = true;  // GB6
    else if ((a == kGbLV || a == kGbV) && (b == kGbV || b == kGbT)) join = true;  // GB7
    else if ((a == kGbLVT || a == kGbT) && b == kGbT) join = true;              // GB8
    else if (b == kGbExtend || b == kGbZWJ || b == kGbSpacingMark) join = true;  // GB9, GB9a
    else if (a == kGbPrepend) join = true;                                      // GB9b
    else if (cur.incb == kIncbConsonant && conjunct == 2) join = true;          // GB9c
    else if (a == kGbZWJ && cur.ext_pict && emoji == 2) join = true;            // GB11
    else if (a == kGbRegionalIndicator && b == kGbRegionalIndicator) join = ri_run % 2 == 1;  // GB12, GB13
    else join = false;                                                          // GB999
    if (!join) starts.push_back(i);

    if (cur.ext_pict) emoji = 1;
    else if (emoji == 1 && b == kGbExtend) emoji = 1;
    else if (emoji == 1 && b == kGbZWJ) emoji = 2;
    else emoji = 0;
    ri_run = b == kGbRegionalIndicator ? ri_run + 1 : 0;
    if (cur.incb == kIncbConsonant) conjunct = 1;
    else if (conjunct > 0 && cur.incb == kIncbLinker) conjunct = 2;
    else if (conjunct == 0 || cur.incb != kIncbExtend) conjunct = 0;
    prev = cur;
  }
  return starts;
}

}  // namespace embedq::unicode
