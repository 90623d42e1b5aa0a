"""The worker's view of the embedding runtime.

The job runner and the coalescer talk to an `EmbeddingBackend`, not to `native.Model` directly, so
the service states exactly what it needs from the runtime: texts become token ids once (`encode`,
in the job's own thread), and batches of ids become vectors (`embed_encoded`, on the coalescer's
compute thread). Past `encode` nothing in the worker handles a text. `NativeBackend` is the real one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from native import Encoded, Model, inspect_gguf
from schemas import ServedModel
from schemas.home import embedq_home
from schemas.settings import model_label
from storage import ModelFileInfo


class EmbeddingBackend(Protocol):
    fingerprint: str  # identifies everything that changes the vectors (cache key)

    def model_file(self) -> ModelFileInfo:
        """The model file's provenance record (content hash, architecture, weight type, pooling...)."""

    def served(self) -> ServedModel:
        """Name, aliases, dim, allowed dims and prompts, for validating jobs."""

    def encode(self, texts: Sequence[str], prompt_name: str | None) -> Encoded:
        """Token ids with the prompt applied, truncated, with the runtime's counts and timing."""

    def embed_encoded(self, encoded: Encoded, dims: int | None, normalize: bool) -> tuple[np.ndarray, dict]:
        """(float32 array (n, dims or dim), {forward_ms, tokens})."""

    def encode_chunks(self, texts: Sequence[str], prompt_name: str | None, overlap: int | None):
        """overflow="chunk": every text's windows as one Encoded and their offsets (worker/chunking.py)."""

    def full_tokens(self, text: str, prompt_name: str | None) -> int:
        """Tokens of prompt + text with the special tokens, not truncated (for overflow="reject")."""


POOLING = {0: "none", 1: "mean", 2: "cls", 3: "last"}  # GGUF's <arch>.pooling_type values


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered beside the model cache by (path, size, mtime) so a worker
    restart does not read a 1 GB model again."""
    st = path.stat()
    memo = embedq_home() / "hashes" / (hashlib.sha1(str(path.resolve()).encode()).hexdigest() + ".json")
    key = [str(path.resolve()), st.st_size, st.st_mtime_ns]
    try:
        saved = json.loads(memo.read_text())
        if saved["key"] == key:
            return saved["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "sha256": digest}))
        tmp.replace(memo)
    except OSError:
        pass  # a read-only home only costs the next start a re-read
    return digest


class NativeBackend:
    """native.Model behind the EmbeddingBackend interface; one per worker process (weights are mmap'd,
    so worker processes on one machine share the pages)."""

    def __init__(self, model: str | os.PathLike, threads: int | None = None, activations: str = "auto"):
        self.model = Model(model, threads=threads, activations=activations)
        self.name = model_label(str(model))
        self.path = Path(self.model.path)
        self.content_hash = file_sha256(self.path)
        # Anything that changes the numbers a text maps to belongs in the cache key: the file's
        # bytes (a re-converted or re-quantized file under the same name is another model) and how
        # its products are computed.
        # "auto" is keyed by what it resolved to: the same setting means different products on
        # machines with and without VPDPWSSD.
        self.fingerprint = f"{self.content_hash}|{self.model.info['activations']}"

    def model_file(self) -> ModelFileInfo:
        info = self.model.info
        meta = inspect_gguf(str(self.path))["metadata"]
        pooling = POOLING.get(int(meta.get(f"{info['architecture']}.pooling_type", 1)), "unknown")
        return ModelFileInfo(content_hash=self.content_hash, name=self.name, architecture=info["architecture"],
                             weight_type=info.get("weight_type", ""), pooling=pooling, dim=self.model.dim,
                             size=self.path.stat().st_size, path=str(self.path))

    def served(self) -> ServedModel:
        # A job may name the model as served, by file, or without a ":q8_0"-style variant suffix.
        aliases = {self.name, self.name.split(":")[0], self.path.stem, self.path.name, str(self.path)}
        return ServedModel(name=self.name, aliases=frozenset(aliases), dim=self.model.dim,
                           dims_allowed=self.model.dims_allowed, prompts=self.model.prompts,
                           content_hash=self.content_hash, max_tokens=self.model.max_tokens)

    def encode(self, texts, prompt_name=None):
        return self.model.encode(list(texts), prompt_name=prompt_name)

    def embed_encoded(self, encoded, dims=None, normalize=True):
        return self.model.embed_encoded(encoded, dims=dims, normalize=normalize)

    def encode_chunks(self, texts, prompt_name=None, overlap=None):
        from .chunking import encode_chunks

        return encode_chunks(self.model, list(texts), self.model.prompt_text(prompt_name), overlap)

    def full_tokens(self, text, prompt_name=None):
        return len(self.model.tokenize(self.model.prompt_text(prompt_name) + text))
