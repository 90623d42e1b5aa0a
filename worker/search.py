"""Search stored vectors with a text: the query is embedded here, on the service side, by the same
model the workers serve, then storage compares vectors. (storage.nearest takes only a vector, so a
client that searches with a vector never loads a model.)"""
from __future__ import annotations

import threading
from pathlib import Path

import storage
from native import Model
from schemas.settings import get_settings

from .backend import file_sha256

_models: dict[tuple, tuple[Model, str, threading.Lock]] = {}
_models_lock = threading.Lock()


def query_model(model: str) -> tuple[Model, str, threading.Lock]:
    """`model` loaded once per process (memory-mapped), its file's content hash, and a lock: a Model
    computes one forward pass at a time, so concurrent queries take turns."""
    s = get_settings()
    key = (model, s.threads, s.activations)
    with _models_lock:
        if key not in _models:
            m = Model(model, threads=s.threads, activations=s.activations)
            _models[key] = (m, file_sha256(Path(m.path)), threading.Lock())
        return _models[key]


def embed_query(model: str, text: str, prompt_name: str | None = None, dims: int | None = None):
    m, _, lock = query_model(model)
    with lock:
        return m.embed([text], prompt_name=prompt_name, dims=dims)[0]


def nearest_text(db: storage.Database, text: str, k: int = 5, model: str | None = None,
                 prompt_name: str | None = None, dims: int | None = None, chunks: bool = False) -> list[tuple]:
    """The k stored texts most similar to `text` as (job_id, index, text, score); `model` is a GGUF
    path or model name (default EMBEDQ_MODEL). Only vectors that the very same model file computed,
    at the same size, are searched: a query embedded by one file is never compared with another's.
    chunks=True: the chunks of overflow="chunk" jobs instead, with their offsets (storage.nearest)."""
    model = model or get_settings().model
    _, content_hash, _ = query_model(model)
    return storage.nearest(db, embed_query(model, text, prompt_name, dims), k=k, model_hash=content_hash,
                           chunks=chunks)
