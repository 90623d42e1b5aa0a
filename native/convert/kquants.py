"""Block quantizers for the types llama.cpp's mixed recipes use: the K types Q4_K, Q5_K and Q6_K
(super-blocks of 256) and the legacy Q5_0 / Q5_1 that replace Q4_K / Q5_K on rows that are not
whole super-blocks. The byte layouts are ggml's; the scale search is our own.

How the scales are found, for every (sub-)block at once:
1. A grid of candidate inverse scales around the obvious one (range / levels). For each
   candidate the values are rounded to integer levels, and with those levels fixed the best
   scale (and offset, for the affine types) has a closed form: a least-squares fit. Its squared
   error follows from the same sums, so a candidate costs one rounding pass and three sums.
   The candidate with the least error wins. Unlike llama.cpp we weigh every value the same:
   the squared error of the weights is what we minimise.
2. The K types then store the sub-block scales as small integers times one fp16 super-block
   scale. After rounding them we refit the super-block scale(s) by least squares with the
   levels and integer scales fixed and re-round the levels (Q4_K / Q5_K also alternate this
   with a refit of each sub-block's scale and min), keeping a new encoding of a super-block
   only where it reconstructs it better.
On real weights (MiniLM, EmbeddingGemma) every matrix ends up closer to F32 than llama.cpp's
quantizer gets it (tests/runtime/test_kquant_writer.py); EmbeddingGemma's q4_k_m takes under a
minute on two cores.
"""

from __future__ import annotations

import numpy as np

from .common import ConversionError

QK_K = 256
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "Q5_0": 22, "Q5_1": 24}
BLOCK_ELEMS = {"Q4_K": QK_K, "Q5_K": QK_K, "Q6_K": QK_K, "Q5_0": 32, "Q5_1": 32}

# Candidate inverse scales (step 1 above): the obvious one (levels / range) times these factors.
# Beyond the range llama.cpp searches (about +-7% for Q4_K): for blocks of 16 or 32 values
# clipping the largest one often pays.
_GRID = np.linspace(0.87, 1.13, 27, dtype=np.float32)


def _fp16(x: np.ndarray) -> np.ndarray:
    """Round to the fp16 the file stores, back as float32, refusing what fp16 cannot hold."""
    with np.errstate(over="ignore"):
        h = np.asarray(x, dtype=np.float32).astype(np.float16)
    if not np.isfinite(h).all():
        raise ConversionError("a block scale overflows fp16: the tensor holds values too large for this type")
    return h.astype(np.float32)


def _safe_inv(d: np.ndarray) -> np.ndarray:
    out = np.zeros_like(d, dtype=np.float32)
    np.divide(np.float32(1), d, out=out, where=d != 0)
    return out


