"""HNSW indexes for pgvector, one per vector dimension.

One `embeddings` table holds vectors of every model and Matryoshka size, so the column is an
unsized `vector`; pgvector can only index a sized one, hence a partial expression index per
dimension on `vector::vector(dim)` (the layout pgvector documents for mixed dimensions). The
migration creates the sizes of the models we ship; a worker creates the index for any other size
the first time it stores one. Queries must use the same expression to hit the index.
"""
from __future__ import annotations

import threading

from sqlalchemy import Connection, text

# all-MiniLM-L6-v2 (384) and EmbeddingGemma-300M with its Matryoshka sizes.
DEFAULT_INDEXED_DIMS = (384, 768, 512, 256, 128)

_known: set[tuple[str, int]] = set()
_lock = threading.Lock()


def index_name(dim: int) -> str:
    return f"ix_embeddings_hnsw_{int(dim)}"


def hnsw_index_ddl(dim: int) -> str:
    d = int(dim)
    return (f"CREATE INDEX IF NOT EXISTS {index_name(d)} ON embeddings "
            f"USING hnsw ((vector::vector({d})) vector_cosine_ops) WHERE dim = {d}")


def ensure_hnsw_index(conn: Connection, dim: int) -> None:
    """Create the index for `dim` once per process and database (idempotent, race-tolerant)."""
    key = (str(conn.engine.url), int(dim))
    with _lock:
        if key in _known:
            return
    exists = conn.execute(text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": index_name(dim)}).first()
    if not exists:
        # In its own transaction: a concurrent creator makes this fail, and that failure must not
        # roll back the caller's job.
        eng = conn.engine
        try:
            with eng.begin() as c:
                c.execute(text(hnsw_index_ddl(dim)))
        except Exception:
            with eng.connect() as c:
                if not c.execute(text("SELECT 1 FROM pg_indexes WHERE indexname = :n"),
                                 {"n": index_name(dim)}).first():
                    raise
    with _lock:
        _known.add(key)
