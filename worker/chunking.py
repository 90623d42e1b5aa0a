"""Long texts under overflow="chunk": token windows with their offsets, and one pooled vector.

A text is tokenized once with offsets (native.Model.token_offsets); its ids are cut into windows of
at most the model's window (max_tokens less the special tokens and the prompt's tokens) that share
`overlap` tokens with the next, and each window runs as prompt + window ids with the model's special
tokens around it. Every text of such a job is chunked, a text that fits being one chunk: then all of
the job's texts can be searched by chunk, and a text that fits gets exactly the vector `embed` gives.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from native import Encoded, Model
from schemas import chunk_overlap


class ChunkingError(ValueError):
    """A job that cannot be chunked as asked (the message says why); it fails as invalid."""


@dataclass(frozen=True)
class Window:
    idx: int          # the text's index in the job
    chunk: int        # the window's number within the text
    token_start: int  # [start, end) of the text's own token ids (no prompt, no specials)
    token_end: int
    char_start: int   # [start, end) of the text's characters those tokens came from
    char_end: int
    tokens: int       # the window's forward-pass length: specials and prompt included


def windows(n: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) windows of at most `size` over n tokens, consecutive ones sharing `overlap`."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"windows of {size} tokens cannot share {overlap}")
    if n <= size:
        return [(0, n)]
    out, start = [], 0
    while True:
        end = min(start + size, n)
        out.append((start, end))
        if end == n:
            return out
        start += size - overlap


def encode_chunks(model: Model, texts: list[str], prompt: str, overlap: int | None) -> tuple[Encoded, list[Window]]:
    """Every text's windows as one Encoded batch (in text, then window order) and their offsets."""
    t0 = time.perf_counter()
    lead, trail = model.special_ids
    around = [x for x in (lead,) if x is not None], [x for x in (trail,) if x is not None]
    seqs: list[np.ndarray] = []
    out: list[Window] = []
    p = len(prompt)
    for i, text in enumerate(texts):
        try:
            ids, offsets = model.token_offsets(prompt + text)
        except ValueError as e:
            raise ChunkingError(f"overflow='chunk' is not available here: {e}") from None
        # The prompt's tokens are those that end within it. A token that straddles the boundary (a
        # prompt ending in a space, as EmbeddingGemma's do, joins "\u2581" to the text's first word)
        # belongs to the text, so that the first window's ids are exactly prompt + text's ids; its
        # character span is cut at the text's start.
        n_prompt = int(np.count_nonzero(offsets[:, 1] <= p)) if p else 0
        if (offsets[n_prompt:, 1] <= p).any():
            raise ChunkingError(f"texts[{i}]: the prompt's tokens are not a prefix of the tokens of prompt + text")
        body, spans = ids[n_prompt:], np.maximum(offsets[n_prompt:] - p, 0)
        size = model.max_tokens - len(around[0]) - len(around[1]) - n_prompt
        ov = chunk_overlap(overlap, size)
        if size < 1 or ov >= size:
            raise ChunkingError(f"overflow_overlap={ov} leaves no room: windows of texts[{i}] hold {max(size, 0)} "
                                f"tokens after the prompt and special tokens")
        head = np.asarray(around[0] + ids[:n_prompt].tolist(), dtype=np.int32)
        tail = np.asarray(around[1], dtype=np.int32)
        for c, (s, e) in enumerate(windows(len(body), size, ov)):
            seq = np.concatenate([head, body[s:e], tail])
            seqs.append(seq)
            cs, ce = (int(spans[s, 0]), int(spans[e - 1, 1])) if e > s else (0, 0)
            out.append(Window(i, c, s, e, cs, ce, len(seq)))
    lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
    encoded = Encoded(np.concatenate(seqs).astype(np.int32), lengths, np.zeros(len(seqs), np.bool_),
                      (time.perf_counter() - t0) * 1000.0)
    return encoded, out


def pool(vectors: np.ndarray, windows_: list[Window], n_texts: int, normalize: bool) -> np.ndarray:
    """One vector per text from its chunks' vectors: their mean weighted by each chunk's own token
    count (token_end - token_start; a text without tokens has one chunk, weighted 1).

    Weighted by tokens so that a short last window, which mostly repeats the overlap, counts for
    the few new tokens it holds rather than as much as a full window; the text's vector then leans
    on each part of it about as much as that part is long. Renormalized when the job normalizes:
    a mean of unit vectors is shorter than 1, and cosine search and dot products against the
    model's other (unit) vectors expect unit length."""
    dim = vectors.shape[1]
    sums = np.zeros((n_texts, dim), dtype=np.float64)
    weights = np.zeros(n_texts, dtype=np.float64)
    for w, v in zip(windows_, vectors):
        weight = max(1, w.token_end - w.token_start)
        sums[w.idx] += weight * v.astype(np.float64)
        weights[w.idx] += weight
    pooled = sums / weights[:, None]
    if normalize:
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        np.divide(pooled, norms, out=pooled, where=norms > 0)
    pooled = pooled.astype(np.float32)
    # A text of one chunk keeps that chunk's vector bit for bit (the round trip above may not).
    counts = np.bincount([w.idx for w in windows_], minlength=n_texts)
    for w, v in zip(windows_, vectors):
        if counts[w.idx] == 1:
            pooled[w.idx] = v
    return pooled
