"""One path for a text: Model.encode tokenizes each text exactly once into an
Encoded batch of token ids, and Model.embed_encoded turns ids (never strings)
into vectors. Checked on the real all-MiniLM-L6-v2 F32 GGUF with random texts
and hostile ids."""
from __future__ import annotations

import random

import numpy as np
import pytest

from native import Encoded, Model

WORDS = ("the cat sat on a mat while quarterly revenue grew faster than analysts expected "
         "naïve café déjà vu 東京 straße İstanbul emoji 🙂 tokenization unbelievable").split()


@pytest.fixture(scope="module")
def model(minilm_gguf):
    return Model(minilm_gguf, threads=2)


def random_texts(seed: int, n: int) -> list[str]:
    """Mostly short texts, some past max_tokens, an empty one and stray punctuation."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        k = rng.choice([0, 1, 3, 8, 20, 400]) if i else 0
        words = [rng.choice(WORDS) for _ in range(k)]
        texts.append(" ".join(words) + rng.choice(["", ".", " ?!", "\n"]))
    return texts


def expected_ids(model: Model, text: str) -> tuple[list[int], bool]:
    """tokenize() truncated as sentence-transformers does: the head, then [SEP]."""
    full = model.tokenize(text)
    if len(full) <= model.max_tokens:
        return full, False
    return full[: model.max_tokens - 1] + full[-1:], True


def per_text(encoded: Encoded) -> list[list[int]]:
    o = encoded.offsets
    return [encoded.ids[o[i]:o[i + 1]].tolist() for i in range(len(encoded))]


@pytest.mark.parametrize("prompt", [None, "query: "])
def test_encode_matches_tokenize_with_truncation(model, prompt):
    texts = random_texts(1, 60) + ["x" * 5000, " ".join(["word"] * 300), "Hello, World!"]
    enc = model.encode(texts, prompt=prompt)
    assert enc.ids.dtype == np.int32 and enc.lengths.dtype == np.int64 and enc.truncated.dtype == np.bool_
    assert len(enc) == len(texts) and enc.tokens == len(enc.ids) == int(enc.lengths.sum())
    want = [expected_ids(model, (prompt or "") + t) for t in texts]
    assert per_text(enc) == [ids for ids, _ in want]
    assert enc.truncated.tolist() == [tr for _, tr in want]
    assert enc.n_truncated == sum(tr for _, tr in want) >= 2
    assert enc.lengths.max() == model.max_tokens and enc.tokenize_ms >= 0


def test_prompt_is_applied_once(model):
    plain = model.encode(["hello world"])
    prompted = model.encode(["hello world"], prompt="query: ")
    # [CLS] query : hello world [SEP]: the prompt's tokens sit between [CLS] and the text.
    assert prompted.ids.tolist() == model.tokenize("query: hello world")
    assert prompted.tokens == plain.tokens + len(model.tokenize("query: ")) - 2
    assert model.token_counts(["hello world"], prompt="query: ") == [prompted.tokens]
    with pytest.raises(ValueError, match="unknown prompt_name"):
        model.encode(["x"], prompt_name="no-such-prompt")
    with pytest.raises(ValueError, match="not both"):
        model.encode(["x"], prompt_name="query", prompt="query: ")


def test_embed_encoded_equals_embed_bit_for_bit(model):
    texts = random_texts(2, 40)
    for prompt in (None, "query: "):
        direct = model.embed(texts, prompt=prompt)
        vectors, stats = model.embed_encoded(model.encode(texts, prompt=prompt))
        assert vectors.dtype == np.float32 and vectors.shape == (len(texts), model.dim)
        np.testing.assert_array_equal(vectors, direct)
        assert stats["tokens"] == model.encode(texts, prompt=prompt).tokens and stats["forward_ms"] > 0
    # A prompt changes the vectors, so the comparison above can fail.
    assert not np.array_equal(model.embed(texts[:3]), model.embed(texts[:3], prompt="query: "))


def test_embed_with_stats_reports_both_halves(model):
    texts = random_texts(3, 20)
    enc = model.encode(texts)
    vectors, stats = model.embed_with_stats(texts)
    assert set(stats) == {"tokenize_ms", "forward_ms", "tokens", "truncated"}
    assert stats["tokens"] == enc.tokens and stats["truncated"] == enc.n_truncated
    assert stats["tokenize_ms"] >= 0 and stats["forward_ms"] > 0
    np.testing.assert_array_equal(vectors, model.embed(texts))


def test_normalize_and_matryoshka_unchanged(model, minilm_gguf):
    texts = random_texts(4, 12)
    raw = model.embed(texts, normalize=False)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(model.embed(texts), raw / norms, rtol=0, atol=2e-7)
    enc = model.encode(texts)
    np.testing.assert_array_equal(model.embed_encoded(enc, normalize=False)[0], raw)
    # MiniLM allows only its full width; the Matryoshka code path is the model's
    # own, so a copy told it may truncate shows it: cut first, then normalize.
    m = Model(minilm_gguf, threads=2)
    m._dims_allowed = (384, 128)
    cut = raw[:, :128]
    np.testing.assert_allclose(m.embed_encoded(enc, dims=128)[0], cut / np.linalg.norm(cut, axis=1, keepdims=True),
                               rtol=0, atol=2e-7)
    np.testing.assert_array_equal(m.embed_encoded(enc, dims=128, normalize=False)[0], cut)
    assert m.embed(texts, dims=128).shape == (len(texts), 128)
    with pytest.raises(ValueError, match="dims=100 is not supported"):
        model.embed_encoded(enc, dims=100)


def test_select_and_concat_round_trip(model):
    texts = random_texts(5, 30)
    enc = model.encode(texts)
    rng = np.random.default_rng(5)
    order = rng.permutation(len(texts))
    picked = enc.select(order)
    assert per_text(picked) == [per_text(enc)[i] for i in order]
    assert picked.truncated.tolist() == enc.truncated[order].tolist()
    assert per_text(enc.select([3, 3, -1])) == [per_text(enc)[3]] * 2 + [per_text(enc)[-1]]
    mask = rng.random(len(texts)) < 0.5
    assert per_text(enc.select(mask)) == [ids for ids, keep in zip(per_text(enc), mask) if keep]
    assert len(enc.select([])) == 0 and enc.select([]).ids.size == 0
    # Cut into pieces and joined again: the original batch, id for id.
    cuts = [0, 1, 7, 7, 19, len(texts)]
    pieces = [enc.select(range(a, b)) for a, b in zip(cuts, cuts[1:])]
    joined = Encoded.concat(pieces)
    np.testing.assert_array_equal(joined.ids, enc.ids)
    np.testing.assert_array_equal(joined.lengths, enc.lengths)
    np.testing.assert_array_equal(joined.truncated, enc.truncated)
    assert joined.tokenize_ms == pytest.approx(len(pieces) * enc.tokenize_ms)
    empty = Encoded.concat([])
    assert len(empty) == 0 and empty.tokens == 0
    # A selection embeds like the same texts embedded directly.
    miss = [2, 11, 4]
    np.testing.assert_allclose(model.embed_encoded(enc.select(miss))[0], model.embed([texts[i] for i in miss]),
                               rtol=0, atol=2e-6)


def test_texts_tokenized_counts_each_text_once(model):
    texts = random_texts(6, 17)
    before = model.texts_tokenized
    model.embed(texts)
    assert model.texts_tokenized == before + len(texts)
    model.embed_with_stats(texts, prompt="query: ")
    assert model.texts_tokenized == before + 2 * len(texts)
    enc = model.encode(texts)
    assert model.texts_tokenized == before + 3 * len(texts)
    model.embed_encoded(enc)
    model.embed_encoded(enc.select([0, 1]))
    model.embed([])
    assert model.texts_tokenized == before + 3 * len(texts)
    model.tokenize("one more")
    assert model.texts_tokenized == before + 3 * len(texts) + 1


def test_empty_inputs(model):
    assert model.embed([]).shape == (0, model.dim) and model.embed([]).dtype == np.float32
    vectors, stats = model.embed_with_stats([])
    assert vectors.shape == (0, model.dim) and stats["tokens"] == 0 and stats["truncated"] == 0
    enc = model.encode([])
    assert len(enc) == 0 and enc.tokens == 0 and enc.ids.dtype == np.int32
    assert model.embed_encoded(enc)[0].shape == (0, model.dim)
    assert model.token_counts([]) == []


def test_text_types(model):
    assert per_text(model.encode("hello")) == [model.tokenize("hello")]
    assert model.encode(t for t in ["a", "b"]).tokens == 6
    with pytest.raises(TypeError, match=r"texts\[1\] must be str, got int"):
        model.encode(["a", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str, got bytes"):
        model.embed([b"bytes"])


def hostile_batches(vocab: int, max_tokens: int):
    """(ids, lengths) pairs the runtime must refuse."""
    ok = [101, 7592, 102]
    yield "negative id", [101, -1, 102], [3]
    yield "id == vocab_size", [101, vocab, 102], [3]
    yield "largest int32 id", [101, 2**31 - 1, 102], [3]
    yield "smallest int32 id", [-(2**31), 7592, 102], [3]
    yield "length 0", ok, [3, 0]
    yield "negative length", ok + ok, [9, -3]
    yield "length > max_tokens", [101] * (max_tokens + 1), [max_tokens + 1]
    yield "lengths sum past ids", ok, [4]
    yield "lengths sum short of ids", ok + ok, [3]
    yield "ids without lengths", ok, []
    yield "huge length", ok, [2**62]


@pytest.mark.parametrize("case", [c[0] for c in hostile_batches(30522, 256)])
def test_hostile_ids_raise_value_error(model, case):
    _, ids, lengths = next(c for c in hostile_batches(model.info["vocab_size"], model.max_tokens) if c[0] == case)
    ids, lengths = np.array(ids, np.int32), np.array(lengths, np.int64)
    before = model.embed(["hello"])
    with pytest.raises(ValueError):
        model._m.embed_ids(ids, lengths, True)
    with pytest.raises(ValueError):
        model.embed_encoded(Encoded(ids, lengths, np.zeros(len(lengths), bool)))
    np.testing.assert_array_equal(model.embed(["hello"]), before)


def test_ids_at_the_edges_are_accepted(model):
    vocab = model.info["vocab_size"]
    ids = np.array([0, vocab - 1] + [101] * (model.max_tokens - 2) + [102], np.int32)
    lengths = np.array([1, 1, model.max_tokens - 1], np.int64)
    vectors, stats = model._m.embed_ids(ids, lengths, True)
    assert vectors.shape == (3, model.dim) and np.isfinite(vectors).all() and stats["tokens"] == len(ids)


def test_embed_ids_refuses_wrong_types_and_shapes(model):
    m = model._m
    with pytest.raises(TypeError, match="int32"):
        m.embed_ids(np.array([101, 102], np.int64), np.array([2]), True)  # never wrapped into range
    with pytest.raises(TypeError, match="int32"):
        m.embed_ids(np.array([101.0, 102.0]), np.array([2]), True)
    with pytest.raises(ValueError, match="1-D"):
        m.embed_ids(np.array([[101, 102]], np.int32), np.array([2]), True)
    # Plain lists convert safely.
    np.testing.assert_array_equal(m.embed_ids([101, 7592, 102], [3], True)[0], model.embed(["hello"]))


def test_encoded_checks_its_arrays():
    with pytest.raises(ValueError, match="sum to 4"):
        Encoded(np.array([1, 2, 3], np.int32), np.array([4]), np.array([False]))
    with pytest.raises(ValueError, match="do not fit int32"):
        Encoded(np.array([2**40]), np.array([1]), np.array([False]))
    with pytest.raises(ValueError, match="differ in length"):
        Encoded(np.array([1], np.int32), np.array([1]), np.array([False, True]))
    e = Encoded([5, 6, 7], [2, 1], [False, True])  # lists and other int types are converted
    assert e.ids.dtype == np.int32 and e.lengths.dtype == np.int64 and e.truncated.dtype == np.bool_
    assert (len(e), e.tokens, e.n_truncated, e.offsets.tolist()) == (2, 3, 1, [0, 2, 3])
