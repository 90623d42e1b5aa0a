"""A tiny BERT written with the gguf package: small enough to mutate thousands
of times in a fuzz loop, shaped like the real thing (same keys and tensors)."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    "\u2581" + w for w in ["hello", "world", "the", "a", "cat", "dog", "run", "un", "!", ",", "."]
] + ["s", "ing", "ed", "##x".lstrip("#")]


# Block types the gguf package can quantize (it only reads the K types).
BLOCK_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")
MIXED_TYPES = BLOCK_TYPES + ("f16", "bf16", "f32")


def write_tiny_bert(path: Path, hidden: int = 32, layers: int = 2, heads: int = 2, ff: int = 64, ctx: int = 16,
                    seed: int = 0, dtype: str = "f32") -> Path:
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_name("tiny-bert")
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ff)
    w.add_block_count(layers)
    w.add_head_count(heads)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_tokenizer_model("bert")
    w.add_token_list(VOCAB)
    w.add_token_types([3 if t.startswith("[") else 1 for t in VOCAB])
    w.add_unk_token_id(1)
    w.add_bos_token_id(2)
    w.add_sep_token_id(3)
    w.add_pad_token_id(0)
    w.add_token_type_count(2)

    n_matrix = [0]

    def t(name, *shape, scale=0.2):
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        # "dq_<type>": the weights <type> would hold, dequantized by the gguf package and stored as
        # F32 (what a runtime computing with <type> must reproduce).
        dequantized = dtype.startswith("dq_")
        qtype = dtype[3:] if dequantized else dtype
        if qtype == "mixed" and len(shape) == 2:  # one file, every type the gguf package can write
            qtype = MIXED_TYPES[n_matrix[0] % len(MIXED_TYPES)]
            n_matrix[0] += 1
        if dequantized and len(shape) == 2 and (qtype in BLOCK_TYPES or qtype in ("f16", "bf16")):
            q = gguf.GGMLQuantizationType[qtype.upper()]
            w.add_tensor(name, gguf.quants.dequantize(gguf.quants.quantize(a, q), q).astype(np.float32))
        elif qtype in BLOCK_TYPES and len(shape) == 2 and shape[-1] % 32 == 0:
            q = gguf.GGMLQuantizationType[qtype.upper()]
            w.add_tensor(name, gguf.quants.quantize(a, q), raw_dtype=q)
        elif qtype == "f16" and len(shape) == 2:
            w.add_tensor(name, a.astype(np.float16))
        elif qtype == "bf16" and len(shape) == 2:
            bits = gguf.quants.quantize(a, gguf.GGMLQuantizationType.BF16).view(np.uint16)
            w.add_tensor(name, bits, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, a)

    def norm(name):
        w.add_tensor(name + ".weight", (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
        w.add_tensor(name + ".bias", (0.1 * rng.standard_normal(hidden)).astype(np.float32))

    t("token_embd.weight", len(VOCAB), hidden)
    t("position_embd.weight", ctx, hidden)
    t("token_types.weight", 2, hidden)
    norm("token_embd_norm")
    for i in range(layers):
        p = f"blk.{i}."
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t(p + n + ".weight", hidden, hidden)
            t(p + n + ".bias", hidden)
        norm(p + "attn_output_norm")
        t(p + "ffn_up.weight", ff, hidden)
        t(p + "ffn_up.bias", ff)
        t(p + "ffn_down.weight", hidden, ff)
        t(p + "ffn_down.bias", hidden)
        norm(p + "layer_output_norm")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
