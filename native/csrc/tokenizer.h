// Tokenizers built from a GGUF vocabulary. Both produce ids WITHOUT special
// tokens; the model adds [CLS]/[SEP] or <bos>/<eos> and truncates.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace embedq {

// Where a token came from: bytes [begin, end) of the text given to encode.
struct TokenSpan {
  uint32_t begin = 0, end = 0;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Appends the ids of `text` (UTF-8; invalid bytes are treated as U+FFFD).
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;
  // encode() that also appends, per id, the bytes of `text` it stands for, as HF `tokenizers`
  // reports offsets (a piece of a normalized character covers that whole character). Long texts
  // are cut into windows by these (overflow="chunk"). False, appending nothing, where the
  // tokenizer does not track them.
  virtual bool encode_spans(std::string_view /*text*/, std::vector<int32_t>& /*out*/,
                            std::vector<TokenSpan>& /*spans*/) const {
    return false;
  }
  virtual size_t vocab_size() const = 0;
};

// BERT WordPiece as HF `tokenizers` does it for uncased BERT models
// (BertNormalizer + BertPreTokenizer + WordPiece, max 100 chars per word).
// `tokens` is the vocabulary in llama.cpp's GGUF form: word-initial pieces
// carry a leading U+2581, continuation pieces are bare (HF's "##" removed),
// special tokens look like "[CLS]".
struct WordPieceOptions {
  bool lowercase = true;
  bool strip_accents = true;
  bool handle_chinese_chars = true;
  bool clean_text = true;
};

std::unique_ptr<Tokenizer> make_wordpiece(const std::vector<std::string>& tokens, int32_t unk_id,
                                          const WordPieceOptions& opts);

// Gemma-style SentencePiece BPE: spaces become U+2581, no dummy prefix,
// pieces merged by score, unknown bytes fall back to <0xXX> tokens.
// `types` are GGUF token types (1 normal, 2 unknown, 3 control, 4 user
// defined, 5 unused, 6 byte).
std::unique_ptr<Tokenizer> make_sentencepiece(const std::vector<std::string>& tokens, const std::vector<float>& scores,
                                              const std::vector<int32_t>& types, int32_t unk_id);

// XLM-RoBERTa's SentencePiece Unigram as HF `tokenizers` runs it (see
// unigram.cpp): added tokens, the precompiled charsmap, white-space split,
// U+2581 prefix, Viterbi over `scores` (log-probabilities, kept in double as
// HF keeps them). Types as for make_sentencepiece; `unk_id` is required.
// How HF matches some added tokens (token ids; see added_tokens.h): lstrip / rstrip take the
// white space on that side into the match (XLM-R's <mask>, ModernBERT's [MASK]); normalized
// ones are matched after the others, in the text between them.
struct AddedTokenRules {
  std::vector<int32_t> lstrip, rstrip, normalized;
};

struct UnigramOptions {
  std::string charsmap;  // SentencePiece precompiled charsmap; empty = none
  bool add_space_prefix = true;
  AddedTokenRules added;
};

std::unique_ptr<Tokenizer> make_unigram(const std::vector<std::string>& tokens, const std::vector<double>& scores,
                                        const std::vector<int32_t>& types, int32_t unk_id, const UnigramOptions& opts);

// Byte-level BPE as Qwen2/Qwen3 and ModernBERT use it (see bpe.cpp): added
// tokens (types 3 control, 4 user defined) cut out, NFC (optional), the Qwen2
// or GPT-2 pre-tokenizer regex, bytes
// mapped to printable characters, `merges` ("left right", rank = index)
// applied lowest rank first. Types as for make_sentencepiece; type 5 (unused)
// entries are padding, never produced.
struct ByteBpeOptions {
  enum class Split { QWEN2, GPT2 } split = Split::QWEN2;
  bool nfc = true;
  AddedTokenRules added;
};
std::unique_ptr<Tokenizer> make_byte_bpe(const std::vector<std::string>& tokens, const std::vector<int32_t>& types,
                                         const std::vector<std::string>& merges, const ByteBpeOptions& opts = {});

}  // namespace embedq
