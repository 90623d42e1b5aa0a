"""embedq's native embedding runtime.

`Model` loads a GGUF embedding model (memory-mapped) and turns texts into
vectors with the C++ runtime in `native._native`, in two steps that can run in
different processes: `Model.encode(texts)` tokenizes each text exactly once
into an `Encoded` batch of token ids, and `Model.embed_encoded(encoded)` runs
the forward pass on those ids (it never sees a string). `Model.embed` does
both. Of our packages it imports only `schemas` (EMBEDQ_HOME, in hub.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ._native import GGUFError, _Model, best_kernels, inspect_gguf, kernel_sets, parse_gguf_bytes

__all__ = ["Model", "Encoded", "GGUFError", "inspect_gguf", "parse_gguf_bytes", "kernel_sets", "best_kernels"]


@dataclass(frozen=True, eq=False)
class Encoded:
    """Texts as the forward pass sees them: special tokens added, truncated.

    ids: every text's token ids back to back (int32); lengths: ids per text
    (int64); truncated: whether each text was cut at max_tokens (bool);
    tokenize_ms: time spent producing these ids.
    """

    ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray
    tokenize_ms: float = 0.0

    def __post_init__(self):
        for name, dtype in (("ids", np.int32), ("lengths", np.int64), ("truncated", np.bool_)):
            a = np.asarray(getattr(self, name))
            if a.ndim != 1:
                raise ValueError(f"Encoded.{name} must be 1-D, got shape {a.shape}")
            if a.dtype != dtype:
                b = a.astype(dtype)
                if not np.array_equal(a, b):
                    raise ValueError(f"Encoded.{name} values do not fit {np.dtype(dtype).name}")
                a = b
            object.__setattr__(self, name, a)
        if len(self.truncated) != len(self.lengths):
            raise ValueError("Encoded.truncated and Encoded.lengths differ in length")
        if self.tokens != len(self.ids):
            raise ValueError(f"Encoded.lengths sum to {self.tokens} but there are {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def n_truncated(self) -> int:
        return int(np.count_nonzero(self.truncated))

    @property
    def offsets(self) -> np.ndarray:
        """Where each text's ids start in `ids`, and the end: (len + 1,) int64."""
        return np.concatenate(([0], np.cumsum(self.lengths)))

    def select(self, indices: Sequence[int] | np.ndarray) -> Encoded:
        """The texts at `indices` (ints or a boolean mask), in that order.
        The tokenizing time was spent in full, so tokenize_ms is kept."""
        idx = np.asarray(indices)
        idx = np.flatnonzero(idx) if idx.dtype == np.bool_ else idx.astype(np.intp)
        lengths = self.lengths[idx]
        src_start = self.offsets[:-1][idx]
        dst_start = np.cumsum(lengths) - lengths
        gather = np.arange(int(lengths.sum())) + np.repeat(src_start - dst_start, lengths)
        return Encoded(self.ids[gather], lengths, self.truncated[idx], self.tokenize_ms)

    @classmethod
    def concat(cls, parts: Iterable[Encoded]) -> Encoded:
        """One batch holding every part's texts, in order."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.bool_))
        return cls(np.concatenate([p.ids for p in parts]), np.concatenate([p.lengths for p in parts]),
                   np.concatenate([p.truncated for p in parts]), sum(p.tokenize_ms for p in parts))


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
    activations: how products with weights other than F32 treat activations
        (F32 weights always use f32). "int16" quantizes each activation row
        to int16 per block of 32 (error ~2^-16 of the block's largest value)
        for exact integer block products; Q8_0 weights keep their int8 quants,
        other types are quantized once at load to 12-bit blocks. "f32"
        converts the weights to f32 instead; both cost about the weights' own
        rounding. "auto" (default) is "int16" where the kernel set has
        VPDPWSSD (AVX-512 VNNI), which makes it faster, and "f32" elsewhere;
        info["activations"] names the one in use. "int8" quantizes
        activations to int8 blocks as llama.cpp does, for Q8_0 weights
        (faster on some CPUs, less accurate).
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
        activations: str = "auto",
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

    def token_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The tokenizer's ids for `text` WITHOUT the model's special tokens, and each id's
        character offsets [start, end) in `text` ((n, 2) int64), as HF `tokenizers` reports them.
        ValueError for a tokenizer that does not track offsets (WordPiece and Gemma's SentencePiece BPE do;
        XLM-R's Unigram, whose charsmap can change lengths, and Qwen3's byte-level BPE do not yet)."""
        got = self._m.tokenize_offsets(_check_text(text))
        if got is None:
            raise ValueError(f"the {self._m.info['tokenizer']!r} tokenizer of {self.path.name} does not give "
                             "token offsets (WordPiece and SentencePiece BPE models such as all-MiniLM-L6-v2 and "
                             "EmbeddingGemma do)")
        ids, starts, ends = got
        return ids, np.stack([starts, ends], axis=1) if len(ids) else np.zeros((0, 2), np.int64)

    @property
    def special_ids(self) -> tuple[int | None, int | None]:
        """The ids the model puts before and after every text (None where it adds none)."""
        lead, trail = int(self._m.leading_special), int(self._m.trailing_special)
        return (lead if lead >= 0 else None, trail if trail >= 0 else None)

    def encode(self, texts: Sequence[str] | str, prompt_name: str | None = None,
               prompt: str | None = None) -> Encoded:
        """Tokenize prompt + text for every text, once: what the forward pass sees."""
        if isinstance(texts, str):
            texts = [texts]
        prefix = self.prompt_text(prompt_name, prompt)
        return Encoded(*self._m.encode_batch(texts, prefix))

    def token_counts(self, texts: Sequence[str], prompt_name: str | None = None,
                     prompt: str | None = None) -> list[int]:
        """Tokens each text occupies in a forward pass (specials added, truncated)."""
        return self.encode(texts, prompt_name, prompt).lengths.tolist()

    def op_times(self, reset: bool = False) -> dict:
        """Forward-pass time split by operation since load (or the last reset): linear_ms (matrix
        products with their weight conversion, epilogues and barriers), attention_ms, and linear_ops
        (2 * tokens * in * out summed), from which the achieved GEMM rate follows."""
        t = dict(self._m.op_times())
        if reset:
            self._m.reset_op_times()
        return t

    @property
    def texts_tokenized(self) -> int:
        """Texts passed through the tokenizer since this model was loaded."""
        return int(self._m.texts_tokenized)

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
        self.check_dims(dims)
        encoded = self.encode(texts, prompt_name=prompt_name, prompt=prompt)
        vectors, stats = self.embed_encoded(encoded, dims=dims, normalize=normalize)
        return vectors, {"tokenize_ms": encoded.tokenize_ms, "forward_ms": stats["forward_ms"],
                         "tokens": stats["tokens"], "truncated": encoded.n_truncated}

    def embed_encoded(self, encoded: Encoded, dims: int | None = None,
                      normalize: bool = True) -> tuple[np.ndarray, dict]:
        """Vectors for encoded texts: float32 (len(encoded), dims or dim) and
        {forward_ms, tokens}. Ids and lengths are checked (ValueError) first; a
        vector that comes out NaN or infinite (a corrupt model whose weights
        overflow) raises GGUFError naming the text instead of being returned."""
        dims = self.check_dims(dims)
        # Matryoshka: normalize after truncation, so the full vector is left raw here.
        truncate = dims is not None and dims != self.dim
        vectors, stats = self._m.embed_ids(encoded.ids, encoded.lengths, normalize and not truncate)
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
