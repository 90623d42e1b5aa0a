"""EmbeddingGemma-300M through the native runtime against sentence-transformers
(torch 2.13.0, CPU): F32 and Q8_0 accuracy, token ids, prompts, Matryoshka dims.

Besides the hard thresholds, the corpus figures these tests measure (F32 and Q8_0 files, f32
activations, token ids) must equal the ones published in BENCHMARKS.md, i.e. the rows of
bench/results/accuracy.json written by `embedq bench accuracy` (same corpus, same cached
sentence-transformers reference, bench.accuracy.figures), within these margins:

- min and median cosine: |measured - published| <= 2e-5;
- max abs diff: |measured - published| <= 2e-5;
- texts under 0.999 cosine: exactly the published count, except that texts whose cosine lies
  within 2e-5 of 0.999 may fall on either side;
- token ids equal to HF's: exactly the published count.

Our vectors do not depend on batching or thread count, and with f32 activations the kernel
sets agree to ~1e-6, so the margin only absorbs noise. A missing row fails: rerun
`embedq bench accuracy --models embeddinggemma-300m` after a change that moves the figures.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.accuracy import (RESULTS_FILE, discrepancies, find_row, forward_ids, hf_ids, load_results,
                            token_agreement)
from bench.references import st_vectors
from native import Model, hub

pytestmark = [pytest.mark.slow, pytest.mark.peers, pytest.mark.gemma]

MODEL = "embeddinggemma-300m"
MARGIN = 2e-5


@pytest.fixture(scope="module")
def published() -> dict:
    assert RESULTS_FILE.exists(), f"{RESULTS_FILE} is missing: run `embedq bench accuracy`"
    return load_results(RESULTS_FILE)


def assert_published(published: dict, vectors: np.ndarray, reference: np.ndarray, file_type: str,
                     activations: str = "f32") -> None:
    row = find_row(published, MODEL, file_type, "embedq", activations)
    assert row is not None, f"no published {MODEL} {file_type} ({activations}) row in {RESULTS_FILE}"
    problems = discrepancies(vectors, reference, row, MARGIN, MARGIN)
    assert not problems, f"{file_type} differs from BENCHMARKS.md: {problems}"


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def gemma(gemma_gguf):
    return Model(gemma_gguf, threads=2)


@pytest.fixture(scope="module")
def reference(gemma_dir, corpus):
    return st_vectors(gemma_dir, corpus)


def test_f32_matches_sentence_transformers(gemma, corpus, reference, published):
    ours = gemma.embed(corpus)
    assert ours.shape == (len(corpus), 768)
    cos = cosines(ours, reference)
    worst = int(cos.argmin())
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.6f} on {corpus[worst][:80]!r}"
    assert np.abs(ours - reference).max() < 2e-3
    assert_published(published, ours, reference, "f32")


@pytest.fixture(scope="module")
def q8_vectors(corpus) -> dict:
    path = hub.pull(MODEL, "q8_0", progress=False)
    return {act: Model(path, threads=2, activations=act).embed(corpus) for act in ("f32", "int16")}


@pytest.mark.parametrize("activations", ["f32", "int16"])
def test_q8_0_matches_sentence_transformers(q8_vectors, reference, published, activations):
    ours = q8_vectors[activations]
    cos = cosines(ours, reference)
    assert cos.min() >= 0.997 and np.median(cos) >= 0.9997, (cos.min(), np.median(cos))
    assert_published(published, ours, reference, "q8_0", activations)


def test_q8_0_int16_activations_keep_f32_accuracy(q8_vectors, reference):
    # Gemma's activations span a wide range; per-block int16 scales keep every block's rounding
    # at 2^-16 of its own largest value, so the vectors stay those of f32 activations.
    i16, f32 = q8_vectors["int16"], q8_vectors["f32"]
    between = cosines(i16, f32)
    assert between.min() >= 0.99999, f"int16 vs f32 activations: min cosine {between.min():.8f}"
    c16, c32 = cosines(i16, reference), cosines(f32, reference)
    assert c16.min() >= c32.min() - 1e-5 and np.median(c16) >= np.median(c32) - 1e-5
    assert (c16 < 0.999).sum() <= (c32 < 0.999).sum()


def test_token_ids_match_hf_as_published(gemma, gemma_dir, corpus, published):
    # The ids the forward pass gets (<bos> ... <eos>, truncated at 2048) against HF's AutoTokenizer.
    equal = token_agreement(forward_ids(gemma, corpus), hf_ids(gemma_dir, corpus, gemma.max_tokens))
    assert equal == len(corpus), f"{len(corpus) - equal} texts tokenize differently from HF"
    for file_type in ("f32", "q8_0"):
        row = find_row(published, MODEL, file_type)
        assert row is not None and row["token_ids_equal"] == equal, (file_type, row and row["token_ids_equal"])


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



def test_llama_cpp_q4_k_m_file_through_both_paths(gemma_gguf, corpus, reference):
    """EmbeddingGemma as llama.cpp's quantizer writes it for Q4_K_M (Q4_K, Q6_K and Q5_0 mixed):
    our vectors against sentence-transformers F32, at the accuracy such a file allows (measured
    0.91907 min / 0.983348 median), and the int16 path, whose load-time 12-bit blocks of these
    weights add no loss the 4-6 bit types do not dwarf, giving the f32 path's vectors."""
    from helpers.peers import llama_cpp_quantize

    path = llama_cpp_quantize(gemma_gguf, "Q4_K_M")
    f32 = Model(path, threads=2, activations="f32").embed(corpus)
    cos = cosines(f32, reference)
    assert cos.min() >= 0.90 and np.median(cos) >= 0.98, (cos.min(), np.median(cos))
    some = corpus[:48]
    i16 = Model(path, threads=2, activations="int16").embed(some)
    between = cosines(i16, f32[:48])
    assert between.min() >= 0.99999, f"int16 vs f32 on Q4_K_M weights: min cosine {between.min():.8f}"
