"""Search stored vectors with a text: the query is embedded here, on the service side, by the same
model the workers serve, then storage compares vectors. (storage.nearest takes only a vector, so a
client that searches with a vector never loads a model.)"""
from __future__ import annotations

import threading

import storage
from native import Model
from schemas.settings import get_settings, model_label

_models: dict[tuple, tuple[Model, threading.Lock]] = {}
_models_lock = threading.Lock()


def embed_query(model: str, text: str, prompt_name: str | None = None, dims: int | None = None):
    """A query's vector from `model`, loaded once per process (memory-mapped). A Model computes one
    forward pass at a time, so concurrent queries take turns."""
    s = get_settings()
    key = (model, s.threads, s.activations)
    with _models_lock:
        if key not in _models:
            _models[key] = (Model(model, threads=s.threads, activations=s.activations), threading.Lock())
        m, lock = _models[key]
    with lock:
        return m.embed([text], prompt_name=prompt_name, dims=dims)[0]


def nearest_text(db: storage.Database, text: str, k: int = 5, model: str | None = None,
                 prompt_name: str | None = None, dims: int | None = None) -> list[tuple[str, int, str, float]]:
    """The k stored texts most similar to `text` as (job_id, index, text, score); `model` is a GGUF
    path or model name (default EMBEDQ_MODEL), and only its vectors of the same size are searched."""
    model = model or get_settings().model
    return storage.nearest(db, embed_query(model, text, prompt_name, dims), model_label(model), k=k)
