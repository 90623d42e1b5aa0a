// Unit tests for the byte-level BPE tokenizer (bpe.cpp) on a hand-made
// vocabulary: the 256 byte characters as ids 0..255, a few merges chosen so
// that a wrong pre-tokenizer split, merge order, normalization or added-token
// cut shows up in the ids. Parity with HF on a trained tokenizer is tested
// from Python (tests/runtime/test_tokenizer_qwen3.py, test_modernbert.py).
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "tokenizer.h"
#include "unicode.h"

namespace {

std::string show(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s + "]";
}

// GPT-2's bytes_to_unicode, written independently of bpe.cpp's.
std::vector<char32_t> byte_chars() {
  std::vector<char32_t> out(256, 0);
  std::vector<bool> printable(256, false);
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) out[b] = printable[b] ? (char32_t)b : next++;
  return out;
}

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  std::map<int32_t, std::string> bytes;  // id -> the raw bytes it stands for
};

Vocab hand_vocab() {
  Vocab v;
  const std::vector<char32_t> bc = byte_chars();
  std::map<std::string, std::string> raw;  // token text -> raw bytes
  for (int b = 0; b < 256; ++b) {
    std::string t;
    embedq::unicode::utf8_append(t, bc[b]);
    v.tokens.push_back(t);
    v.types.push_back(1);
    v.bytes[b] = std::string(1, (char)b);
    raw[t] = v.bytes[b];
  }
  auto merge = [&](const std::string& a, const std::string& b) {
    v.merges.push_back(a + " " + b);
    v.tokens.push_back(a + b);
    v.types.push_back(1);
    v.bytes[(int32_t)v.tokens.size() - 1] = raw[a] + raw[b];
    raw[a + b] = raw[a] + raw[b];
  };
  merge("b", "c");                    // 256, rank 0
  merge("a", "b");                    // 257, rank 1: "abc" is a + bc
  merge("a", "a");                    // 258
  merge("n", "'");                    // 259: only if a contraction were not split off
  merge("\xC4\xA0", "w");             // 260 "Ġw": a space joins the word after it
  merge("\xC4\xA0", "\xC4\xA0");      // 261 "ĠĠ"
  merge("\xC4\x8A", "\xC4\x8A");      // 262 "ĊĊ"
  merge("1", "2");                    // 263: digits are split one by one
  merge("S", "a");                    // 264: only if "'S" were not a contraction
  v.tokens.push_back("<|endoftext|>");
  v.types.push_back(3);  // 265
  v.tokens.push_back("<think>");
  v.types.push_back(4);  // 266
  v.tokens.push_back("[PAD267]");
  v.types.push_back(5);  // 267
  return v;
}

void expect_ids(const embedq::Tokenizer& t, const std::string& text, const std::vector<int32_t>& want, int line) {
  std::vector<int32_t> got;
  t.encode(text, got);
  check::record(got == want, __FILE__, line, "encode(\"%s\"): got %s, want %s", text.c_str(), show(got).c_str(),
                show(want).c_str());
}
#define EXPECT_IDS(tok, text, ...) expect_ids(tok, text, std::vector<int32_t> __VA_ARGS__, __LINE__)

