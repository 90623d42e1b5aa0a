"""The worker's view of the embedding runtime.

The job runner and the coalescer talk to an `EmbeddingBackend`, not to `native.Model` directly, so
the service states exactly what it needs from the runtime: texts become token ids once (`encode`,
in the job's own thread), and batches of ids become vectors (`embed_encoded`, on the coalescer's
compute thread). Past `encode` nothing in the worker handles a text. `NativeBackend` is the real one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from native import Encoded, Model
from schemas import ServedModel
from schemas.settings import model_label


class EmbeddingBackend(Protocol):
    fingerprint: str  # identifies everything that changes the vectors (cache key)

    def served(self) -> ServedModel:
        """Name, aliases, dim, allowed dims and prompts, for validating jobs."""

    def encode(self, texts: Sequence[str], prompt_name: str | None) -> Encoded:
        """Token ids with the prompt applied, truncated, with the runtime's counts and timing."""

    def embed_encoded(self, encoded: Encoded, dims: int | None, normalize: bool) -> tuple[np.ndarray, dict]:
        """(float32 array (n, dims or dim), {forward_ms, tokens})."""


class NativeBackend:
    """native.Model behind the EmbeddingBackend interface; one per worker process (weights are mmap'd,
    so worker processes on one machine share the pages)."""

    def __init__(self, model: str | os.PathLike, threads: int | None = None, activations: str = "f32"):
        self.model = Model(model, threads=threads, activations=activations)
        self.name = model_label(str(model))
        self.path = Path(self.model.path)
        weight_type = self.model.info.get("weight_type", "")
        # Anything that changes the numbers a text maps to belongs in the cache key.
        self.fingerprint = "|".join(str(x) for x in (
            self.name, self.path.name, self.path.stat().st_size, weight_type, activations))

    def served(self) -> ServedModel:
        # A job may name the model as served, by file, or without a ":q8_0"-style variant suffix.
        aliases = {self.name, self.name.split(":")[0], self.path.stem, self.path.name, str(self.path)}
        return ServedModel(name=self.name, aliases=frozenset(aliases), dim=self.model.dim,
                           dims_allowed=self.model.dims_allowed, prompts=self.model.prompts)

    def encode(self, texts, prompt_name=None):
        return self.model.encode(list(texts), prompt_name=prompt_name)

    def embed_encoded(self, encoded, dims=None, normalize=True):
        return self.model.embed_encoded(encoded, dims=dims, normalize=normalize)
