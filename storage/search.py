"""Nearest-neighbour search by cosine similarity over stored vectors.

PostgreSQL orders by pgvector's `<=>` on the same `vector::vector(dim)` expression the per-dimension
HNSW index is built on, so the planner can use the index. SQLite computes `vec_distance_cosine`
(sqlite-vec) over the float32 blobs of the model and dimension asked for: exact, and fast enough for
the embedded default's sizes.
"""
from __future__ import annotations

import numpy as np
from sqlalchemy import text as sql

from .database import Database

# Vectors are chosen by the model's stored name (`model`) or by the model file's content hash
# (`model_hash`: only the vectors that very file computed).
MODEL_COLUMNS = ("model", "model_hash")


def sqlite_query(by: str = "model") -> str:
    assert by in MODEL_COLUMNS
    return ("SELECT job_id, idx, text, vec_distance_cosine(vector, :q) AS d FROM embeddings "
            f"WHERE dim = :dim AND {by} = :m ORDER BY d LIMIT :k")


SQLITE_QUERY = sqlite_query()


def pg_query(dim: int, by: str = "model") -> str:
    """The k-NN query for one dimension, written on the expression its HNSW index covers."""
    assert by in MODEL_COLUMNS
    d = int(dim)
    return (f"SELECT job_id, idx, text, (vector::vector({d}) <=> CAST(:q AS vector({d}))) AS d "
            f"FROM embeddings WHERE dim = {d} AND {by} = :m "
            f"ORDER BY vector::vector({d}) <=> CAST(:q AS vector({d})) LIMIT :k")


CHUNK_COLUMNS = "c.job_id, c.idx, e.text, c.chunk, c.token_start, c.token_end, c.char_start, c.char_end"


def chunk_query(dialect: str, dim: int, by: str = "model") -> str:
    """k-NN over the chunks of overflow="chunk" jobs, each with its text to slice. Exact on both
    backends: chunks have no HNSW index (they are a fraction of the rows, and an index per
    dimension on a second table would double the write cost of every chunk job)."""
    assert by in MODEL_COLUMNS
    d = int(dim)
    dist = ("vec_distance_cosine(c.vector, :q)" if dialect == "sqlite"
            else f"(c.vector::vector({d}) <=> CAST(:q AS vector({d})))")
    return (f"SELECT {CHUNK_COLUMNS}, {dist} AS d FROM chunks c JOIN embeddings e "
            f"ON e.job_id = c.job_id AND e.idx = c.idx WHERE c.dim = {d} AND c.{by} = :m ORDER BY d LIMIT :k")


def vector_literal(v: np.ndarray) -> str:
    # repr of each float32 widened to float64 is exact, so pgvector parses back the same float32.
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


# pgvector's HNSW scan returns at most hnsw.ef_search candidates (default 40), so a query for more
# rows than that would silently come back short; it is raised per query, up to pgvector's maximum.
EF_SEARCH_MAX = 1000


def nearest(db: Database, vector, model: str | None = None, k: int = 5,
            model_hash: str | None = None, chunks: bool = False) -> list[tuple]:
    """The k stored texts most similar to `vector`, by cosine, as (job_id, index, text, score), among
    the vectors of `model` (its stored name) or, with `model_hash`, of that very model file. Only
    vectors of the same dimension are compared.

    chunks=True searches the chunks of jobs run with overflow="chunk" instead, as (job_id, index,
    chunk text, score, {chunk, token_start, token_end, char_start, char_end}): the chunk text is
    text[char_start:char_end] of the job's text `index`."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if (model is None) == (model_hash is None):
        raise ValueError("give model (a stored model name) or model_hash (a model file's content hash)")
    q = np.asarray(vector, dtype=np.float32)
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"a query vector must be 1-D and non-empty, got shape {q.shape}")
    if not np.all(np.isfinite(q)) or not np.any(q):
        raise ValueError("the query vector must be finite and non-zero")
    dim = int(q.shape[0])
    by, m = ("model", model) if model_hash is None else ("model_hash", model_hash)
    if chunks:
        q_param = vector_literal(q) if db.dialect == "postgresql" else q.astype("<f4").tobytes()
        with db.read() as conn, conn.begin():
            rows = conn.execute(sql(chunk_query(db.dialect, dim, by)), {"q": q_param, "m": m, "k": k}).all()
        return [(r[0], int(r[1]), r[2][r[6]:r[7]], min(1.0, max(-1.0, 1.0 - float(r[8]))),
                 dict(chunk=int(r[3]), token_start=int(r[4]), token_end=int(r[5]), char_start=int(r[6]),
                      char_end=int(r[7]))) for r in rows]
    with db.read() as conn, conn.begin():
        if db.dialect == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {min(EF_SEARCH_MAX, max(40, k))}")
            rows = conn.execute(sql(pg_query(dim, by)), {"q": vector_literal(q), "m": m, "k": k}).all()
        else:
            rows = conn.execute(sql(sqlite_query(by)), {"q": q.astype("<f4").tobytes(), "dim": dim, "m": m,
                                                        "k": k}).all()
    # Cosine similarity, clipped: float32 rounding can put an exact match a hair above 1.
    return [(r[0], int(r[1]), r[2], min(1.0, max(-1.0, 1.0 - float(r[3])))) for r in rows]