def _rowdot(a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Per-row sum of a * b (or of a), summed in float32 (rows are 16 or 32 values: exact enough,
    and several times faster than summing in float64), returned as float64 for the error algebra
    that follows, where the squared error is a small difference of large terms."""
    s = a.sum(axis=1) if b is None else np.einsum("ij,ij->i", a, b)
    return s.astype(np.float64)


def fit_affine(x: np.ndarray, nmax: int, offset_nonpositive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row of x (n, k): scale >= 0 and offset with x ~ scale * L + offset, L integers in [0, nmax].

    offset_nonpositive: the K types store the offset as -dmin * m with m >= 0, so it may not be
    positive (a row of positive values then starts its levels at zero).
    """
    k = x.shape[1]
    lo = x.min(axis=1)
    if offset_nonpositive:
        lo = np.minimum(lo, 0)
    span = x.max(axis=1) - lo
    sx = _rowdot(x, None)
    sx2 = _rowdot(x, x)
    best_err = np.full(x.shape[0], np.inf)
    best_scale = np.zeros(x.shape[0], np.float64)
    best_off = lo.astype(np.float64)
    shifted = x - lo[:, None]
    inv_span = _safe_inv(span)
    L = np.empty_like(x)
    for f in _GRID:
        np.multiply(shifted, ((nmax * f) * inv_span)[:, None], out=L)
        np.rint(L, out=L)
        np.clip(L, 0, nmax, out=L)
        sl = _rowdot(L, None)
        sl2 = _rowdot(L, L)
        sxl = _rowdot(x, L)
        det = k * sl2 - sl * sl
        ok = det > 0
        safe = np.where(ok, det, 1.0)
        scale = np.where(ok, (k * sxl - sx * sl) / safe, 0.0)
        off = np.where(ok, (sl2 * sx - sl * sxl) / safe, sx / k)
        if offset_nonpositive:
            pos = off > 0
            scale = np.where(pos, sxl / np.where(sl2 > 0, sl2, 1.0), scale)
            off = np.where(pos, 0.0, off)
        scale = np.maximum(scale, 0.0)
        err = scale * scale * sl2 + 2 * scale * off * sl + k * off * off - 2 * scale * sxl - 2 * off * sx + sx2
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
        best_off = np.where(better, off, best_off)
    return best_scale.astype(np.float32), best_off.astype(np.float32)


def fit_symmetric(x: np.ndarray, nlow: int) -> np.ndarray:
    """Per row of x (n, k): a scale with x ~ scale * L, L integers in [-nlow, nlow - 1].

    The scale's sign is free: the value of largest magnitude is tried at -nlow, the level
    the asymmetric range has one more of.
    """
    idx = np.abs(x).argmax(axis=1)
    amax = x[np.arange(x.shape[0]), idx]
    sx2 = _rowdot(x, x)
    best_err = sx2.copy()  # the all-zero encoding
    best_scale = np.zeros(x.shape[0], np.float64)
    inv = _safe_inv(amax)
    L = np.empty_like(x)
    for f in _GRID:
        np.multiply(x, (-(nlow * f) * inv)[:, None], out=L)
        np.rint(L, out=L)
        np.clip(L, -nlow, nlow - 1, out=L)
        sl2 = _rowdot(L, L)
        sxl = _rowdot(x, L)
        ok = sl2 > 0
        scale = np.where(ok, sxl / np.where(ok, sl2, 1.0), 0.0)
        err = sx2 - scale * sxl
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
    return best_scale.astype(np.float32)


def _levels(x: np.ndarray, step: np.ndarray, lo: int, hi: int, offset: np.ndarray | None = None) -> np.ndarray:
    """Integer levels of x for the given per-row step (and offset), clipped to [lo, hi]."""
    y = x - offset if offset is not None else x.copy()
    y *= _safe_inv(step)
    np.rint(y, out=y)
    np.clip(y, lo, hi, out=y)
    return y


def _sq_err(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    diff = recon - x
    return np.einsum("...ij,...ij->...", diff, diff, dtype=np.float64)


# ------------------------------------------------------------------ K types, affine (Q4_K, Q5_K)

def _sums3(x: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Per super-block (first axis) sums over the rest: a.a, a.b, b.b, x.a, x.b."""
    def dot(u, v):
        return np.einsum("nij,nij->n", u, v).astype(np.float64)
    return dot(a, a), dot(a, b), dot(b, b), dot(x, a), dot(x, b)


def _affine_k(x: np.ndarray, nmax: int, rounds: int = 2):
    """x: (n, 8, 32). Returns d, dmin (n,), sub-block scales and mins (n, 8) as 0..63, levels (n, 8, 32).

    After the first encoding, `rounds` times: refit (d, dmin) with the integer scales and levels
    fixed, then refit each sub-block's scale and min with its levels fixed and round them on the
    (new) d, dmin; every candidate is kept only where it lowers the super-block's error.
    """
    n = x.shape[0]
    s, off = fit_affine(x.reshape(n * 8, 32), nmax, offset_nonpositive=True)
    s = s.reshape(n, 8)
    m = (-off).reshape(n, 8)

    def encode(d, dmin, ls, lm):
        step = (d[:, None] * ls)[..., None]
        base = (dmin[:, None] * lm)[..., None]
        L = _levels(x, step, 0, nmax, offset=-base)
        return L, _sq_err(x, step * L - base)

    def integer(v, unit):
        return np.clip(np.rint(v * _safe_inv(unit)[:, None]), 0, 63)

    d = _fp16(s.max(axis=1) / 63)
    dmin = _fp16(m.max(axis=1) / 63)
    ls, lm = integer(s, d), integer(m, dmin)
    L, err = encode(d, dmin, ls, lm)

    def keep(cand):
        nonlocal d, dmin, ls, lm, L, err
        d2, dmin2, ls2, lm2 = cand
        L2, err2 = encode(d2, dmin2, ls2, lm2)
        take = err2 < err
        d, dmin = np.where(take, d2, d), np.where(take, dmin2, dmin)
        ls, lm = np.where(take[:, None], ls2, ls), np.where(take[:, None], lm2, lm)
        L, err = np.where(take[:, None, None], L2, L), np.where(take, err2, err)

    for _ in range(rounds):
        # (d, dmin) for the fixed levels and integer scales: x ~ d * (ls L) - dmin * lm.
        saa, sab, sbb, sxa, sxb = _sums3(x, ls[..., None] * L, np.broadcast_to(lm[..., None], x.shape))
        det = saa * sbb - sab * sab
        ok = det > 1e-9 * np.maximum(saa * sbb, 1e-30)
        safe = np.where(ok, det, 1.0)
        d2 = np.where(ok, (sxa * sbb - sxb * sab) / safe, d)
        dmin2 = np.where(ok, (sxa * sab - sxb * saa) / safe, dmin)
        ok &= (d2 >= 0) & (dmin2 >= 0)
        keep((_fp16(np.where(ok, d2, d)), _fp16(np.where(ok, dmin2, dmin)), ls, lm))

        # Each sub-block's (scale, min) for its fixed levels, rounded on d and dmin.
        k = x.shape[2]
        sl, sl2 = L.sum(axis=2, dtype=np.float64), np.einsum("nij,nij->ni", L, L).astype(np.float64)
        sx, sxl = x.sum(axis=2, dtype=np.float64), np.einsum("nij,nij->ni", x, L).astype(np.float64)
        det = k * sl2 - sl * sl
        ok = det > 0
        safe = np.where(ok, det, 1.0)
        s2 = np.where(ok, (k * sxl - sx * sl) / safe, s)
        m2 = np.where(ok, -(sl2 * sx - sl * sxl) / safe, m)
        s2, m2 = np.maximum(s2, 0), np.maximum(m2, 0)
        keep((d, dmin, integer(s2, d), integer(m2, dmin)))
    return d, dmin, ls.astype(np.uint8), lm.astype(np.uint8), L.astype(np.uint8)


def _pack_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and eight 6-bit mins into ggml's 12 bytes (see get_scale_min in gguf)."""
    out = np.empty((ls.shape[0], 12), np.uint8)
    out[:, 0:4] = (ls[:, :4] & 63) | ((ls[:, 4:] >> 4) << 6)
    out[:, 4:8] = (lm[:, :4] & 63) | ((lm[:, 4:] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:] & 15) | ((lm[:, 4:] & 15) << 4)
    return out


def _nibbles(L: np.ndarray) -> np.ndarray:
    """(n, 8, 32) levels -> (n, 128): sub-block 2j in the low nibbles, 2j + 1 in the high ones."""
    low = L[:, 0::2, :] & 15
    high = L[:, 1::2, :] & 15
    return (low | (high << 4)).reshape(L.shape[0], 128)


def _f16_bytes(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).view(np.uint8).reshape(-1, 2)


def q4_k(blocks: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 144) bytes: d, dmin, scales, 4-bit levels."""
    d, dmin, ls, lm, L = _affine_k(blocks.reshape(-1, 8, 32), 15)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_scales(ls, lm), _nibbles(L)], axis=1)


def q5_k(blocks: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 176) bytes: d, dmin, scales, high bits qh, low nibbles."""
    d, dmin, ls, lm, L = _affine_k(blocks.reshape(-1, 8, 32), 31)
    # qh byte i holds bit 4 of element i of sub-block k at bit k.
    qh = ((L >> 4) & 1) << np.arange(8, dtype=np.uint8)[None, :, None]
    qh = np.bitwise_or.reduce(qh, axis=1)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_scales(ls, lm), qh, _nibbles(L)], axis=1)


# ------------------------------------------------------------------ Q6_K (symmetric, 16 x 16)

def q6_k(blocks: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> (n, 210) bytes: low nibbles ql, high pairs qh, int8 scales, d."""
    n = blocks.shape[0]
    x = blocks.reshape(n, 16, 16)
    s = fit_symmetric(x.reshape(n * 16, 16), 32).reshape(n, 16)
    big = s[np.arange(n), np.abs(s).argmax(axis=1)]

    def encode(d):
        ls = np.clip(np.rint(s * _safe_inv(d)[:, None]), -128, 127)
        step = (d[:, None] * ls)[..., None]
        L = _levels(x, step, -32, 31)
        return ls, L, _sq_err(x, step * L)

    d = _fp16(big / -128)
    ls, L, err = encode(d)
    # Refit d for the fixed integer scales and levels, then re-derive both from it.
    a = ls[..., None] * L
    saa = np.einsum("nij,nij->n", a, a, dtype=np.float64)
    sxa = np.einsum("nij,nij->n", x, a, dtype=np.float64)
    d2 = _fp16(np.where(saa > 0, sxa / np.where(saa > 0, saa, 1.0), d))
    ls2, L2, err2 = encode(d2)
    take = err2 < err
    d = np.where(take, d2, d)
    ls = np.where(take[:, None], ls2, ls)
    L = np.where(take[:, None, None], L2, L)

    q = (L.reshape(n, 2, 128) + 32).astype(np.uint8)  # two halves of 128
    ql = (q[:, :, :64] & 15) | ((q[:, :, 64:] & 15) << 4)  # (n, 2, 64)
    quarters = (q >> 4).reshape(n, 2, 4, 32)
    qh = quarters[:, :, 0] | (quarters[:, :, 1] << 2) | (quarters[:, :, 2] << 4) | (quarters[:, :, 3] << 6)
    return np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), ls.astype(np.int8).view(np.uint8),
                           _f16_bytes(d)], axis=1)


# ------------------------------------------------------------------ legacy Q5_0 / Q5_1 (blocks of 32)

def _q5_bits(q: np.ndarray) -> np.ndarray:
    """(n, 32) levels 0..31 -> (n, 20): qh (bit i = bit 4 of element i, little-endian u32), then
    elements i and i + 16 in the low and high nibbles of byte i."""
    qh = np.packbits((q >> 4) & 1, axis=1, bitorder="little")
    qs = (q[:, :16] & 15) | ((q[:, 16:] & 15) << 4)
    return np.concatenate([qh, qs], axis=1)


def q5_0(blocks: np.ndarray) -> np.ndarray:
    """(n, 32) float32 -> (n, 22) bytes: d, qh, qs; value = d * (q - 16)."""
    d = _fp16(fit_symmetric(blocks, 16))
    L = _levels(blocks, d[:, None], -16, 15)
    return np.concatenate([_f16_bytes(d), _q5_bits((L + 16).astype(np.uint8))], axis=1)


def q5_1(blocks: np.ndarray) -> np.ndarray:
    """(n, 32) float32 -> (n, 24) bytes: d, m, qh, qs; value = d * q + m."""
    s, off = fit_affine(blocks, 31, offset_nonpositive=False)
    d, m = _fp16(s), _fp16(off)
    L = _levels(blocks, d[:, None], 0, 31, offset=m[:, None])
    return np.concatenate([_f16_bytes(d), _f16_bytes(m), _q5_bits(L.astype(np.uint8))], axis=1)


_QUANTIZERS = {"Q4_K": q4_k, "Q5_K": q5_k, "Q6_K": q6_k, "Q5_0": q5_0, "Q5_1": q5_1}


def quantize_rows(data: np.ndarray, type_name: str, rows_per_chunk: int | None = None,
                  on_rows=None) -> np.ndarray:
    """Rows of `data` (..., cols) in `type_name`'s blocks: uint8 (..., cols / block * bytes).

    Works in row chunks (about 1M values each) to bound the temporaries; on_rows(n) is called
    after each chunk, for a progress bar.
    """
    quant = _QUANTIZERS[type_name]
    elems, nbytes = BLOCK_ELEMS[type_name], BLOCK_BYTES[type_name]
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 0 or data.shape[-1] % elems:
        raise ConversionError(f"{type_name} needs a row length divisible by {elems}, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ConversionError(f"cannot quantize to {type_name}: the tensor holds NaN or infinity")
    cols = data.shape[-1]
    flat = data.reshape(-1, cols)
    nb = cols // elems
    out = np.empty((flat.shape[0], nb * nbytes), dtype=np.uint8)
    step = rows_per_chunk or max(1, (1 << 20) // cols)
    for r0 in range(0, flat.shape[0], step):
        chunk = np.ascontiguousarray(flat[r0:r0 + step]).reshape(-1, elems)
        out[r0:r0 + step] = quant(chunk).reshape(-1, nb * nbytes)
        if on_rows is not None:
            on_rows(min(step, flat.shape[0] - r0))
    return out.reshape(*data.shape[:-1], nb * nbytes)
