"""all-MiniLM-L6-v2 through the native runtime against sentence-transformers
(torch 2.13.0, CPU) on the multilingual corpus with edge cases."""
from __future__ import annotations

import numpy as np
import pytest

from native import Model

pytestmark = [pytest.mark.slow, pytest.mark.peers]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def f32_model(minilm_gguf):
    return Model(minilm_gguf, threads=2)


def test_f32_matches_sentence_transformers(f32_model, corpus, st_minilm_vectors):
    ours = f32_model.embed(corpus)
    assert ours.shape == st_minilm_vectors.shape and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = cosines(ours, st_minilm_vectors)
    worst = int(cos.argmin())
    assert cos.min() >= 0.99999, f"min cosine {cos.min():.7f} on {corpus[worst][:80]!r}"


def test_f16_matches_sentence_transformers(minilm_gguf_f16, corpus, st_minilm_vectors):
    cos = cosines(Model(minilm_gguf_f16, threads=2).embed(corpus), st_minilm_vectors)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f}"


@pytest.mark.parametrize("activations,min_cos,median_cos", [("f32", 0.999, 0.9998), ("int8", 0.997, 0.9995)])
def test_q8_0_accuracy(minilm_gguf_q8, corpus, st_minilm_vectors, activations, min_cos, median_cos):
    cos = cosines(Model(minilm_gguf_q8, threads=2, activations=activations).embed(corpus), st_minilm_vectors)
    assert cos.min() >= min_cos, f"{activations}: min cosine {cos.min():.6f}"
    assert np.median(cos) >= median_cos, f"{activations}: median cosine {np.median(cos):.6f}"


def test_truncation_follows_sentence_transformers(f32_model, st_minilm):
    long_text = " ".join(f"word{i}" for i in range(600))
    encoded = f32_model.encode([long_text])
    ids, truncated = encoded.ids.tolist(), bool(encoded.truncated[0])
    assert truncated and len(ids) == 256 == st_minilm.max_seq_length
    ref_ids = st_minilm.tokenize([long_text])["input_ids"][0].tolist()
    assert ids == ref_ids
    vectors, stats = f32_model.embed_with_stats([long_text, "short text"])
    assert stats["truncated"] == 1
    assert stats["tokens"] == 256 + len(f32_model.tokenize("short text"))
    ref = st_minilm.encode([long_text], normalize_embeddings=True)
    assert cosines(vectors[:1], ref)[0] >= 0.99999
    # tokenize() reports the whole text; only the forward pass truncates.
    assert len(f32_model.tokenize(long_text)) > 256


def test_batch_composition_does_not_change_vectors(f32_model, corpus):
    texts = corpus[:40]
    together = f32_model.embed(texts)
    alone = np.stack([f32_model.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-6)


# With int8 activations a last-bit difference in one layer can flip the
# rounding of an activation in the next, so kernel sets agree less tightly.
@pytest.mark.parametrize("activations,tolerance", [("f32", 1e-6), ("int8", 2e-3)])
def test_every_kernel_set_gives_the_same_vectors(minilm_gguf_q8, corpus, activations, tolerance):
    import native

    texts = corpus[:24]
    results = {}
    for name in native.kernel_sets():
        results[name] = Model(minilm_gguf_q8, threads=2, kernels=name, activations=activations).embed(texts)
    ref = results["scalar"]
    for name, v in results.items():
        assert cosines(v, ref).min() > 1 - tolerance, name
