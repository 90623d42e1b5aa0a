// Unit tests for the tokenizers and their Unicode helpers (harness: check.h).
// Parity with HF on real vocabularies is tested from Python
// (tests/test_tokenizer_bert.py); here tiny hand-made vocabularies pin down
// each rule in isolation.
#include <cstdio>
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

std::string show(const std::u32string& v) {
  std::string s = "[";
  char buf[16];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%sU+%04X", i ? " " : "", static_cast<unsigned>(v[i]));
    s += buf;
  }
  return s + "]";
}

template <class T>
void check_eq(const T& got, const T& want, const std::string& what, int line) {
  check::record(got == want, __FILE__, line, "%s: got %s, want %s", what.c_str(), show(got).c_str(), show(want).c_str());
}

std::vector<int32_t> encode(const embedq::Tokenizer& t, std::string_view text) {
  std::vector<int32_t> out;
  t.encode(text, out);
  return out;
}

// ---------------------------------------------------------------- WordPiece

// GGUF-form vocabulary: "\u2581x" is HF's word-initial "x", a bare "x" is HF's "##x".
#define WS "\xE2\x96\x81"
const std::vector<std::string> kVocab = {
    "[PAD]",       // 0
    "[UNK]",       // 1
    "[CLS]",       // 2
    "[SEP]",       // 3
    "[MASK]",      // 4
    WS "hello",    // 5
    WS "world",    // 6
    WS "un",       // 7
    "aff",         // 8
    "able",        // 9
    WS "cafe",     // 10
    WS ",",        // 11
    WS "!",        // 12
    WS ".",        // 13
    WS "\xE4\xB8\xAD",  // 14 中
    WS "\xE6\x96\x87",  // 15 文
    WS "naive",    // 16
    WS "a",        // 17
    "a",           // 18 ##a
    "world",       // 19 ##world
    WS "istanbul", // 20
    WS "[",        // 21
    WS "]",        // 22
    WS "cls",      // 23
    "[unused0]",   // 24: a bracketed name that is not a special token
    WS "\xCF\x83",      // 25 σ
    WS "\xCF\x82",      // 26 ς
    WS "\xE1\x84\x92",  // 27 ᄒ (Hangul choseong hieuh)
    "\xE1\x85\xA1",     // 28 ##ᅡ (jungseong a)
    "\xE1\x86\xAB",     // 29 ##ᆫ (jongseong nieun)
    WS "caf\xC3\xA9",   // 30 café (only reachable without accent stripping)
    WS "\xC3\xA9",      // 31 é
    WS "i\xCC\x87",     // 32 i + combining dot above
    WS "x",        // 33
    WS "\xE2\x80\xA6",  // 34 … (general punctuation)
};
#undef WS

constexpr int32_t kUnk = 1;

std::unique_ptr<embedq::Tokenizer> bert(embedq::WordPieceOptions opts = {}) {
  return embedq::make_wordpiece(kVocab, kUnk, opts);
}

#define EXPECT_IDS(tok, text, ...) \
  check_eq(encode(*(tok), text), std::vector<int32_t>{__VA_ARGS__}, std::string("encode \"") + (text) + "\"", __LINE__)
#define EXPECT_NONE(tok, text) \
  check_eq(encode(*(tok), text), std::vector<int32_t>{}, std::string("encode \"") + (text) + "\"", __LINE__)

void wordpiece_basic() {
  auto t = bert();
  CHECK(t->vocab_size() == kVocab.size());
  EXPECT_IDS(t, "hello world", 5, 6);
  EXPECT_IDS(t, "Hello, World!", 5, 11, 6, 12);
  EXPECT_IDS(t, "HELLO...", 5, 13, 13, 13);
  EXPECT_IDS(t, "unaffable", 7, 8, 9);
  EXPECT_IDS(t, "UnAffAble unaff", 7, 8, 9, 7, 8);
  EXPECT_NONE(t, "");
  EXPECT_NONE(t, "   \t\r\n ");
  // Appends rather than overwrites.
  std::vector<int32_t> out{99};
  t->encode("hello", out);
  check_eq(out, std::vector<int32_t>{99, 5}, "encode appends", __LINE__);
}

