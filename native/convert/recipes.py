"""Per-tensor types of llama.cpp's mixed K recipes (Q4_K_M, Q5_K_M, Q6_K), so that our file holds
the same type for every tensor as llama.cpp's `llama_model_quantize` writes from the same F32 file.

The rules, as llama.cpp (src/llama-quant.cpp) applies them to models without an output matrix
(every embedding model: the token embedding doubles as the "output" in its eyes):
- the token embedding gets Q6_K, or Q8_0 if its rows are not whole super-blocks
  (Q6_K recipe: the same);
- attn_v / attn_qkv and ffn_down get Q6_K in some layers under the _M recipes (first eighth,
  last eighth, and every third layer between); llama.cpp counts those layers in its tensor
  order (numeric layer, then name), which for one tensor per layer is the layer index;
- every other quantizable matrix gets the recipe's base type;
- a K type on rows that are not whole 256-element super-blocks falls back: Q4_K -> Q5_0,
  Q5_K -> Q5_1, Q6_K -> Q8_0, and to F16 if not even 32 divides the row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import gguf
from gguf import GGMLQuantizationType as QT

# recipe: (base type, general.file_type)
K_RECIPES = {
    "q4_k_m": (QT.Q4_K, gguf.LlamaFileType.MOSTLY_Q4_K_M),
    "q5_k_m": (QT.Q5_K, gguf.LlamaFileType.MOSTLY_Q5_K_M),
    "q6_k": (QT.Q6_K, gguf.LlamaFileType.MOSTLY_Q6_K),
}
_FALLBACK = {QT.Q4_K: QT.Q5_0, QT.Q5_K: QT.Q5_1, QT.Q6_K: QT.Q8_0}
_LAYER = re.compile(r"blk\.(\d+)\.")


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _layer(name: str) -> int:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else -1


def _is_attn_v(name: str) -> bool:
    # llama.cpp gives fused QKV (and DeepSeek's KV projection) the attn_v rule.
    return any(k in name for k in ("attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"))


def _block_elems(qtype: QT) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][0]


def _with_fallback(qtype: QT, row: int) -> QT:
    if row % _block_elems(qtype) == 0:
        return qtype
    qtype = _FALLBACK.get(qtype, qtype)
    return qtype if row % _block_elems(qtype) == 0 else QT.F16


def k_recipe_types(recipe: str, names: Sequence[str], rows: Sequence[int], n_layer: int) -> list[QT]:
    """Types of the quantizable matrices `names` (row lengths `rows`) under `recipe`."""
    base = K_RECIPES[recipe][0]
    has_output = "output.weight" in names
    order = sorted(range(len(names)), key=lambda i: (_layer(names[i]), names[i]))
    n_attn_v = sum(1 for nm in names if _is_attn_v(nm))
    i_attn_v = i_ffn_down = 0
    out: list[QT] = [base] * len(names)
    for i in order:
        name, row = names[i], rows[i]
        qtype = base
        if name == "output.weight" or (not has_output and name == "token_embd.weight"):
            out[i] = _with_fallback(QT.Q8_0 if row % _block_elems(base) else QT.Q6_K, row)
            continue
        if name == "token_embd.weight":
            pass  # a separate output matrix exists: the embedding keeps the base type
        elif _is_attn_v(name):
            if recipe in ("q4_k_m", "q5_k_m") and _more_bits(i_attn_v, n_attn_v):
                qtype = QT.Q6_K
            i_attn_v += 1
        elif "ffn_down" in name:
            if recipe in ("q4_k_m", "q5_k_m") and _more_bits(i_ffn_down, n_layer):
                qtype = QT.Q6_K
            i_ffn_down += 1
        out[i] = _with_fallback(qtype, row)
    return out
