// Unit tests for XLM-RoBERTa's tokenizer core: Unigram Viterbi on a hand-made
// vocabulary, the precompiled-charsmap normalizer on a hand-made Darts trie,
// and grapheme clusters. Parity with HF on trained tokenizers is tested from
// Python (tests/test_tokenizer_xlmr.py); the expected ids below were checked
// against HF `tokenizers` on the same vocabulary and trie.
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "charsmap.h"
#include "check.h"
#include "grapheme.h"
#include "tokenizer.h"
#include "unicode.h"

namespace {

#define WS "\xE2\x96\x81"

std::string show(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s + "]";
}

void expect_ids(const embedq::Tokenizer& t, const std::string& text, const std::vector<int32_t>& want, int line) {
  std::vector<int32_t> got;
  t.encode(text, got);
  check::record(got == want, __FILE__, line, "encode(\"%s\"): got %s, want %s", text.c_str(), show(got).c_str(),
                show(want).c_str());
}
#define EXPECT_IDS(tok, text, ...) expect_ids(tok, text, std::vector<int32_t> __VA_ARGS__, __LINE__)

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<double> scores;
  std::vector<int32_t> types;
  void add(const std::string& t, double s, int32_t type = 1) {
    tokens.push_back(t);
    scores.push_back(s);
    types.push_back(type);
  }
};

Vocab hand_vocab() {
  Vocab v;
  v.add("<s>", 0, 3);        // 0
  v.add("<pad>", 0, 3);      // 1
  v.add("</s>", 0, 3);       // 2
  v.add("<unk>", 0, 2);      // 3
  v.add(WS, -1);             // 4
  v.add(WS "a", -1);         // 5
  v.add("b", -3);            // 6
  v.add(WS "ab", -2.5);      // 7
  v.add("ab", -1.5);         // 8
  v.add("pq", -1);           // 9
  v.add(WS "p", -1);         // 10
  v.add("q", -1);            // 11
  v.add("<mask>", 0, 3);     // 12
  v.add("[PAD13]", -10000, 5);  // 13: a placeholder, not a piece
  v.add("\xC3\xA9", -2);     // 14 é
  return v;
}

void test_viterbi() {
  const Vocab v = hand_vocab();
  embedq::UnigramOptions o;
  auto t = embedq::make_unigram(v.tokens, v.scores, v.types, 3, o);
  EXPECT_IDS(*t, "ab", {7});            // ▁ab -2.5 beats ▁a+b -4 and ▁+ab -2.5 (later start)
  EXPECT_IDS(*t, "a b", {5, 4, 6});     // every word gets its own U+2581
  EXPECT_IDS(*t, "", {});
  EXPECT_IDS(*t, " \t\n ", {});         // white space only: no words at all
  EXPECT_IDS(*t, "  a  ", {5});
  EXPECT_IDS(*t, "pq", {4, 9});         // tie (-2 both ways): the piece starting first wins
  EXPECT_IDS(*t, "xyz", {4, 3});        // unknown characters fuse into one <unk>
  EXPECT_IDS(*t, "xbz", {4, 3, 6, 3});  // ... but only while they are adjacent
  EXPECT_IDS(*t, "a" WS WS "b", {5, 4, 4, 6});  // split before every U+2581
  EXPECT_IDS(*t, "\xC3\xA9\xC3\xA9", {4, 14, 14});
  EXPECT_IDS(*t, "[PAD13]", {4, 3});    // placeholders never match
  // Added tokens are cut from the raw text before anything else.
  EXPECT_IDS(*t, "x<s>a", {4, 3, 0, 5});
  EXPECT_IDS(*t, "<mask><pad></s>", {12, 1, 2});
  EXPECT_IDS(*t, "<unk>", {3});
  EXPECT_IDS(*t, "<s", {4, 3});
  // Invalid UTF-8 becomes U+FFFD, which no piece covers.
  EXPECT_IDS(*t, "a\xFF", {5, 3});

  o.add_space_prefix = false;
  auto bare = embedq::make_unigram(v.tokens, v.scores, v.types, 3, o);
  EXPECT_IDS(*bare, "ab", {8});
  EXPECT_IDS(*bare, "b" WS "a", {6, 5});
}

void test_duplicates_and_errors() {
  Vocab v = hand_vocab();
  v.add(WS "a", -0.5);  // 15: same text as 5; HF's map keeps the later id (and its score)
  auto t = embedq::make_unigram(v.tokens, v.scores, v.types, 3, embedq::UnigramOptions{});
  EXPECT_IDS(*t, "a", {15});

  auto throws = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  const Vocab h = hand_vocab();
  CHECK(throws([&] { embedq::make_unigram(h.tokens, h.scores, h.types, 99, {}); }));
  CHECK(throws([&] { embedq::make_unigram(h.tokens, h.scores, h.types, -1, {}); }));
  CHECK(throws([&] { embedq::make_unigram({}, {}, {}, 0, {}); }));
  Vocab bad = hand_vocab();
  bad.scores[5] = std::nan("");
  CHECK(throws([&] { embedq::make_unigram(bad.tokens, bad.scores, bad.types, 3, {}); }));
  bad = hand_vocab();
  bad.types[5] = 9;
  CHECK(throws([&] { embedq::make_unigram(bad.tokens, bad.scores, bad.types, 3, {}); }));
  bad = hand_vocab();
  bad.scores.pop_back();
  CHECK(throws([&] { embedq::make_unigram(bad.tokens, bad.scores, bad.types, 3, {}); }));
}