void wordpiece_unknown() {
  auto t = bert();
  EXPECT_IDS(t, "xyz", kUnk);
  // One unmatched remainder turns the whole word into a single [UNK].
  EXPECT_IDS(t, "helloq", kUnk);
  EXPECT_IDS(t, "helloq world", kUnk, 6);
  EXPECT_IDS(t, "helloworld", 5, 19);
  // 100 characters is the limit; one more and the word is [UNK] whole.
  std::vector<int32_t> hundred{17};
  hundred.insert(hundred.end(), 99, 18);
  check_eq(encode(*t, std::string(100, 'a')), hundred, "100 x a", __LINE__);
  EXPECT_IDS(t, std::string(101, 'a'), kUnk);
  EXPECT_IDS(t, std::string(5000, 'a') + " hello", kUnk, 5);
  // The limit counts normalized characters: accents stripped first.
  std::string decomposed;
  for (int i = 0; i < 100; ++i) decomposed += "a\xCC\x81";  // a + U+0301, 200 code points
  check_eq(encode(*t, decomposed), hundred, "100 x a+acute", __LINE__);
  std::string wide;
  for (int i = 0; i < 101; ++i) wide += "\xC3\xA1";  // á x 101
  EXPECT_IDS(t, wide, kUnk);
}

void wordpiece_accents_and_case() {
  auto t = bert();
  EXPECT_IDS(t, "Caf\xC3\xA9", 10);             // precomposed é
  EXPECT_IDS(t, "Cafe\xCC\x81", 10);            // e + U+0301
  EXPECT_IDS(t, "NA\xC3\x8FVE", 16);            // NAÏVE
  EXPECT_IDS(t, "\xC3\xA9", kUnk);  // é alone strips to "e", not in vocab
  EXPECT_IDS(t, "e\xCC\x81\xCC\x81\xCC\x81 hello", kUnk, 5);
  // İ: NFD gives I + U+0307, the mark is stripped, then I lowercases.
  EXPECT_IDS(t, "\xC4\xB0stanbul", 20);
  EXPECT_IDS(t, "ISTANBUL", 20);
  // Greek capital sigma lowercases to σ even word-finally (no context rule).
  EXPECT_IDS(t, "\xCE\xA3", 25);
  // Hangul syllables decompose algorithmically into conjoining jamo.
  EXPECT_IDS(t, "\xED\x95\x9C", 27, 28, 29);  // 한
  // A combining mark with no base is simply dropped.
  EXPECT_IDS(t, "\xCC\x81 hello", 5);
}

void wordpiece_cjk_and_punctuation() {
  auto t = bert();
  EXPECT_IDS(t, "\xE4\xB8\xAD\xE6\x96\x87", 14, 15);                 // 中文: one word per ideograph
  EXPECT_IDS(t, "hello\xE4\xB8\xAD" "world", 5, 14, 6);
  EXPECT_IDS(t, "hello\xE2\x80\xA6world", 5, 34, 6);                 // … is Unicode punctuation
  EXPECT_IDS(t, "hello\xC2\xA1", 5, kUnk);                           // ¡: isolated, not in vocab
  EXPECT_IDS(t, "hello\xE3\x80\x82world", 5, kUnk, 6);               // 。 ideographic full stop
  EXPECT_IDS(t, "!!!", 12, 12, 12);
  EXPECT_IDS(t, "$", kUnk);                                          // ASCII symbol counts as punctuation
  EXPECT_IDS(t, "a$a", 17, kUnk, 17);
}

void wordpiece_whitespace_and_control() {
  auto t = bert();
  EXPECT_IDS(t, "hello\tworld\n", 5, 6);
  EXPECT_IDS(t, "hello\xC2\xA0world", 5, 6);          // NBSP
  EXPECT_IDS(t, "hello\xE3\x80\x80world", 5, 6);      // ideographic space
  EXPECT_IDS(t, "hello\xE2\x80\xA8world", 5, 6);      // line separator
  // Controls and format characters vanish without splitting the word.
  EXPECT_IDS(t, std::string("hel\0lo", 6), 5);
  EXPECT_IDS(t, "hello\x0bworld", 5, 19);             // VT is Cc: removed, not a space
  EXPECT_IDS(t, "hello\xC2\x85world", 5, 19);         // NEL likewise
  EXPECT_IDS(t, "hello\xE2\x80\x8Bworld", 5, 19);     // zero width space (Cf)
  EXPECT_IDS(t, "hello\xC2\xAD" "world", 5, 19);      // soft hyphen (Cf)
  EXPECT_IDS(t, "\xEF\xBB\xBFhello", 5);              // byte order mark
  EXPECT_IDS(t, "hello\xEE\x80\x80world", 5, 19);     // private use
  EXPECT_IDS(t, "hello\x7f", 5);
}