void test_hand_vocab() {
  const Vocab v = hand_vocab();
  auto tok = embedq::make_byte_bpe(v.tokens, v.types, v.merges);
  CHECK(tok->vocab_size() == 268);
  EXPECT_IDS(*tok, "", {});
  EXPECT_IDS(*tok, "abc", {97, 256});          // rank 0 (b c) before rank 1 (a b)
  EXPECT_IDS(*tok, "aaa", {258, 97});          // equal ranks merge left to right
  EXPECT_IDS(*tok, "aaaa", {258, 258});
  EXPECT_IDS(*tok, "don't", {100, 111, 110, 39, 116});  // "don" | "'t": n' never merges
  EXPECT_IDS(*tok, "'Sa", {39, 83, 97});       // (?i:'s) takes "'S" before \p{L}+ could
  EXPECT_IDS(*tok, "x'Sa", {120, 39, 83, 97});
  EXPECT_IDS(*tok, " wow", {260, 111, 119});   // " wow" is one piece
  EXPECT_IDS(*tok, "a  w", {97, 32, 260});     // "a" | " " | " w": \s+(?!\S) leaves one space
  EXPECT_IDS(*tok, "a  ", {97, 261});          // at the end the whole run
  EXPECT_IDS(*tok, "x\n\ny", {120, 262, 121}); // \s*[\r\n]+
  EXPECT_IDS(*tok, "x \n\n y", {120, 32, 262, 32, 121});  // " \n\n" (to the last newline), " y"
  EXPECT_IDS(*tok, "12", {49, 50});            // \p{N} one digit at a time
  EXPECT_IDS(*tok, "e\xCC\x81", {195, 169});   // NFC: e + U+0301 -> U+00E9 (C3 A9)
  EXPECT_IDS(*tok, "\xE1\x84\x80\xE1\x85\xA1", {234, 176, 128});  // Hangul L+V -> U+AC00
  EXPECT_IDS(*tok, "<|endoftext|>ab", {265, 257});
  EXPECT_IDS(*tok, "x<think>", {120, 266});
  EXPECT_IDS(*tok, "\xFF", {239, 191, 189});    // invalid UTF-8 becomes U+FFFD
  EXPECT_IDS(*tok, "[PAD267]", {91, 80, 65, 68, 50, 54, 55, 93});  // padding entries are not tokens
}

// ModernBERT's variant: GPT-2's regex (case-sensitive contractions, digit
// runs, a newline run split like any white space) and no NFC.
void test_gpt2_split() {
  const Vocab v = hand_vocab();
  embedq::ByteBpeOptions o;
  o.split = embedq::ByteBpeOptions::Split::GPT2;
  o.nfc = false;
  auto tok = embedq::make_byte_bpe(v.tokens, v.types, v.merges, o);
  EXPECT_IDS(*tok, "abc", {97, 256});
  EXPECT_IDS(*tok, "don't", {100, 111, 110, 39, 116});
  EXPECT_IDS(*tok, "'Sa", {39, 264});            // "'S" is no contraction: "'" | "Sa"
  EXPECT_IDS(*tok, "x'Sa", {120, 39, 264});
  EXPECT_IDS(*tok, "12", {263});                 // \p{N}+ keeps the digits together
  EXPECT_IDS(*tok, " 12", {32, 263});
  EXPECT_IDS(*tok, " wow", {260, 111, 119});
  EXPECT_IDS(*tok, "a  w", {97, 32, 260});
  EXPECT_IDS(*tok, "a  ", {97, 261});
  EXPECT_IDS(*tok, "x\n\ny", {120, 10, 10, 121});  // "\n" | "\n" (\s+(?!\S)), then "y"
  EXPECT_IDS(*tok, "x\n\n", {120, 262});
  EXPECT_IDS(*tok, "e\xCC\x81", {101, 204, 129});  // no NFC: e + U+0301 stay two characters
  EXPECT_IDS(*tok, "a!!b", {97, 33, 33, 98});
  EXPECT_IDS(*tok, "<|endoftext|>ab", {265, 257});
}

