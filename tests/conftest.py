"""Shared fixtures: real models (fetched from PyPI packages, converted by our
converter, cached in EMBEDQ_HOME) and reference outputs from the peers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# llama.cpp (OpenMP) and torch (OpenMP) share the cores in one test process: with the default
# spinning wait, idle OpenMP threads of one starve the other. Measured on 2 cores: 40 short texts
# through llama.cpp after a sentence-transformers encode took 21.6 s spinning, 0.8 s passive.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from native import hub  # noqa: E402

# Redis, pgserver and worker fixtures.
pytest_plugins = ["helpers.service_fixtures"]

MINILM = "all-MiniLM-L6-v2"
GEMMA = "embeddinggemma-300m"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("EMBEDQ_SKIP_GEMMA") == "1":
        skip = pytest.mark.skip(reason="EMBEDQ_SKIP_GEMMA=1")
        for item in items:
            if "gemma" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return hub.fetch(MINILM, progress=False)


@pytest.fixture(scope="session")
def minilm_gguf() -> Path:
    return hub.pull(MINILM, "f32", progress=False)


@pytest.fixture(scope="session")
def minilm_gguf_f16() -> Path:
    return hub.pull(MINILM, "f16", progress=False)


@pytest.fixture(scope="session")
def minilm_gguf_q8() -> Path:
    return hub.pull(MINILM, "q8_0", progress=False)


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    return hub.fetch(GEMMA, progress=False)


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    return hub.pull(GEMMA, "f32", progress=False)


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    from bench.corpus import load_corpus

    return load_corpus()


@pytest.fixture(scope="session")
def st_minilm(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def short_texts(corpus, st_minilm):
    """The corpus texts within sentence-transformers' limit of 256 tokens (llama.cpp does not cut
    there, so comparisons stay inside it), the first 200: llama.cpp embeds one text per call."""
    return [t for t in corpus if t.strip() and len(st_minilm.tokenize([t])["input_ids"][0]) <= 256][:200]


@pytest.fixture(scope="module")
def st_short(st_minilm, short_texts):
    return st_minilm.encode(short_texts, normalize_embeddings=True)


@pytest.fixture(scope="session")
def st_minilm_vectors(st_minilm, corpus) -> np.ndarray:
    return st_minilm.encode(corpus, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


# --- XLM-RoBERTa: built in the test run (tests/helpers/xlmr_models.py); no real weights exist offline.

@pytest.fixture(scope="session")
def xlmr_sp(tmp_path_factory, corpus) -> Path:
    from helpers.xlmr_models import train_unigram

    return train_unigram(corpus, tmp_path_factory.mktemp("xlmr") / "sp.model")


@pytest.fixture(scope="session")
def xlmr_mean_dir(tmp_path_factory, xlmr_sp) -> Path:
    from helpers.xlmr_models import build_st_folder

    return build_st_folder(tmp_path_factory.mktemp("xlmr") / "mean", xlmr_sp, pooling="mean", normalize=True,
                           max_seq_length=64, n_positions=96, seed=1)


@pytest.fixture(scope="session")
def xlmr_cls_dir(tmp_path_factory, xlmr_sp) -> Path:
    from helpers.xlmr_models import build_st_folder

    return build_st_folder(tmp_path_factory.mktemp("xlmr") / "cls", xlmr_sp, pooling="cls", normalize=False,
                           max_seq_length=40, n_positions=60, hidden=48, layers=2, heads=3, ff=96, seed=2)


@pytest.fixture(scope="session")
def xlmr_mean_gguf(xlmr_mean_dir) -> Path:
    from native import convert

    return convert.convert(xlmr_mean_dir, xlmr_mean_dir.parent / "mean-f32.gguf", progress=False)


@pytest.fixture(scope="session")
def xlmr_cls_gguf(xlmr_cls_dir) -> Path:
    from native import convert

    return convert.convert(xlmr_cls_dir, xlmr_cls_dir.parent / "cls-f32.gguf", progress=False)


@pytest.fixture(scope="session")
def xlmr_hf_tokenizer(xlmr_mean_dir):
    # What sentence-transformers tokenizes with: AutoTokenizer on the folder.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(xlmr_mean_dir))


# --- Qwen3: built in the test run (tests/helpers/qwen3_models.py); no real weights exist offline.

@pytest.fixture(scope="session")
def qwen3_tokenizer(corpus):
    from helpers.qwen3_models import train_tokenizer

    return train_tokenizer(corpus)


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory, qwen3_tokenizer) -> Path:
    from helpers.qwen3_models import build_st_folder

    return build_st_folder(tmp_path_factory.mktemp("qwen3") / "Qwen3-Embedding-tiny", qwen3_tokenizer)


@pytest.fixture(scope="session")
def qwen3_gguf(qwen3_dir) -> Path:
    from native import convert

    return convert.convert(qwen3_dir, qwen3_dir.parent / "qwen3-f32.gguf", progress=False)


@pytest.fixture(scope="session")
def qwen3_hf_tokenizer(qwen3_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_dir))