void wordpiece_invalid_utf8() {
  auto t = bert();
  // Bad bytes decode to U+FFFD, which clean_text removes.
  EXPECT_IDS(t, "hello\xFFworld", 5, 19);
  EXPECT_IDS(t, "hello\xC0\xAFworld", 5, 19);         // overlong '/'
  EXPECT_IDS(t, "hello\xED\xA0\x80world", 5, 19);     // encoded surrogate
  EXPECT_IDS(t, "hello\xF4\x90\x80\x80world", 5, 19); // above U+10FFFF
  EXPECT_IDS(t, "hello\xE4\xB8", 5);                  // truncated at the end
  EXPECT_IDS(t, "\xE4\xB8hello", 5);                  // truncated, then ASCII
  EXPECT_NONE(t, "\x80\x80\x80");
  // A literal U+FFFD is removed too.
  EXPECT_IDS(t, "hello\xEF\xBF\xBDworld", 5, 19);
}

// Random byte soup (mostly ill-formed UTF-8): ids stay in range, and since
// clean_text deletes U+FFFD, dropping the bad bytes up front changes nothing.
void wordpiece_random_bytes() {
  namespace uc = embedq::unicode;
  auto t = bert();
  const char alphabet[] = "ab hello\xC3\xA9\xCC\x81\xE4\xB8\xAD\xF0\x9F\x98\x80\x80\xBF\xFF\xC0\xED\xA0!,.\t\x00";
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  bool in_range = true, same = true;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const size_t len = next() % 40;
    for (size_t i = 0; i < len; ++i) s.push_back(alphabet[(next() >> 8) % (sizeof alphabet - 1)]);
    std::string cleaned;
    for (size_t pos = 0; pos < s.size();) {
      const char32_t cp = uc::utf8_decode(s, pos);
      if (cp != uc::kReplacementChar) uc::utf8_append(cleaned, cp);
    }
    const auto ids = encode(*t, s);
    for (int32_t id : ids) in_range = in_range && id >= 0 && static_cast<size_t>(id) < kVocab.size();
    same = same && ids == encode(*t, cleaned);
  }
  CHECK(in_range);
  CHECK(same);
}

void wordpiece_special_tokens() {
  auto t = bert();
  // HF matches its added special tokens in raw text; so do we.
  EXPECT_IDS(t, "[CLS] hello [SEP]", 2, 5, 3);
  EXPECT_IDS(t, "x[CLS]x", 33, 2, 33);
  EXPECT_IDS(t, "[SEP][MASK][PAD][UNK]", 3, 4, 0, 1);
  EXPECT_IDS(t, "[[CLS]]", 21, 2, 22);
  // Case-sensitive, and only the registered names.
  EXPECT_IDS(t, "[cls]", 21, 23, 22);
  EXPECT_IDS(t, "[unused0]", 21, kUnk, 22);
  EXPECT_IDS(t, "[CLS", 21, 23);
  // Segments around a special are normalized independently.
  EXPECT_IDS(t, "hello[SEP]world", 5, 3, 6);
}

// encode_spans: the same ids as encode, each with the bytes of the raw text it came from.
std::vector<std::pair<uint32_t, uint32_t>> spans_of(const embedq::Tokenizer& t, std::string_view text,
                                                    std::vector<int32_t>* ids_out = nullptr) {
  std::vector<int32_t> ids;
  std::vector<embedq::TokenSpan> spans;
  CHECK(t.encode_spans(text, ids, spans));
  CHECK(ids.size() == spans.size());
  if (ids_out) *ids_out = ids;
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (const auto& s : spans) out.emplace_back(s.begin, s.end);
  return out;
}

#define EXPECT_SPANS(tok, text, ...)                                                             \
  CHECK((spans_of(*(tok), text) == std::vector<std::pair<uint32_t, uint32_t>>{__VA_ARGS__}))

