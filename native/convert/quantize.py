"""Tensor encodings for the GGUF writer: F32, F16 and Q8_0 (ggml's block of 32 int8 with an fp16
scale), rounded the way ggml rounds so our files match llama.cpp's byte for byte; and the types
of llama.cpp's K recipes (kquants: Q4_K, Q5_K, Q6_K and the fallbacks Q5_0, Q5_1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gguf import GGMLQuantizationType as QT

from . import kquants
from .common import ConversionError

QTYPES = {"f32": QT.F32, "f16": QT.F16, "q8_0": QT.Q8_0}

Q8_0_BLOCK = 32
_Q8_0_BYTES = 34  # fp16 scale + 32 int8


def _round_half_away(x: np.ndarray) -> np.ndarray:
    # ggml rounds with C roundf (halves away from zero). np.round rounds halves to
    # even, and trunc(x + 0.5) misrounds 0.49999997 because the sum rounds up in f32.
    # Splitting off the fraction is exact for |x| <= 127.
    a = np.abs(x)
    whole = np.floor(a)
    up = (a - whole) >= 0.5
    return np.copysign(whole + up, x)


def quantize_q8_0(data: np.ndarray, rows_per_chunk: int = 8192) -> np.ndarray:
    """ggml Q8_0: per 32 values one fp16 scale d = max|x|/127 and int8 round(x/d).

    Returns uint8 of shape (*leading, last_dim // 32 * 34), the byte layout ggml
    stores. Works in row chunks so a 262144 x 768 embedding does not need several
    gigabytes of temporaries.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 0 or data.shape[-1] % Q8_0_BLOCK:
        raise ConversionError(f"Q8_0 needs a row length divisible by {Q8_0_BLOCK}, got shape {data.shape}")
    lead = data.shape[:-1]
    cols = data.shape[-1]
    flat = data.reshape(-1, cols)
    nb = cols // Q8_0_BLOCK
    out = np.empty((flat.shape[0], nb * _Q8_0_BYTES), dtype=np.uint8)
    for r0 in range(0, flat.shape[0], rows_per_chunk):
        blocks = np.ascontiguousarray(flat[r0:r0 + rows_per_chunk]).reshape(-1, nb, Q8_0_BLOCK)
        d = np.abs(blocks).max(axis=2, keepdims=True) / np.float32(127)
        with np.errstate(divide="ignore"):
            inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
        q = _round_half_away(blocks * inv).astype(np.int8)
        packed = out[r0:r0 + blocks.shape[0]].reshape(-1, nb, _Q8_0_BYTES)
        packed[:, :, :2] = d.astype(np.float16).view(np.uint8)
        packed[:, :, 2:] = q.view(np.uint8)
    return out.reshape(*lead, nb * _Q8_0_BYTES)


def tensor_nbytes(shape: Sequence[int], qtype: QT) -> int:
    n = int(np.prod(shape, dtype=np.int64))
    if qtype == QT.F32:
        return 4 * n
    if qtype == QT.F16:
        return 2 * n
    if qtype == QT.Q8_0:
        return n // Q8_0_BLOCK * _Q8_0_BYTES
    if qtype.name in kquants.BLOCK_BYTES:
        return n // kquants.BLOCK_ELEMS[qtype.name] * kquants.BLOCK_BYTES[qtype.name]
    raise AssertionError(qtype)


def encode(data: np.ndarray, qtype: QT, on_rows=None) -> np.ndarray:
    """`data` in `qtype`'s bytes; on_rows(n) reports progress of the slow (K) types in rows."""
    if qtype == QT.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == QT.F16:
        return np.ascontiguousarray(data, dtype=np.float16)
    if qtype == QT.Q8_0:
        return quantize_q8_0(data)
    return kquants.quantize_rows(data, qtype.name, on_rows=on_rows)
