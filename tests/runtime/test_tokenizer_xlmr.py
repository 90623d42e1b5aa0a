"""The C++ Unigram tokenizer must give exactly the ids sentence-transformers feeds an
XLM-RoBERTa model: what transformers' XLMRobertaTokenizerFast produces (added tokens, the
SentencePiece precompiled charsmap, white-space split, U+2581 prefix, Viterbi over piece
scores, <s> ... </s>). The tokenizer is a small Unigram model trained here with
sentencepiece on the multilingual corpus, with nmt_nfkc normalization, so a real charsmap
(NFKC plus SentencePiece's whitespace and control rules) is in play; no XLM-R model
file is reachable offline.

Checked on purpose: the corpus (with its edge cases), specials typed in text, runs of
white space, the charsmap against HF's own Precompiled normalizer on every code point
and on random combining sequences, random multilingual text, and truncation."""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native import Model, _native

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def model(xlmr_mean_gguf) -> Model:
    return Model(xlmr_mean_gguf, threads=1)


@pytest.fixture(scope="module")
def charsmap(xlmr_mean_dir) -> bytes:
    tj = json.loads((xlmr_mean_dir / "tokenizer.json").read_text(encoding="utf-8"))
    blob = base64.b64decode(tj["normalizer"]["precompiled_charsmap"])
    assert len(blob) > 100_000  # nmt_nfkc's table, not an empty one
    return blob


def hf_ids(tok, text: str) -> list[int]:
    return tok(text)["input_ids"]


def assert_same(model, tok, text: str) -> None:
    ours, theirs = model.tokenize(text), hf_ids(tok, text)
    assert ours == theirs, f"{text[:80]!r}: ours {ours[:30]} vs HF {theirs[:30]}"


def test_reference_is_xlmroberta_fast(xlmr_hf_tokenizer, xlmr_mean_dir):
    from transformers import XLMRobertaTokenizerFast

    assert isinstance(xlmr_hf_tokenizer, XLMRobertaTokenizerFast)
    assert xlmr_hf_tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert xlmr_hf_tokenizer.mask_token_id == len(xlmr_hf_tokenizer) - 1


def test_corpus_matches_hf(model, xlmr_hf_tokenizer, corpus):
    mismatches = []
    for text in corpus:
        ours, theirs = model.tokenize(text), hf_ids(xlmr_hf_tokenizer, text)
        if ours != theirs:
            mismatches.append((text[:60], ours[:20], theirs[:20]))
    assert len(corpus) > 300
    assert not mismatches, f"{len(mismatches)}/{len(corpus)} texts differ, e.g. {mismatches[:3]}"


def test_corpus_exercises_unknowns_and_normalization(model, corpus, charsmap):
    # The comparison above means little unless <unk> and charsmap rewrites occur in it.
    unk = sum(model.tokenize(t).count(3) for t in corpus)
    rewritten = sum(_native.charsmap_normalize(charsmap, t) != t for t in corpus)
    assert unk > 10 and rewritten > 20, (unk, rewritten)


@pytest.mark.parametrize("text", [
    "", " ", "\t\n", "<s>", "</s>", "<pad>", "<unk>", "<mask>",
    "a<mask>b", "a <mask> b", "a \t\u3000<mask>b", "<s> <mask> </s>", "x<s>y</s>z", "<s", "<<mask>>", "<MASK>", "＜s＞ fullwidth specials ＜mask＞",
    "trailing space ", "  leading", "many     spaces\u3000ideographic\u00a0nbsp",
    "\u2581 literal U+2581 \u2581\u2581x", "a\u2581b",
    "ﬁ ligature, ① circled, Ａ fullwidth, ｶﾞ halfwidth kana, ㍿ square",
    "e\u0301 a\u0308\u0301 \u0301lone", "\ufeffbom \u200bzero\u200dwidth",
])
def test_edge_texts(model, xlmr_hf_tokenizer, text):
    assert_same(model, xlmr_hf_tokenizer, text)