void wordpiece_spans() {
  auto t = bert();
  EXPECT_SPANS(t, "Hello, World!", {0, 5}, {5, 6}, {7, 12}, {12, 13});
  EXPECT_SPANS(t, "  unaffable ", {2, 4}, {4, 7}, {7, 11});
  EXPECT_SPANS(t, "Caf\xC3\xA9 Cafe\xCC\x81!", {0, 5}, {6, 10}, {12, 13});  // é: 2 bytes; a stripped mark is in no token, as in HF
  EXPECT_SPANS(t, "\xE4\xB8\xAD\xE6\x96\x87", {0, 3}, {3, 6});              // CJK: one token per ideograph
  EXPECT_SPANS(t, "\xED\x95\x9C", {0, 3}, {0, 3}, {0, 3});                     // 한: three jamo of one syllable
  EXPECT_SPANS(t, "x[CLS]helloq", {0, 1}, {1, 6}, {6, 12});                     // special; [UNK] covers its word
  EXPECT_SPANS(t, "\xC4\xB0stanbul", {0, 9});                                   // İ: 2 bytes, stripped and lowered
  EXPECT_SPANS(t, "");
  // Random byte soup: the ids are encode()'s, and every span is a non-empty range inside the text.
  const char alphabet[] = "ab hello\xC3\xA9\xCC\x81\xE4\xB8\xAD\xF0\x9F\x98\x80\x80\xBF\xFF[CLS]!,.\t";
  uint32_t state = 777;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  bool same = true, inside = true;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s;
    const size_t len = next() % 40;
    for (size_t i = 0; i < len; ++i) s.push_back(alphabet[(next() >> 8) % (sizeof alphabet - 1)]);
    std::vector<int32_t> ids;
    const auto spans = spans_of(*t, s, &ids);
    same = same && ids == encode(*t, s);
    for (const auto& sp : spans) inside = inside && sp.first < sp.second && sp.second <= s.size();
  }
  CHECK(same);
  CHECK(inside);
}

void wordpiece_options() {
  embedq::WordPieceOptions keep_accents;
  keep_accents.strip_accents = false;
  auto t = bert(keep_accents);
  EXPECT_IDS(t, "CAF\xC3\x89", 30);       // É lowercases to é, kept
  EXPECT_IDS(t, "\xC4\xB0", 32);           // İ lowercases to i + U+0307
  EXPECT_IDS(t, "Cafe\xCC\x81", kUnk);    // no NFC: stays e + U+0301, not in vocab

  embedq::WordPieceOptions cased;
  cased.lowercase = false;
  cased.strip_accents = false;
  auto c = bert(cased);
  EXPECT_IDS(c, "Hello hello", kUnk, 5);

  embedq::WordPieceOptions no_clean;
  no_clean.clean_text = false;
  auto n = bert(no_clean);
  EXPECT_IDS(n, std::string("hel\0lo", 6), kUnk);
  EXPECT_IDS(n, "hello\x0bworld", 5, 6);   // VT survives and is white space

  embedq::WordPieceOptions no_cjk;
  no_cjk.handle_chinese_chars = false;
  auto k = bert(no_cjk);
  EXPECT_IDS(k, "\xE4\xB8\xAD\xE6\x96\x87", kUnk);  // one word 中文, no ##文
}

void wordpiece_bad_vocab() {
  bool threw = false;
  try {
    embedq::make_wordpiece(kVocab, static_cast<int32_t>(kVocab.size()), {});
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {
    embedq::make_wordpiece({}, 0, {});
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  // Without word-initial pieces every word is unknown, but nothing breaks.
  auto t = embedq::make_wordpiece({"[UNK]", "x"}, 0, {});
  EXPECT_IDS(t, "x x", 0, 0);
}

// ------------------------------------------------------------ SentencePiece
// (sentencepiece_* cases: Gemma-style BPE as HF runs it; real-vocabulary parity
// is tested from Python in tests/test_tokenizer_gemma.py)

#define SP "\xE2\x96\x81"  // U+2581

// A hand-made vocabulary; add() returns the new id.
struct SpVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  int32_t add(const std::string& text, float score, int32_t type = 1) {
    tokens.push_back(text);
    scores.push_back(score);
    types.push_back(type);
    return static_cast<int32_t>(tokens.size() - 1);
  }
  void add_bytes() {
    char name[8];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      add(name, 0.f, 6);
    }
  }
  std::unique_ptr<embedq::Tokenizer> make(int32_t unk = 0) const {
    return embedq::make_sentencepiece(tokens, scores, types, unk);
  }
};

