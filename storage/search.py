"""Nearest-neighbour search by cosine similarity over stored vectors.

PostgreSQL orders by pgvector's `<=>` on the same `vector::vector(dim)` expression the per-dimension
HNSW index is built on, so the planner can use the index. SQLite computes `vec_distance_cosine`
(sqlite-vec) over the float32 blobs of the model and dimension asked for: exact, and fast enough for
the embedded default's sizes.
"""
from __future__ import annotations

import threading

import numpy as np
from sqlalchemy import text as sql

from schemas.settings import get_settings, model_label

from .database import read_session

SQLITE_QUERY = ("SELECT job_id, idx, text, vec_distance_cosine(vector, :q) AS d FROM embeddings "
                "WHERE dim = :dim AND model = :m ORDER BY d LIMIT :k")


def pg_query(dim: int) -> str:
    """The k-NN query for one dimension, written on the expression its HNSW index covers."""
    d = int(dim)
    return (f"SELECT job_id, idx, text, (vector::vector({d}) <=> CAST(:q AS vector({d}))) AS d "
            f"FROM embeddings WHERE dim = {d} AND model = :m "
            f"ORDER BY vector::vector({d}) <=> CAST(:q AS vector({d})) LIMIT :k")


def vector_literal(v: np.ndarray) -> str:
    # repr of each float32 widened to float64 is exact, so pgvector parses back the same float32.
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


_models: dict[tuple, object] = {}
_models_lock = threading.Lock()


def _embed_query(model: str, text: str, prompt_name: str | None, dims: int | None) -> np.ndarray:
    """Embed a query with a model loaded once per process (memory-mapped). A Model's embed() is
    not re-entrant, so concurrent queries take turns."""
    import native

    s = get_settings()
    key = (model, s.threads, s.activations)
    with _models_lock:
        if key not in _models:
            _models[key] = (native.Model(model, threads=s.threads, activations=s.activations), threading.Lock())
        m, lock = _models[key]
    with lock:
        return m.embed([text], prompt_name=prompt_name, dims=dims)[0]


def nearest(query, k: int = 5, model: str | None = None, prompt_name: str | None = None,
            dims: int | None = None, url: str | None = None) -> list[tuple[str, int, str, float]]:
    """The k stored texts most similar to `query` (a text, or a vector) as (job_id, index, text, score)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    model = model or get_settings().model
    if isinstance(query, str):
        q = _embed_query(model, query, prompt_name, dims)
    else:
        q = np.asarray(query, dtype=np.float32)
        if q.ndim != 1 or q.size == 0:
            raise ValueError(f"a query vector must be 1-D and non-empty, got shape {q.shape}")
    if not np.all(np.isfinite(q)) or not np.any(q):
        raise ValueError("the query vector must be finite and non-zero")
    dim = int(q.shape[0])
    label = model_label(model)
    with read_session(url) as s:
        if s.get_bind().dialect.name == "postgresql":
            rows = s.execute(sql(pg_query(dim)), {"q": vector_literal(q), "m": label, "k": k})
        else:
            rows = s.execute(sql(SQLITE_QUERY), {"q": q.astype("<f4").tobytes(), "dim": dim, "m": label, "k": k})
        # Cosine similarity, clipped: float32 rounding can put an exact match a hair above 1.
        return [(r[0], int(r[1]), r[2], min(1.0, max(-1.0, 1.0 - float(r[3])))) for r in rows]
