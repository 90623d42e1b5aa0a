"""One column type for embedding vectors on both backends.

PostgreSQL: pgvector's `vector`, left without a fixed dimension because one table holds every model
and Matryoshka size; the HNSW indexes are per dimension on `vector::vector(dim)` (see
storage/pg_index.py). SQLite: little-endian float32 blobs, the layout sqlite-vec reads directly.
Both round-trip float32 exactly (pgvector parses the shortest decimal of each float32 back to it).
"""
from __future__ import annotations

import numpy as np
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator


class VectorType(TypeDecorator):
    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            from pgvector.sqlalchemy import VECTOR

            return dialect.type_descriptor(VECTOR())
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim != 1:
            raise ValueError(f"a vector must be 1-D, got shape {arr.shape}")
        if dialect.name == "postgresql":
            return arr
        return arr.astype("<f4", copy=False).tobytes()

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "postgresql":
            return np.asarray(value, dtype=np.float32)
        return np.frombuffer(value, dtype="<f4").astype(np.float32)