def test_truncation_matches_hf(model, xlmr_hf_tokenizer, corpus):
    # Model.encode is what the forward pass sees: cut at max_tokens, </s> kept last.
    long = [t for t in corpus if len(hf_ids(xlmr_hf_tokenizer, t)) > model.max_tokens]
    assert len(long) >= 5
    enc = model.encode(long)
    offsets = enc.offsets
    for i, text in enumerate(long):
        ref = xlmr_hf_tokenizer(text, truncation=True, max_length=model.max_tokens)["input_ids"]
        assert enc.ids[offsets[i]:offsets[i + 1]].tolist() == ref
    assert enc.n_truncated == len(long)


def test_charsmap_matches_hf_on_every_code_point(charsmap):
    from tokenizers.normalizers import Precompiled

    hf = Precompiled(charsmap)
    # Chunks of single characters, each followed by "|" so no cluster spans two of them.
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    bad = []
    for k in range(0, len(cps), 4096):
        text = "".join(chr(c) + "|" for c in cps[k:k + 4096])
        ours, theirs = _native.charsmap_normalize(charsmap, text), hf.normalize_str(text)
        if ours != theirs:
            for c in cps[k:k + 4096]:
                if _native.charsmap_normalize(charsmap, chr(c)) != hf.normalize_str(chr(c)):
                    bad.append(hex(c))
    assert not bad, f"{len(bad)} code points differ, e.g. {bad[:10]}"


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_marks = st.characters(min_codepoint=0x300, max_codepoint=0x36F)
_bases = st.sampled_from(list("aeiouAEIOUnNcCsSzZyY") + ["\u3099", "\u30ab", "\uff76", "\uff9e", "\u1100", "\u1161",
                                                         "\u11a8", "\u0915", "\u094d", "\u0937", "\u200d", " "])


@settings(max_examples=300, **_SETTINGS)
@given(text=st.lists(st.one_of(_bases, _marks, st.characters(blacklist_categories=("Cs",))), max_size=12).map("".join))
def test_charsmap_matches_hf_on_clusters(charsmap, text):
    # Combining sequences, Hangul jamo, conjuncts, halfwidth voiced kana: where the
    # whole-cluster lookup and the grapheme boundaries decide the output.
    from tokenizers.normalizers import Precompiled

    assert _native.charsmap_normalize(charsmap, text) == Precompiled(charsmap).normalize_str(text)


_RANGES = [(0x20, 0x7E), (0x00, 0x1F), (0x80, 0x24F), (0x300, 0x36F), (0x370, 0x52F), (0x590, 0x6FF),
           (0x900, 0xDFF), (0xE00, 0xEFF), (0x2000, 0x2BFF), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
           (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x10000, 0x10FFFF)]
_script_runs = st.one_of([st.text(st.characters(min_codepoint=a, max_codepoint=b, blacklist_categories=("Cs",)),
                                  min_size=1, max_size=12) for a, b in _RANGES])
_separators = st.sampled_from([" ", "  ", "\t", "\n", "\u2581", "\u00a0", "\u3000", "\u200b", "\u0085", ".", "<"])
_specials = st.sampled_from(["<s>", "</s>", "<pad>", "<unk>", "<mask>", "<s", "mask>", "＜ｓ＞"])
_texts = st.lists(st.one_of(_script_runs, _script_runs, _separators, _specials), max_size=25).map("".join)


@settings(max_examples=500, **_SETTINGS)
@given(text=st.one_of(_texts, st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)))
def test_random_text_matches_hf(model, xlmr_hf_tokenizer, text):
    assert_same(model, xlmr_hf_tokenizer, text)


@settings(max_examples=300, **_SETTINGS)
@given(data=st.data())
def test_random_piece_sequences_match_hf(model, xlmr_hf_tokenizer, data):
    # Strings glued from real pieces put competing segmentations side by side.
    vocab = xlmr_hf_tokenizer.convert_ids_to_tokens(list(range(5, len(xlmr_hf_tokenizer) - 1)))
    idx = data.draw(st.lists(st.integers(0, len(vocab) - 1), min_size=1, max_size=15))
    text = "".join(vocab[i] for i in idx)
    assert_same(model, xlmr_hf_tokenizer, text.replace("\u2581", data.draw(st.sampled_from([" ", "", "\u2581"]))))
