"""all-MiniLM-L6-v2 through the native runtime against sentence-transformers
(torch 2.13.0, CPU) on the multilingual corpus with edge cases.

Besides the hard thresholds, the figures these tests measure must equal the ones published in
BENCHMARKS.md, i.e. the rows of bench/results/accuracy.json written by `embedq bench accuracy`
(same corpus, same cached sentence-transformers reference, bench.accuracy.figures), within
these margins:

- min and median cosine: |measured - published| <= 2e-5;
- max abs diff: |measured - published| <= 2e-5;
- texts under 0.999 cosine: exactly the published count, except that texts whose cosine lies
  within 2e-5 of 0.999 may fall on either side;
- token ids equal to HF's: exactly the published count.

Our vectors do not depend on batching or thread count, so on the machine and kernel set that
produced the file the figures agree to the last digit; the margin absorbs the reference's
run-to-run noise (~2e-7). With int8 activations on another kernel set than the published one,
a last-bit difference can flip an activation's rounding (see the kernel-set test below), so the
cosine and abs-diff margin there is 2e-3. A missing row fails: rerun
`embedq bench accuracy --models all-MiniLM-L6-v2` after a change that moves the figures.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.accuracy import (RESULTS_FILE, discrepancies, find_row, forward_ids, hf_ids, load_results,
                            token_agreement)
from bench.references import st_vectors
from native import Model

pytestmark = [pytest.mark.slow, pytest.mark.peers]

MODEL = "all-MiniLM-L6-v2"
MARGIN = 2e-5
MARGIN_INT8_OTHER_KERNELS = 2e-3


@pytest.fixture(scope="module")
def published() -> dict:
    assert RESULTS_FILE.exists(), f"{RESULTS_FILE} is missing: run `embedq bench accuracy`"
    return load_results(RESULTS_FILE)


@pytest.fixture(scope="module")
def reference(minilm_dir, corpus) -> np.ndarray:
    # The reference `embedq bench accuracy` measured against (cached on disk).
    return st_vectors(minilm_dir, corpus)


def assert_published(published: dict, model: Model, vectors: np.ndarray, reference: np.ndarray,
                     file_type: str, activations: str = "f32") -> None:
    row = find_row(published, MODEL, file_type, "embedq", activations)
    assert row is not None, f"no published {MODEL} {file_type} ({activations}) row in {RESULTS_FILE}"
    margin = MARGIN
    if activations == "int8" and model.info["kernels"] != row["kernels"]:
        margin = MARGIN_INT8_OTHER_KERNELS
    problems = discrepancies(vectors, reference, row, margin, margin)
    assert not problems, f"{file_type} ({activations}) differs from BENCHMARKS.md: {problems}"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def f32_model(minilm_gguf):
    return Model(minilm_gguf, threads=2)


def test_f32_matches_sentence_transformers(f32_model, corpus, st_minilm_vectors, reference, published):
    ours = f32_model.embed(corpus)
    assert ours.shape == st_minilm_vectors.shape and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = cosines(ours, st_minilm_vectors)
    worst = int(cos.argmin())
    assert cos.min() >= 0.99999, f"min cosine {cos.min():.7f} on {corpus[worst][:80]!r}"
    assert_published(published, f32_model, ours, reference, "f32")


@pytest.mark.parametrize("activations", ["f32", "int16"])
def test_f16_matches_sentence_transformers(minilm_gguf_f16, corpus, st_minilm_vectors, reference, published,
                                           activations):
    model = Model(minilm_gguf_f16, threads=2, activations=activations)
    ours = model.embed(corpus)
    cos = cosines(ours, st_minilm_vectors)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f}"
    assert_published(published, model, ours, reference, "f16", activations)


def test_f16_weights_on_int16_products_keep_f32_accuracy(minilm_gguf_f16, corpus):
    # With int16 activations, F16 weights are quantized once at load to 12-bit blocks
    # (quant.h, kI16WeightMax): an error of at most 1/4094 of a block's largest weight, which
    # must leave the vectors those of the exact f32 path.
    f32 = Model(minilm_gguf_f16, threads=2, activations="f32").embed(corpus)
    i16 = Model(minilm_gguf_f16, threads=2, activations="int16").embed(corpus)
    between = cosines(i16, f32)
    assert between.min() >= 0.99999, f"int16 vs f32 on F16 weights: min cosine {between.min():.8f}"


@pytest.mark.parametrize("activations,min_cos,median_cos",
                         [("f32", 0.999, 0.9998), ("int16", 0.999, 0.9998), ("int8", 0.997, 0.9995)])
def test_q8_0_accuracy(minilm_gguf_q8, corpus, st_minilm_vectors, reference, published, activations, min_cos,
                       median_cos):
    model = Model(minilm_gguf_q8, threads=2, activations=activations)
    ours = model.embed(corpus)
    cos = cosines(ours, st_minilm_vectors)
    assert cos.min() >= min_cos, f"{activations}: min cosine {cos.min():.6f}"
    assert np.median(cos) >= median_cos, f"{activations}: median cosine {np.median(cos):.6f}"
    assert_published(published, model, ours, reference, "q8_0", activations)


def test_int16_activations_keep_f32_accuracy(minilm_gguf_q8, corpus, st_minilm_vectors):
    # int16 activations round each value by at most 2^-16 of its row's largest, far below the
    # weights' own Q8_0 rounding: the vectors stay those of f32 activations, and so does every
    # figure against sentence-transformers (within 1e-5: which of two near-equal texts is the
    # worst may differ).
    f32 = Model(minilm_gguf_q8, threads=2, activations="f32").embed(corpus)
    i16 = Model(minilm_gguf_q8, threads=2, activations="int16").embed(corpus)
    between = cosines(i16, f32)
    assert between.min() >= 0.99999, f"int16 vs f32 activations: min cosine {between.min():.8f}"
    c16, c32 = cosines(i16, st_minilm_vectors), cosines(f32, st_minilm_vectors)
    assert c16.min() >= c32.min() - 1e-5, (c16.min(), c32.min())
    assert np.median(c16) >= np.median(c32) - 1e-5, (np.median(c16), np.median(c32))
    assert (c16 < 0.999).sum() <= (c32 < 0.999).sum()
    assert np.abs(i16 - st_minilm_vectors).max() <= np.abs(f32 - st_minilm_vectors).max() + 1e-4


def test_default_activations_follow_the_kernel_set(minilm_gguf_q8):
    import native

    # int16 is the default only where VPDPWSSD makes it faster than f32.
    for name in native.kernel_sets():
        got = Model(minilm_gguf_q8, threads=1, kernels=name).info["activations"]
        assert got == ("int16" if name == "avx512vnni" else "f32"), (name, got)
    with pytest.raises(ValueError, match="activations must be"):
        Model(minilm_gguf_q8, threads=1, activations="int4")


def test_token_ids_match_hf_as_published(f32_model, minilm_dir, corpus, published):
    # The ids the forward pass gets (specials added, truncated at 256) against HF's AutoTokenizer.
    equal = token_agreement(forward_ids(f32_model, corpus), hf_ids(minilm_dir, corpus, f32_model.max_tokens))
    assert equal == len(corpus), f"{len(corpus) - equal} texts tokenize differently from HF"
    for file_type in ("f32", "f16", "q8_0"):
        row = find_row(published, MODEL, file_type)
        assert row is not None and row["token_ids_equal"] == equal, (file_type, row and row["token_ids_equal"])


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
# rounding of an activation in the next, so kernel sets agree less tightly;
# with int16 such a flip moves a value by 2^-16 of its row's largest.
@pytest.mark.parametrize("activations,tolerance", [("f32", 1e-6), ("int16", 1e-6), ("int8", 2e-3)])
def test_every_kernel_set_gives_the_same_vectors(minilm_gguf_q8, corpus, activations, tolerance):
    import native

    texts = corpus[:24]
    results = {}
    for name in native.kernel_sets():
        results[name] = Model(minilm_gguf_q8, threads=2, kernels=name, activations=activations).embed(texts)
    ref = results["scalar"]
    for name, v in results.items():
        assert cosines(v, ref).min() > 1 - tolerance, name