void sentencepiece_spaces_and_merges() {
  SpVocab v;
  const int32_t unk = v.add("<unk>", 0.f, 2);
  const int32_t a = v.add("a", -10.f), b = v.add("b", -11.f), c = v.add("c", -12.f), ws = v.add(SP, -13.f);
  const int32_t ab = v.add("ab", -1.f), bc = v.add("bc", -2.f), ws_a = v.add(SP "a", -3.f), abc = v.add("abc", -20.f);
  auto t = v.make(unk);
  CHECK(t->vocab_size() == v.tokens.size());
  // No dummy prefix: a leading word gets no U+2581.
  EXPECT_IDS(t, "ab", ab);
  EXPECT_IDS(t, " a", ws_a);
  EXPECT_IDS(t, "a a", a, ws_a);
  EXPECT_IDS(t, "a  ", a, ws, ws);
  // The better-scored merge wins, even though it sits to the right.
  EXPECT_IDS(t, "bcab", bc, ab);
  EXPECT_IDS(t, "abc", abc);  // ab first, then ab+c
  EXPECT_IDS(t, "cbc", c, bc);
  EXPECT_NONE(t, "");
  std::vector<int32_t> out{99};
  t->encode("ab", out);
  check_eq(out, std::vector<int32_t>{99, ab}, "encode appends", __LINE__);
  (void)b;
}

// HF ranks merges by (score desc, chars in left desc, chars in right desc,
// piece id) and applies equal merges left to right.
void sentencepiece_merge_ties() {
  {
    // The score decides before anything else, here against piece ids and position.
    SpVocab v;
    v.add("<unk>", 0.f, 2);
    const int32_t a = v.add("a", -10.f), b = v.add("b", -10.f), c = v.add("c", -10.f);
    const int32_t ab = v.add("ab", -2.f), bc = v.add("bc", -1.f);
    auto t = v.make();
    EXPECT_IDS(t, "abc", a, bc);
    EXPECT_IDS(t, "abcab", a, bc, ab);
    (void)b, (void)c;
  }
  {
    SpVocab v;
    v.add("<unk>", 0.f, 2);
    const int32_t a = v.add("a", -10.f);
    const int32_t aa = v.add("aa", -1.f);
    auto t = v.make();
    EXPECT_IDS(t, "aaa", aa, a);  // leftmost first
    EXPECT_IDS(t, "aaaaa", aa, aa, a);
  }
  {
    // Same score, same part lengths: the lower piece id merges first.
    SpVocab v;
    v.add("<unk>", 0.f, 2);
    const int32_t a = v.add("a", -10.f), b = v.add("b", -10.f), c = v.add("c", -10.f);
    const int32_t bc = v.add("bc", -1.f), ab = v.add("ab", -1.f);
    auto t = v.make();
    EXPECT_IDS(t, "abc", a, bc);
    (void)b, (void)c, (void)ab;
  }
  {
    // Same score: a longer left part beats a lower piece id.
    SpVocab v;
    v.add("<unk>", 0.f, 2);
    const int32_t a = v.add("a", -10.f), b = v.add("b", -10.f), c = v.add("c", -10.f);
    const int32_t aa = v.add("aa", 0.f), bc = v.add("bc", -3.f), aab = v.add("aab", -3.f);
    auto t = v.make();
    EXPECT_IDS(t, "aabc", aab, c);
    (void)a, (void)b, (void)aa, (void)bc;
  }
  {
    // Same score and left part: a longer right part beats a lower piece id.
    SpVocab v;
    v.add("<unk>", 0.f, 2);
    const int32_t a = v.add("a", -10.f), b = v.add("b", -10.f), c = v.add("c", -10.f);
    const int32_t cc = v.add("cc", 0.f), ab = v.add("ab", -3.f), bcc = v.add("bcc", -3.f);
    auto t = v.make();
    EXPECT_IDS(t, "abcc", a, bcc);
    (void)b, (void)c, (void)cc, (void)ab;
  }
}

