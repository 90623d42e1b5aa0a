"""embedq's native embedding runtime.

`Model` loads a GGUF embedding model (memory-mapped) and turns texts into
vectors with the C++ runtime in `native._native`. This package imports no
other package of ours.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._native import GGUFError, _Model, best_kernels, inspect_gguf, kernel_sets, parse_gguf_bytes

__all__ = ["Model", "GGUFError", "inspect_gguf", "parse_gguf_bytes", "kernel_sets", "best_kernels"]


def _resolve(path_or_name: str | os.PathLike) -> Path:
    p = Path(path_or_name).expanduser()
    if p.exists():
        return p
    # A model name such as "all-MiniLM-L6-v2" or "all-MiniLM-L6-v2:q8_0".
    from . import hub

    return hub.resolve(str(path_or_name))


class Model:
    """An embedding model.

    threads: compute threads (default: all cores).
    activations: "f32" multiplies Q8_0 weights dequantized to f32 (most
        accurate, the default); "int8" quantizes activations to int8 blocks as
        llama.cpp does (faster on some CPUs, less accurate).
    max_tokens: override the model's maximum sequence length (tokens incl.
        special tokens); longer texts are truncated.
    batch_tokens: a forward pass holds at most this many tokens; larger
        inputs are split (bounds memory).
    kernels: force a kernel set ("scalar", "avx2", "avx512", "avx512vnni",
        "neon"); default
        is the best this CPU supports (or EMBEDQ_KERNELS).
    """

    def __init__(
        self,
        path_or_name: str | os.PathLike,
        threads: int | None = None,
        activations: str = "f32",
        max_tokens: int | None = None,
        batch_tokens: int = 8192,
        kernels: str | None = None,
    ):
        if threads is not None and threads < 1:
            raise ValueError("threads must be >= 1")
        self.path = _resolve(path_or_name)
        self._m = _Model(str(self.path), threads or 0, activations, max_tokens or 0, batch_tokens, kernels or "")
        self._prompts = dict(self._m.prompts)
        self._dims_allowed = tuple(int(d) for d in self._m.dims_allowed)

    # -- tokenization -------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids with the model's special tokens, not truncated."""
        return self._m.tokenize(_check_text(text))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text occupies in a forward pass (specials added, truncated)."""
        return self._m.token_counts(_check_texts(texts))

    # -- embedding ----------------------------------------------------------
    def embed(
        self,
        texts: Sequence[str] | str,
        prompt_name: str | None = None,
        prompt: str | None = None,
        dims: int | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """Embed texts: float32 array (len(texts), dims or dim), L2-normalized by default."""
        return self.embed_with_stats(texts, prompt_name=prompt_name, prompt=prompt, dims=dims, normalize=normalize)[0]

    def embed_with_stats(
        self,
        texts: Sequence[str] | str,
        prompt_name: str | None = None,
        prompt: str | None = None,
        dims: int | None = None,
        normalize: bool = True,
    ) -> tuple[np.ndarray, dict]:
        """Like embed(), also returning {tokenize_ms, forward_ms, tokens, truncated}."""
        if isinstance(texts, str):
            texts = [texts]
        texts = _check_texts(texts)
        prefix = self.prompt_text(prompt_name, prompt)
        dims = self.check_dims(dims)
        if prefix:
            texts = [prefix + t for t in texts]
        if not texts:
            return np.zeros((0, dims or self.dim), dtype=np.float32), {
                "tokenize_ms": 0.0, "forward_ms": 0.0, "tokens": 0, "truncated": 0}
        # Matryoshka: normalize after truncation, so the full vector is left raw here.
        truncate = dims is not None and dims != self.dim
        vectors, stats = self._m.embed(texts, normalize and not truncate)
        if truncate:
            vectors = np.ascontiguousarray(vectors[:, :dims])
            if normalize:
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors, stats

    def prompt_text(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        if prompt_name is not None and prompt is not None:
            raise ValueError("give prompt_name or prompt, not both")
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError("prompt must be a str")
            return prompt
        if prompt_name is None:
            return ""
        if prompt_name not in self._prompts:
            known = ", ".join(sorted(self._prompts)) or "none"
            raise ValueError(f"unknown prompt_name {prompt_name!r}; this model's prompts: {known}")
        return self._prompts[prompt_name]

    def check_dims(self, dims: int | None) -> int | None:
        if dims is None:
            return None
        if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or int(dims) not in self.dims_allowed:
            allowed = ", ".join(str(d) for d in self.dims_allowed)
            raise ValueError(f"dims={dims!r} is not supported by this model; allowed: {allowed}")
        return int(dims)

    # -- description ----------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self._m.dim)

    @property
    def max_tokens(self) -> int:
        return int(self._m.max_tokens)

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self._prompts)

    @property
    def dims_allowed(self) -> tuple[int, ...]:
        return self._dims_allowed

    @property
    def info(self) -> dict:
        i = dict(self._m.info)
        i.update(
            dim=self.dim,
            max_tokens=self.max_tokens,
            vocab_size=int(self._m.vocab_size),
            threads=int(self._m.threads),
            kernels=self._m.kernels,
            prompts=self.prompts,
            dims_allowed=list(self.dims_allowed),
            normalize=i.get("normalize") == "true",
        )
        return i

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, dim={self.dim}, threads={self._m.threads})"


def _check_text(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    return text


def _check_texts(texts: Iterable[str]) -> list[str]:
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
    return out
