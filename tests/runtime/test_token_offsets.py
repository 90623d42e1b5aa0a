"""Token offsets (Model.token_offsets, what overflow="chunk" cuts texts by) must be HF `tokenizers`'
offsets for all-MiniLM-L6-v2, character for character: on the multilingual corpus, on generated
text, and where normalization changes lengths (accents, ligature-free expansions, CJK, specials)."""
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
    tok.no_truncation()
    tok.no_padding()
    return tok


def compare(model: Model, tok, text: str):
    ids, offsets = model.token_offsets(text)
    enc = tok.encode(text)
    # HF's encoding has [CLS] ... [SEP] around the text, each at offsets (0, 0).
    assert ids.tolist() == enc.ids[1:-1], text[:80]
    assert ids.tolist() == model.tokenize(text)[1:-1]
    return [tuple(o) for o in offsets.tolist()], [tuple(o) for o in enc.offsets[1:-1]]


def test_corpus_offsets_match_hf(bert_model, hf_tokenizer, corpus):
    bad = []
    tokens = 0
    for text in corpus:
        ours, theirs = compare(bert_model, hf_tokenizer, text)
        tokens += len(ours)
        if ours != theirs:
            first = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            bad.append((text[:60], first, ours[first], theirs[first]))
    assert len(corpus) > 300 and tokens > 10_000
    assert not bad, f"{len(bad)}/{len(corpus)} texts differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("text", [
    "Crème brûlée à la carte", "e\u0301te\u0301 decomposed accents", "İstanbul ΣΊΣΥΦΟΣ straße",
    "東京タワー is 333 m tall", "before [CLS] after glued[SEP]together", "tabs\tand\nnew\u00a0lines  ",
    "z" * 150 + " over-long word", "emoji 👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "unaffable unbelievably", "", "   ",
    "\x00\x01 control chars \u200b zero width",
])
def test_edge_cases_match_hf(bert_model, hf_tokenizer, text):
    ours, theirs = compare(bert_model, hf_tokenizer, text)
    assert ours == theirs


def test_offsets_slice_the_text_back(bert_model):
    # Pieces of a word, accented letters (normalized away, sliced as typed) and CJK characters.
    text = "Tokenizers split words: unbelievably, Crème brûlée, and 東京."
    ids, offsets = bert_model.token_offsets(text)
    assert [text[a:b] for a, b in offsets.tolist()] == [
        "Token", "izer", "s", "split", "words", ":", "un", "bel", "ie", "va", "bly", ",", "Cr", "ème", "br", "ûlé",
        "e", ",", "and", "東", "京", "."]
    assert len(ids) == len(offsets) and bert_model.special_ids == (101, 102)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_generated_text_offsets_match_hf(bert_model, hf_tokenizer, text):
    ours, theirs = compare(bert_model, hf_tokenizer, text)
    assert ours == theirs
