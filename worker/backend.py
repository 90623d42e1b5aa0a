"""The worker's view of the embedding runtime.

The coalescer and the task talk to an `EmbeddingBackend`, not to `native.Model` directly, so the
batching code states exactly what it needs from the runtime. `NativeBackend` is the real one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from schemas import ServedModel
from schemas.settings import model_label


class EmbeddingBackend(Protocol):
    info: dict
    fingerprint: str  # identifies everything that changes the vectors (cache key)

    def served(self) -> ServedModel:
        """Name, aliases, dim, allowed dims and prompts, for validating jobs."""

    def embed_with_stats(self, texts: Sequence[str], prompt_name: str | None, dims: int | None,
                         normalize: bool) -> tuple[np.ndarray, dict]:
        """(float32 array (n, dims or dim), {tokenize_ms, forward_ms, tokens, truncated})."""

    def token_counts(self, texts: Sequence[str], prompt_name: str | None = None) -> list[int]:
        """Tokens each text occupies in a forward pass (after truncation, with special tokens)."""

    def untruncated_length(self, text: str, prompt_name: str | None = None) -> int:
        """Tokens the text would need without truncation."""


class NativeBackend:
    """native.Model behind the EmbeddingBackend interface; one per worker process (weights are mmap'd,
    so worker processes on one machine share the pages)."""

    def __init__(self, model: str | os.PathLike, threads: int | None = None, activations: str = "f32"):
        import native

        self.model = native.Model(model, threads=threads, activations=activations)
        self.name = model_label(str(model))
        self.path = Path(self.model.path)
        self.info = dict(self.model.info)
        self.dim = int(self.model.dim)
        self.max_tokens = int(self.model.max_tokens)
        size = self.path.stat().st_size
        # Anything that changes the numbers a text maps to belongs in the cache key.
        self.fingerprint = "|".join(str(x) for x in (
            self.name, self.path.name, size, self.info.get("weight_type", ""), activations))

    def served(self) -> ServedModel:
        # A job may name the model as served, by file, or without a ":q8_0"-style variant suffix.
        aliases = {self.name, self.name.split(":")[0], self.path.stem, self.path.name, str(self.path)}
        return ServedModel(name=self.name, aliases=frozenset(aliases), dim=self.dim,
                           dims_allowed=tuple(self.model.dims_allowed), prompts=self.model.prompts)

    def embed_with_stats(self, texts, prompt_name=None, dims=None, normalize=True):
        return self.model.embed_with_stats(list(texts), prompt_name=prompt_name, dims=dims, normalize=normalize)

    def token_counts(self, texts, prompt_name=None):
        prefix = self.model.prompt_text(prompt_name)
        return self.model.token_counts([prefix + t for t in texts] if prefix else list(texts))

    def untruncated_length(self, text, prompt_name=None):
        return len(self.model.tokenize(self.model.prompt_text(prompt_name) + text))
