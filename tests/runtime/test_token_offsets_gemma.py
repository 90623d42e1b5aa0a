"""Token offsets of EmbeddingGemma's SentencePiece BPE (what overflow="chunk" cuts its texts by) must be
HF `tokenizers`' offsets, piece for piece: on the multilingual corpus, where "\u2581" stands for a typed
space, for byte-fallback pieces (which cover their whole character), around added tokens typed in the
text, and on generated text."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native import Model

pytestmark = pytest.mark.gemma


@pytest.fixture(scope="module")
def gemma_model(gemma_gguf) -> Model:
    return Model(gemma_gguf, threads=1)


@pytest.fixture(scope="module")
def hf_tokenizer(gemma_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gemma_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def compare(model: Model, tok, text: str):
    ids, offsets = model.token_offsets(text)
    enc = tok.encode(text, add_special_tokens=False)
    assert ids.tolist() == enc.ids, text[:80]
    assert ids.tolist() == model.tokenize(text)[1:-1]
    return [tuple(o) for o in offsets.tolist()], [tuple(o) for o in enc.offsets]


def test_corpus_offsets_match_hf(gemma_model, hf_tokenizer, corpus):
    bad, tokens = [], 0
    for text in corpus:
        ours, theirs = compare(gemma_model, hf_tokenizer, text)
        tokens += len(ours)
        if ours != theirs:
            first = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            bad.append((text[:60], first, ours[first], theirs[first]))
    assert len(corpus) > 300 and tokens > 10_000
    assert not bad, f"{len(bad)}/{len(corpus)} texts differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("text", [
    "Hello world", "  leading and  double  spaces ", "tabs\tand\nnew\n\n\nlines", "a<start_of_turn>b<bos>c",
    "emoji 👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and \U0010fffd", "東京タワー is 333 m tall", "literal \u2581\u2581 marks", "", " ",
    "x" * 300 + " long word",
])
def test_edge_cases_match_hf(gemma_model, hf_tokenizer, text):
    ours, theirs = compare(gemma_model, hf_tokenizer, text)
    assert ours == theirs


def test_offsets_slice_the_text_back(gemma_model):
    text = "Queues batch texts, 東京 too."
    ids, offsets = gemma_model.token_offsets(text)
    pieces = [text[a:b] for a, b in offsets.tolist()]
    assert "".join(pieces) == text  # no normalization but spaces: the pieces tile the text
    assert len(ids) == len(pieces) and gemma_model.special_ids == (2, 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_generated_text_offsets_match_hf(gemma_model, hf_tokenizer, text):
    if "<image_soft_token>" in text:  # an added token HF has and the model's vocabulary lacks
        return
    ours, theirs = compare(gemma_model, hf_tokenizer, text)
    assert ours == theirs