// A Darts-clone trie with the one key "a" (value 0) and the replacement "X":
// the root's children sit at (byte ^ 0); "a"'s unit points (offset 3) to its
// leaf at 0x62. 512 units keep every one-byte walk inside the array.
std::string one_key_charsmap() {
  std::vector<uint32_t> units(0x200, 0);
  units[0x61] = (3u << 10) | (1u << 8) | 0x61;
  units[0x62] = (1u << 31) | 0;
  std::string blob(4 + 4 * units.size(), '\0');
  const uint32_t n = (uint32_t)(4 * units.size());
  for (int i = 0; i < 4; ++i) blob[i] = (char)((n >> (8 * i)) & 0xFF);
  for (size_t u = 0; u < units.size(); ++u)
    for (int i = 0; i < 4; ++i) blob[4 + 4 * u + i] = (char)((units[u] >> (8 * i)) & 0xFF);
  return blob + std::string("X\0", 2);
}

void expect_norm(const embedq::CharsMap& m, const std::string& in, const std::string& want, int line) {
  std::string got;
  m.normalize(in, got);
  check::record(got == want, __FILE__, line, "normalize(\"%s\") = \"%s\", want \"%s\"", in.c_str(), got.c_str(),
                want.c_str());
}

void test_charsmap() {
  const embedq::CharsMap m(one_key_charsmap());
  CHECK(!m.empty());
  expect_norm(m, "a", "X", __LINE__);
  expect_norm(m, "ba", "bX", __LINE__);
  expect_norm(m, "aa", "XX", __LINE__);
  // a + U+0301 is one 3-byte cluster that starts with the key "a": HF replaces
  // the WHOLE cluster, so the accent goes.
  expect_norm(m, "a\xCC\x81", "X", __LINE__);
  // With three marks the cluster is 7 bytes: character by character instead.
  expect_norm(m, "a\xCC\x81\xCC\x81\xCC\x81", "X\xCC\x81\xCC\x81\xCC\x81", __LINE__);
  expect_norm(m, "\xC3\xA1", "\xC3\xA1", __LINE__);  // precomposed á has no key
  expect_norm(m, std::string("\0a", 2), std::string("\0X", 2), __LINE__);

  // With the charsmap in front, the tokenizer sees the replaced text.
  const Vocab v = hand_vocab();
  embedq::UnigramOptions o;
  o.charsmap = one_key_charsmap();
  auto t = embedq::make_unigram(v.tokens, v.scores, v.types, 3, o);
  EXPECT_IDS(*t, "b", {4, 6});
  EXPECT_IDS(*t, "a", {4, 3});  // "a" became "X", which no piece covers

  auto throws = [](const std::string& blob) {
    try {
      embedq::CharsMap c(blob);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  CHECK(!throws(""));
  CHECK(throws("abc"));                             // shorter than its header
  CHECK(throws(std::string("\x08\0\0\0abcd", 8)));  // trie larger than the blob
  CHECK(throws(std::string("\x02\0\0\0abcdef", 10)));  // not whole units
  std::string bad_utf8 = one_key_charsmap();
  bad_utf8.back() = '\xFF';
  CHECK(throws(bad_utf8));

  // Random units must never read outside the blob (the sanitizers watch).
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    const size_t n_units = 1 + rng() % 300;
    std::string blob(4, '\0');
    const uint32_t bytes = (uint32_t)(4 * n_units);
    for (int i = 0; i < 4; ++i) blob[i] = (char)((bytes >> (8 * i)) & 0xFF);
    for (size_t k = 0; k < bytes; ++k) blob.push_back((char)(rng() & 0xFF));
    blob += std::string("xy\0z\0", 5);
    const embedq::CharsMap c(blob);
    std::string text;
    for (int k = 0; k < 40; ++k) embedq::unicode::utf8_append(text, (char32_t)(rng() % 0x3000));
    std::string out;
    c.normalize(text, out);
    CHECK(embedq::unicode::utf8_is_valid(out));
  }
}

void expect_clusters(const std::u32string& s, const std::vector<size_t>& want, int line) {
  const std::vector<size_t> got = embedq::unicode::grapheme_starts(s);
  std::string g, w;
  for (size_t x : got) g += std::to_string(x) + " ";
  for (size_t x : want) w += std::to_string(x) + " ";
  check::record(got == want, __FILE__, line, "cluster starts %s, want %s", g.c_str(), w.c_str());
}

void test_graphemes() {
  expect_clusters(U"", {}, __LINE__);
  expect_clusters(U"ab", {0, 1}, __LINE__);
  expect_clusters(U"e\u0301x", {0, 2}, __LINE__);                   // GB9: marks stay with their base
  expect_clusters(U"\r\n\n", {0, 2}, __LINE__);                     // GB3 then GB4
  expect_clusters(U"\u0301", {0}, __LINE__);                        // a lone mark is a cluster
  expect_clusters(U"\u1100\u1161\u11A8\u1100", {0, 3}, __LINE__);   // Hangul L V T | L
  expect_clusters(U"\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA\U0001F1EB", {0, 2, 4}, __LINE__);  // flags pair up
  expect_clusters(U"\U0001F469\u200D\u2764\uFE0F\u200D\U0001F468", {0}, __LINE__);  // GB11 ZWJ sequence
  expect_clusters(U"a\u200D\U0001F468", {0, 2}, __LINE__);          // ZWJ after a letter does not join
  expect_clusters(U"\u0915\u094D\u0937", {0}, __LINE__);            // GB9c: Devanagari conjunct
  expect_clusters(U"\u0915\u0937", {0, 1}, __LINE__);
  expect_clusters(U"\u0E01\u0E33", {0}, __LINE__);                  // GB9a: Thai sara am is a SpacingMark
  expect_clusters(U"\u0600\u0661", {0}, __LINE__);                  // GB9b: Prepend
}

}  // namespace

int main() {
  test_viterbi();
  test_duplicates_and_errors();
  test_charsmap();
  test_graphemes();
  return report();
}