// Control/user-defined pieces are cut out of the raw text (leftmost-longest,
// before spaces become U+2581); user-defined pieces rank their merges as score 0
// whatever the GGUF stores (llama.cpp writes -1000 and spaces for U+2581).
void sentencepiece_added_tokens() {
  SpVocab v;
  v.add("<unk>", 0.f, 2);
  const int32_t bos = v.add("<bos>", -1000.f, 3);
  const int32_t sot = v.add("<start_of_turn>", -1000.f, 4);
  const int32_t st = v.add("<start", -1000.f, 4);
  const int32_t nl = v.add("\n", -1000.f, 4), nl2 = v.add("\n\n", -1000.f, 4);
  const int32_t ws2 = v.add("  ", -1000.f, 4);  // converter's form of "▁▁"
  const int32_t ws_t = v.add(SP "t", 0.f);
  const int32_t ws = v.add(SP, -5.f), t_ = v.add("t", -6.f), lt = v.add("<", -7.f), x = v.add("x", -8.f);
  auto t = v.make();
  EXPECT_IDS(t, "<bos>", bos);
  EXPECT_IDS(t, "x<bos>x", x, bos, x);
  EXPECT_IDS(t, " <bos> ", ws, bos, ws);
  EXPECT_IDS(t, "<start_of_turn>x<start", sot, x, st);
  EXPECT_IDS(t, "\n\n\n", nl2, nl);
  EXPECT_IDS(t, "<<bos>", lt, bos);
  // Two spaces: the ▁▁ merge (score 0, lower id) beats ▁t (score 0).
  EXPECT_IDS(t, "  t", ws2, t_);
  EXPECT_IDS(t, " t", ws_t);
  // A literal "▁▁" in the text is the added token itself.
  EXPECT_IDS(t, "x" SP SP "x", x, ws2, x);
  EXPECT_IDS(t, "x " SP "x", x, ws2, x);  // via the merge after normalization
}

void sentencepiece_byte_fallback() {
  SpVocab v;
  const int32_t unk = v.add("<unk>", 0.f, 2);
  v.add_bytes();
  const int32_t a = v.add("a", -1.f);
  const int32_t ws_a = v.add(SP "a", -2.f);
  v.add(SP, -4.f);
  const int32_t h_b = v.add("<0x", -3.f);  // bytes pieces never merge into anything
  auto t = v.make(unk);
  const int32_t b0 = 1;  // id of <0x00>
  // é = C3 A9; the space before it still gets its own piece.
  EXPECT_IDS(t, "a\xC3\xA9", a, b0 + 0xC3, b0 + 0xA9);
  EXPECT_IDS(t, " a\xF0\x9F\x98\x80", ws_a, b0 + 0xF0, b0 + 0x9F, b0 + 0x98, b0 + 0x80);
  EXPECT_IDS(t, "<0x61>", b0 + '<', b0 + '0', b0 + 'x', b0 + '6', b0 + '1', b0 + '>');
  // Ill-formed UTF-8 becomes U+FFFD (EF BF BD) first.
  EXPECT_IDS(t, "a\xFF" "a", a, b0 + 0xEF, b0 + 0xBF, b0 + 0xBD, a);
  EXPECT_IDS(t, "\xE2\x82", b0 + 0xEF, b0 + 0xBF, b0 + 0xBD);
  (void)h_b;

  // A space with no U+2581 piece falls back to the bytes of U+2581, not of ' '.
  SpVocab nb;
  nb.add("<unk>", 0.f, 2);
  nb.add_bytes();
  auto s = nb.make();
  EXPECT_IDS(s, " ", b0 + 0xE2, b0 + 0x96, b0 + 0x81);

  // Without byte pieces, runs of unknown characters fuse into one <unk>.
  SpVocab w;
  const int32_t u = w.add("<unk>", 0.f, 2);
  const int32_t wa = w.add("a", -1.f);
  auto n = w.make(u);
  EXPECT_IDS(n, "a\xC3\xA9\xC3\xA9" "a\xC3\xA9", wa, u, wa, u);
}

// Merging each ▁-word on its own must not split a piece that holds U+2581
// after another character (Gemma's ">▁</").
void sentencepiece_words() {
  SpVocab v;
  v.add("<unk>", 0.f, 2);
  const int32_t gt = v.add(">", -5.f), lt = v.add("<", -6.f), sl = v.add("/", -7.f), ws = v.add(SP, -8.f);
  const int32_t y = v.add("y", -9.f), ws_y = v.add(SP "y", -4.f);
  const int32_t gw = v.add(">" SP, -3.f), gwl = v.add(">" SP "<", -2.f), tag = v.add(">" SP "</", -1.f);
  auto t = v.make();
  EXPECT_IDS(t, "> </", tag);
  EXPECT_IDS(t, "y> </y", y, tag, y);
  EXPECT_IDS(t, "y y", y, ws_y);
  EXPECT_IDS(t, "y  y", y, ws, ws_y);
  // Repeated words come from the per-thread cache and must not leak across vocabularies.
  SpVocab w;
  w.add("<unk>", 0.f, 2);
  const int32_t wy = w.add("y", -1.f), wws = w.add(SP, -2.f);
  auto u = w.make();
  for (int i = 0; i < 3; ++i) {
    EXPECT_IDS(t, "y y", y, ws_y);
    EXPECT_IDS(u, "y y", wy, wws, wy);
  }
  (void)gt, (void)lt, (void)sl, (void)gw, (void)gwl;
}

