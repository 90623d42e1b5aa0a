"""EmbeddingGemma-300M through the native runtime against sentence-transformers
(torch 2.13.0, CPU): F32 accuracy, prompts, Matryoshka dims."""
from __future__ import annotations

import numpy as np
import pytest

from native import Model
from references import st_vectors

pytestmark = [pytest.mark.slow, pytest.mark.peers, pytest.mark.gemma]


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def gemma(gemma_gguf):
    return Model(gemma_gguf, threads=2)


@pytest.fixture(scope="module")
def reference(gemma_dir, corpus):
    return st_vectors(gemma_dir, corpus)


def test_f32_matches_sentence_transformers(gemma, corpus, reference):
    ours = gemma.embed(corpus)
    assert ours.shape == (len(corpus), 768)
    cos = cosines(ours, reference)
    worst = int(cos.argmin())
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.6f} on {corpus[worst][:80]!r}"
    assert np.abs(ours - reference).max() < 2e-3


def test_info_describes_the_model(gemma):
    info = gemma.info
    assert info["architecture"] == "gemma-embedding"
    assert info["dim"] == 768 and info["max_tokens"] == 2048
    assert info["dims_allowed"] == [768, 512, 256, 128]
    assert info["prompts"]["query"] == "task: search result | query: "


@pytest.mark.parametrize("prompt_name", ["query", "document", "STS"])
def test_prompts_match_sentence_transformers(gemma, gemma_dir, corpus, prompt_name):
    texts = corpus[:30]
    ref = st_vectors(gemma_dir, texts, prompt_name=prompt_name)
    ours = gemma.embed(texts, prompt_name=prompt_name)
    assert cosines(ours, ref).min() >= 0.9999
    # A prompt changes the vector, and prompt= with the same text is the same thing.
    assert cosines(ours, gemma.embed(texts)).min() < 0.999
    custom = gemma.embed(texts, prompt=gemma.prompts[prompt_name])
    np.testing.assert_allclose(custom, ours, atol=1e-6)


@pytest.mark.parametrize("dims", [512, 256, 128])
def test_matryoshka_dims(gemma, gemma_dir, corpus, dims):
    texts = corpus[:30]
    ref = st_vectors(gemma_dir, texts, truncate_dim=dims)
    ours = gemma.embed(texts, dims=dims)
    assert ours.shape == (30, dims)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert cosines(ours, ref).min() >= 0.9999


@pytest.mark.parametrize("dims", [0, 100, 767, 1024, -1, 3.5, "256", True])
def test_bad_dims_are_rejected(gemma, dims):
    with pytest.raises(ValueError, match="768, 512, 256, 128"):
        gemma.embed(["hello"], dims=dims)


def test_unknown_prompt_name_is_rejected(gemma):
    with pytest.raises(ValueError, match="unknown prompt_name 'nope'.*query"):
        gemma.embed(["hello"], prompt_name="nope")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_weights_stay_memory_mapped(gemma_gguf):
    """Loading maps the file instead of copying it: resident memory grows by
    what is touched (norm vectors, a few embedding rows), not the 1.2 GB."""
    size = gemma_gguf.stat().st_size
    before = _rss_bytes()
    m = Model(gemma_gguf, threads=2)
    after_load = _rss_bytes()
    m.embed(["a short text"])
    after_embed = _rss_bytes()
    assert after_load - before < 0.05 * size, (after_load - before) / 1e6
    # A forward pass reads every layer once, but not the 262k-row embedding table.
    assert after_embed - before < 0.6 * size, (after_embed - before) / 1e6

