"""Interoperability and accuracy against llama.cpp (llama-cpp-python) on the
same GGUF files: our files load in llama.cpp, llama.cpp's converter output
loads in ours with the same vectors, and our Q8_0 is no worse per text."""
from __future__ import annotations

import numpy as np
import pytest

from native import Model
from helpers.peers import llama_cpp_convert, llama_embed

pytestmark = [pytest.mark.slow, pytest.mark.peers]

llama_cpp = pytest.importorskip("llama_cpp")


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def llama_files(tmp_path_factory, minilm_dir):
    d = tmp_path_factory.mktemp("llama")
    return {t: llama_cpp_convert(minilm_dir, d / f"minilm-{t}.gguf", t) for t in ("f32", "q8_0")}


def test_our_gguf_loads_in_llama_cpp(minilm_gguf, short_texts, st_short):
    english = [i for i, t in enumerate(short_texts) if t.isascii()][:40]
    vec = llama_embed(minilm_gguf, [short_texts[i] for i in english])
    assert cosines(vec, st_short[english]).min() > 0.999


def test_llama_cpp_gguf_loads_in_ours_with_the_same_vectors(llama_files, minilm_gguf, short_texts):
    ours_from_theirs = Model(llama_files["f32"], threads=2, max_tokens=256).embed(short_texts)
    ours = Model(minilm_gguf, threads=2).embed(short_texts)
    assert cosines(ours_from_theirs, ours).min() > 0.999999


def test_q8_0_no_text_worse_than_llama_cpp(llama_files, minilm_gguf_q8, short_texts, st_short):
    theirs = cosines(llama_embed(llama_files["q8_0"], short_texts), st_short)
    ours = cosines(Model(minilm_gguf_q8, threads=2).embed(short_texts), st_short)
    ours_on_their_file = cosines(Model(llama_files["q8_0"], threads=2, max_tokens=256).embed(short_texts), st_short)
    for name, c in (("our file", ours), ("llama.cpp's file", ours_on_their_file)):
        worse = np.flatnonzero(c < theirs - 1e-4)
        assert worse.size == 0, f"{name}: {worse.size} texts worse than llama.cpp, e.g. {short_texts[worse[0]][:60]!r}"
    assert ours.min() >= 0.998 and np.median(ours) >= 0.9995
    print(f"\nQ8_0 min/median cosine: embedq {ours.min():.5f}/{np.median(ours):.6f}, "
          f"llama.cpp {theirs.min():.5f}/{np.median(theirs):.6f}")