// Long inputs: one 100k-character word and many short ones; linear-ish work.
void sentencepiece_long_input() {
  SpVocab v;
  v.add("<unk>", 0.f, 2);
  const int32_t a = v.add("a", -10.f);
  v.add("aa", -3.f);
  v.add("aaaa", -2.f);
  const int32_t a8 = v.add("aaaaaaaa", -1.f);
  const int32_t ws = v.add(SP, -11.f);
  auto t = v.make();
  auto ids = encode(*t, std::string(100001, 'a'));
  CHECK(ids.size() == 12501 && ids.front() == a8 && ids.back() == a);
  std::string many;
  for (int i = 0; i < 20000; ++i) many += " aaaaaaaa";
  ids = encode(*t, many);
  bool alternating = ids.size() == 40000;
  for (size_t i = 0; alternating && i < ids.size(); ++i) alternating = ids[i] == (i % 2 ? a8 : ws);
  CHECK(alternating);
}

void sentencepiece_bad_vocab() {
  auto throws = [](const std::vector<std::string>& tok, const std::vector<float>& sc, const std::vector<int32_t>& ty,
                   int32_t unk) {
    try {
      embedq::make_sentencepiece(tok, sc, ty, unk);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  CHECK(throws({}, {}, {}, -1));
  CHECK(throws({"a", "b"}, {0.f}, {1, 1}, -1));
  CHECK(throws({"a"}, {0.f}, {9}, -1));
  CHECK(throws({"a"}, {0.f}, {1}, 3));
  CHECK(throws({"a"}, {std::stof("nan")}, {1}, -1));
  // No <unk> and no byte pieces: a character without a piece is an error, not a crash.
  auto t = embedq::make_sentencepiece({"a"}, {0.f}, {1}, -1);
  bool threw = false;
  try {
    encode(*t, "b");
  } catch (const std::runtime_error&) {
    threw = true;
  }
  CHECK(threw);
}
#undef SP

// ------------------------------------------------------------ Unicode utils

void unicode_utf8() {
  namespace uc = embedq::unicode;
  const std::u32string cps = {0x41, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFD, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF};
  const std::string enc = uc::utf32_to_utf8(cps);
  CHECK(enc.size() == 1 + 1 + 2 + 2 + 3 + 3 + 3 + 4 + 4 + 4);
  check_eq(uc::utf8_to_utf32(enc), cps, "utf-8 round trip", __LINE__);
  CHECK(uc::utf8_is_valid(enc));
  CHECK(uc::utf8_length(enc) == cps.size());
  // Ill-formed input: one U+FFFD per maximal subpart, as Python's "replace".
  const std::u32string r = U"\uFFFD";
  check_eq(uc::utf8_to_utf32("\xF0\x80\x80"), r + r + r, "F0 80 80", __LINE__);
  check_eq(uc::utf8_to_utf32("\xE2\x82"), r, "E2 82", __LINE__);
  check_eq(uc::utf8_to_utf32("\xED\xA0\x80"), r + r + r, "ED A0 80", __LINE__);
  check_eq(uc::utf8_to_utf32("\xF4\x90\x80\x80"), r + r + r + r, "F4 90 80 80", __LINE__);
  check_eq(uc::utf8_to_utf32("\xC0\xAF"), r + r, "C0 AF", __LINE__);
  check_eq(uc::utf8_to_utf32("\xE2\x82\xACx\xE2\x82"), std::u32string(U"\u20ACx") + r, "euro x E2 82", __LINE__);
  check_eq(uc::utf8_to_utf32("\xF0\x9F\x98"), r, "truncated emoji", __LINE__);
  CHECK(!uc::utf8_is_valid("\xC0\xAF"));
  CHECK(!uc::utf8_is_valid("abc\xE2\x82"));
  CHECK(uc::utf8_is_valid("\xEF\xBF\xBD"));
  CHECK(uc::utf8_sequence_length(0x41) == 1 && uc::utf8_sequence_length(0x80) == 0 &&
        uc::utf8_sequence_length(0xC1) == 0 && uc::utf8_sequence_length(0xC2) == 2 &&
        uc::utf8_sequence_length(0xE0) == 3 && uc::utf8_sequence_length(0xF4) == 4 &&
        uc::utf8_sequence_length(0xF5) == 0);
  char buf[4];
  CHECK(uc::utf8_encode(0xD800, buf) == 3 && uc::utf32_to_utf8(U"\uFFFD") == std::string(buf, 3));
  CHECK(uc::utf8_encode(0x110000, buf) == 3);
}

void unicode_properties() {
  namespace uc = embedq::unicode;
  CHECK(std::string(uc::unicode_version()) == "14.0.0");
  CHECK(uc::char_info(' ').flags & uc::kWhitespace);
  CHECK(uc::char_info(0x3000).flags & uc::kWhitespace);
  CHECK(!(uc::char_info(0x200B).flags & uc::kWhitespace));
  CHECK(uc::char_info(0x200B).flags & uc::kControl);
  CHECK(uc::char_info('$').flags & uc::kPunct);
  CHECK(uc::char_info(0x3002).flags & uc::kPunct);
  CHECK(uc::char_info(0x0301).flags & uc::kMark);
  CHECK(uc::char_info(0x0301).ccc == 230);
  CHECK(uc::char_info(0x4E00).flags & uc::kCjk);
  CHECK(!(uc::char_info(0x3042).flags & uc::kCjk));  // hiragana is not padded
  CHECK(uc::char_info(0xE9).flags & uc::kDecomposes);
  CHECK(uc::char_info(0xAC00).flags & uc::kDecomposes);
  CHECK(uc::char_info(0x10FFFF).flags == 0);
  CHECK(uc::char_info(0x110000).flags == 0);
  // HF's category tables are Unicode 8.0: U+2E43 (added in 9.0) is no punctuation there.
  CHECK(!(uc::char_info(0x2E43).flags & uc::kPunct));

  char32_t out[uc::kMaxDecomposition];
  CHECK(uc::canonical_decompose(0x1E09, out) == 3 && out[0] == 'c' && out[1] == 0x327 && out[2] == 0x301);
  CHECK(uc::canonical_decompose(0xD4DB, out) == 3 && out[0] == 0x1111 && out[1] == 0x1171 && out[2] == 0x11B6);
  CHECK(uc::canonical_decompose(0xAC00, out) == 2 && out[0] == 0x1100 && out[1] == 0x1161);
  CHECK(uc::canonical_decompose('a', out) == 1 && out[0] == 'a');
  check_eq(uc::nfd(U"a\u0315\u0300\u05AE\u0301b"), std::u32string(U"a\u05AE\u0300\u0301\u0315b"), "canonical order",
           __LINE__);
  check_eq(uc::nfd(U"\u1E0B\u0323"), std::u32string(U"d\u0323\u0307"), "ḋ + dot below", __LINE__);
  check_eq(uc::nfd(U"\u212B"), std::u32string(U"A\u030A"), "angstrom sign", __LINE__);

  char32_t low[uc::kMaxLowercase];
  CHECK(uc::to_lower(0x130, low) == 2 && low[0] == 'i' && low[1] == 0x307);
  CHECK(uc::to_lower(0x3A3, low) == 1 && low[0] == 0x3C3);
  CHECK(uc::to_lower(0x1E9E, low) == 1 && low[0] == 0xDF);
  CHECK(uc::to_lower(0x10400, low) == 1 && low[0] == 0x10428);
  CHECK(uc::to_lower(0x100, low) == 1 && low[0] == 0x101);
  CHECK(uc::to_lower(0x101, low) == 1 && low[0] == 0x101);
  CHECK(uc::to_lower('Z', low) == 1 && low[0] == 'z');
  CHECK(uc::to_lower(0xA7CB, low) == 1 && low[0] == 0x264);  // Unicode 16 letter, as Rust lowercases it
}

}  // namespace

int main() {
  wordpiece_basic();
  wordpiece_spans();
  wordpiece_unknown();
  wordpiece_accents_and_case();
  wordpiece_cjk_and_punctuation();
  wordpiece_whitespace_and_control();
  wordpiece_invalid_utf8();
  wordpiece_random_bytes();
  wordpiece_special_tokens();
  wordpiece_options();
  wordpiece_bad_vocab();
  unicode_utf8();
  unicode_properties();
  // ---- sentencepiece cases (sentencepiece.cpp owner) ----
  sentencepiece_spaces_and_merges();
  sentencepiece_merge_ties();
  sentencepiece_added_tokens();
  sentencepiece_byte_fallback();
  sentencepiece_words();
  sentencepiece_long_input();
  sentencepiece_bad_vocab();
  // ---- end sentencepiece cases ----
  return report();
}