// HF's AddedToken(lstrip/rstrip): the white space beside a stripping token joins its match
// (ModernBERT's [MASK] takes the space on its left), Unicode White_Space included, never
// reaching into the previous added token.
void test_added_token_strip() {
  const Vocab v = hand_vocab();
  embedq::ByteBpeOptions o;
  o.split = embedq::ByteBpeOptions::Split::GPT2;
  o.nfc = false;
  auto plain = embedq::make_byte_bpe(v.tokens, v.types, v.merges, o);
  EXPECT_IDS(*plain, "x <think>", {120, 32, 266});
  o.added.lstrip = {266};  // <think>
  o.added.rstrip = {265};  // <|endoftext|>
  auto tok = embedq::make_byte_bpe(v.tokens, v.types, v.merges, o);
  EXPECT_IDS(*tok, "x <think>", {120, 266});
  EXPECT_IDS(*tok, "x \t\xE3\x80\x80<think>", {120, 266});  // a tab and U+3000 too
  EXPECT_IDS(*tok, "x\xC2\xA0<think>", {120, 266});           // U+00A0 is White_Space
  EXPECT_IDS(*tok, "x <think> w", {120, 266, 260});           // its right side keeps " w"
  EXPECT_IDS(*tok, "a <think> <think>", {97, 266, 266});
  EXPECT_IDS(*tok, "<|endoftext|>  w", {265, 119});            // rstrip takes both spaces
  EXPECT_IDS(*tok, "<|endoftext|> <think>", {265, 266});
  EXPECT_IDS(*tok, "<think>x", {266, 120});
  EXPECT_IDS(*tok, "  <think>", {266});
  // HF's two passes: a normalized added token ("  " here, as ModernBERT's runs of spaces) is only
  // looked for between the others, so a stripping token takes the spaces first.
  Vocab w = hand_vocab();
  w.tokens.push_back("  ");
  w.types.push_back(4);  // 268
  embedq::ByteBpeOptions p;
  p.added.lstrip = {265};
  auto one_pass = embedq::make_byte_bpe(w.tokens, w.types, w.merges, p);
  EXPECT_IDS(*one_pass, "x  <|endoftext|>", {120, 268, 265});
  p.added.normalized = {268};
  auto two_passes = embedq::make_byte_bpe(w.tokens, w.types, w.merges, p);
  EXPECT_IDS(*two_passes, "x  <|endoftext|>", {120, 265});
  EXPECT_IDS(*two_passes, "x  y<|endoftext|>", {120, 268, 121, 265});
  EXPECT_IDS(*two_passes, "<|endoftext|>  ", {265, 268});
  bool threw = false;
  o.added.lstrip = {97};  // "a" is no added token: it could never match
  try {
    embedq::make_byte_bpe(v.tokens, v.types, v.merges, o);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK_MSG(threw, "a strip flag on a token that is not added is refused");
}

void test_errors() {
  Vocab v = hand_vocab();
  bool threw = false;
  try {
    std::vector<std::string> m = v.merges;
    m.push_back("q zz");
    embedq::make_byte_bpe(v.tokens, v.types, m);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK_MSG(threw, "a merge naming a missing token is refused");
  threw = false;
  try {
    std::vector<std::string> m = v.merges;
    m.push_back("ab");
    embedq::make_byte_bpe(v.tokens, v.types, m);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK_MSG(threw, "a merge without a space is refused");
  threw = false;
  try {
    std::vector<int32_t> t = v.types;
    t[3] = 9;
    embedq::make_byte_bpe(v.tokens, t, v.merges);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK_MSG(threw, "an unknown token type is refused");
  threw = false;
  try {
    std::vector<std::string> toks = v.tokens;
    toks[267] = "\xC3";
    embedq::make_byte_bpe(toks, v.types, v.merges);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK_MSG(threw, "a token that is not UTF-8 is refused");
}

// On ASCII text (NFC leaves it alone) the tokens always spell the text back,
// whichever split.
void test_random_round_trip(const embedq::ByteBpeOptions& o) {
  const Vocab v = hand_vocab();
  auto tok = embedq::make_byte_bpe(v.tokens, v.types, v.merges, o);
  std::mt19937 rng(7);
  const std::string alphabet = "abcSw12' \n\r\t.,!x<|>";
  int bad = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    const size_t n = rng() % 40;
    for (size_t i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    std::vector<int32_t> ids;
    tok->encode(text, ids);
    std::string back;
    for (int32_t id : ids) back += v.bytes.count(id) ? v.bytes.at(id) : v.tokens[(size_t)id];
    if (back != text && ++bad <= 5) CHECK_MSG(false, "round trip of \"%s\" gave \"%s\"", text.c_str(), back.c_str());
  }
  CHECK(bad == 0);
  // Arbitrary bytes: never a crash (the sanitizers watch), ids always in range.
  bool in_range = true;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    const size_t n = rng() % 64;
    for (size_t i = 0; i < n; ++i) text += (char)(rng() & 0xFF);
    std::vector<int32_t> ids;
    tok->encode(text, ids);
    for (int32_t id : ids) in_range = in_range && id >= 0 && id < 268 && id != 267;
  }
  CHECK(in_range);
}

}  // namespace

int main() {
  test_hand_vocab();
  test_gpt2_split();
  test_added_token_strip();
  test_errors();
  test_random_round_trip({});
  embedq::ByteBpeOptions gpt2;
  gpt2.split = embedq::ByteBpeOptions::Split::GPT2;
  gpt2.nfc = false;
  test_random_round_trip(gpt2);
  return report();
}
