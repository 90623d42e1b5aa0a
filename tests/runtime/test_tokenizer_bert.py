"""The C++ WordPiece tokenizer must give exactly HF `tokenizers`' ids for
all-MiniLM-L6-v2: on the multilingual corpus, on generated text from many
scripts, and on the odd corners (specials typed in text, controls, huge words)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native import Model


@pytest.fixture(scope="module")
def bert_model(minilm_gguf) -> Model:
    return Model(minilm_gguf, threads=1)


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    # The stored tokenizer truncates to 128 and pads to 128; Model.tokenize does neither.
    tok.no_truncation()
    tok.no_padding()
    return tok


def hf_ids(tok, text: str) -> list[int]:
    return tok.encode(text).ids


def test_corpus_matches_hf(bert_model, hf_tokenizer, corpus):
    mismatches = []
    for text in corpus:
        ours, theirs = bert_model.tokenize(text), hf_ids(hf_tokenizer, text)
        if ours != theirs:
            mismatches.append((text[:80], ours[:20], theirs[:20]))
    assert len(corpus) > 300
    assert not mismatches, f"{len(mismatches)}/{len(corpus)} texts differ, e.g. {mismatches[:3]}"


def test_adds_cls_sep_and_never_truncates(bert_model, hf_tokenizer):
    text = "tokenizers should not truncate " * 400
    ids = bert_model.tokenize(text)
    assert ids[0] == 101 and ids[-1] == 102
    assert len(ids) > 2000  # far beyond the model's 512-token window
    assert ids == hf_ids(hf_tokenizer, text)
    assert bert_model.tokenize("") == [101, 102]


@pytest.mark.parametrize(
    "text",
    [
        "before [CLS] after",
        "glued[SEP]together",
        "[MASK][PAD][UNK]",
        "[cls] lowercase is text",
        "[unused0] is an ordinary vocabulary entry",
    ],
)
def test_special_tokens_in_text_follow_hf(bert_model, hf_tokenizer, text):
    # HF matches its added special tokens ([CLS], [SEP], [MASK], [PAD], [UNK])
    # anywhere in raw text, case-sensitively; reserved [unusedN] entries are not
    # added tokens and get split like any other text.
    ids = bert_model.tokenize(text)
    assert ids == hf_ids(hf_tokenizer, text)
    inner = ids[1:-1]
    if "[CLS]" in text:
        assert 101 in inner
    if "[cls]" in text or "[unused0]" in text:
        assert not set(inner) & {0, 100, 101, 102, 103}


def test_word_length_limit(bert_model, hf_tokenizer):
    # 100 characters is the longest word WordPiece splits; longer ones are [UNK].
    for n in (99, 100, 101, 250):
        text = "ab" * (n // 2) + "a" * (n % 2)
        assert bert_model.tokenize(text) == hf_ids(hf_tokenizer, text)
    assert bert_model.tokenize("z" * 101) == [101, 100, 102]


# Code point ranges for the generator: each entry draws characters from one
# script (or class of characters) so that words mix scripts, marks, controls
# and punctuation much more densely than uniform sampling over Unicode would.
_RANGES = [
    (0x20, 0x7E),  # ASCII
    (0x00, 0x1F),  # C0 controls
    (0x80, 0x24F),  # Latin-1 + Latin Extended, C1 controls
    (0x300, 0x36F),  # combining diacritics
    (0x370, 0x52F),  # Greek, Cyrillic
    (0x590, 0x6FF),  # Hebrew, Arabic
    (0x900, 0xDFF),  # Indic scripts
    (0xE00, 0xEFF),  # Thai, Lao
    (0x1100, 0x11FF),  # Hangul jamo
    (0x1E00, 0x1FFF),  # Latin/Greek extended (precomposed)
    (0x2000, 0x2BFF),  # general punctuation, symbols, arrows, math
    (0x3000, 0x30FF),  # CJK punctuation, kana
    (0x4E00, 0x9FFF),  # CJK ideographs
    (0xAC00, 0xD7A3),  # Hangul syllables
    (0xE000, 0xF8FF),  # private use
    (0xF900, 0xFFFD),  # compatibility ideographs, presentation forms, specials
    (0x10000, 0x1FFFF),  # SMP: historic scripts, math alphanumerics, emoji
    (0x1F300, 0x1FAFF),  # emoji
    (0x20000, 0x10FFFF),  # everything above, mostly unassigned
]
_script_runs = st.one_of(
    [st.text(st.characters(min_codepoint=a, max_codepoint=b), min_size=1, max_size=12) for a, b in _RANGES]
)
_separators = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u3000", "\u200b", "\u200d", "\ufe0f", ".", ",", "!", "-", "'"])
_specials = st.sampled_from(["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[cls]", "[unused1]", "[", "]", "##"])
_texts = st.lists(st.one_of(_script_runs, _script_runs, _separators, _specials), max_size=30).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(_texts, st.text(max_size=60)))
def test_random_text_matches_hf(bert_model, hf_tokenizer, text):
    assert bert_model.tokenize(text) == hf_ids(hf_tokenizer, text)
