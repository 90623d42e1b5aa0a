"""EmbeddingGemma Q8_0 against sentence-transformers and llama.cpp on the same
files; llama.cpp's converter output in our runtime."""
from __future__ import annotations

import numpy as np
import pytest

from native import Model, hub
from helpers.peers import llama_cpp_convert
from bench.references import st_vectors

pytestmark = [pytest.mark.slow, pytest.mark.peers, pytest.mark.gemma]


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def gemma_q8():
    return hub.pull("embeddinggemma-300m", "q8_0", progress=False)


@pytest.fixture(scope="module")
def reference(gemma_dir, corpus):
    return st_vectors(gemma_dir, corpus)


@pytest.fixture(scope="module")
def llama_q8(tmp_path_factory, gemma_dir):
    return llama_cpp_convert(gemma_dir, tmp_path_factory.mktemp("llama-gemma") / "gemma-q8_0.gguf", "q8_0")


def test_q8_0_meets_the_accuracy_targets(gemma_q8, corpus, reference):
    ours = Model(gemma_q8, threads=2).embed(corpus)
    cos = cosines(ours, reference)
    max_abs = float(np.abs(ours - reference).max())
    print(f"\nembedq Q8_0 (f32 activations): min {cos.min():.5f} median {np.median(cos):.6f} "
          f"under 0.999: {(cos < 0.999).sum()} max abs {max_abs:.4f}")
    assert cos.min() >= 0.99
    assert np.median(cos) >= 0.9997
    assert max_abs <= 0.0115


def test_llama_cpp_file_gives_our_vectors(llama_q8, gemma_q8, corpus):
    texts = [t for t in corpus if t.strip()][:60]
    theirs_in_ours = Model(llama_q8, threads=2).embed(texts)
    ours = Model(gemma_q8, threads=2).embed(texts)
    assert cosines(theirs_in_ours, ours).min() > 0.999999


def test_fewer_texts_under_0999_than_llama_cpp(llama_q8, gemma_q8, corpus, reference):
    pytest.importorskip("llama_cpp")
    from bench.llama_peer import open_llama

    # llama.cpp needs the whole text in one context; keep texts that fit.
    ours_model = Model(gemma_q8, threads=2)
    keep = [i for i, t in enumerate(corpus) if len(ours_model.tokenize(t)) <= 2048]
    llm = open_llama(llama_q8, 2048)
    try:
        theirs = np.array([llm.embed(corpus[i], normalize=True) for i in keep], dtype=np.float32)
    finally:
        llm.close()
    ref = reference[keep]
    c_theirs = cosines(theirs, ref)
    c_ours = cosines(ours_model.embed([corpus[i] for i in keep]), ref)
    print(f"\nunder 0.999: embedq {(c_ours < 0.999).sum()}, llama.cpp {(c_theirs < 0.999).sum()}; "
          f"min embedq {c_ours.min():.5f}, llama.cpp {c_theirs.min():.5f}; "
          f"median embedq {np.median(c_ours):.6f}, llama.cpp {np.median(c_theirs):.6f}")
    assert (c_ours < 0.999).sum() < max(1, (c_theirs < 0.999).sum())
    assert c_ours.min() >= c_theirs.min()
