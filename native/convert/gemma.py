"""EmbeddingGemma (Gemma 3 text encoder): the SentencePiece vocabulary read straight from its
protobuf, tensor names and the dense projections, in the layout llama.cpp's converter writes."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
from gguf import TokenType

from .common import (
    ConversionError,
    ModelPlan,
    TensorPlan,
    load_safetensor,
    looks_special,
    pb_fields,
    model_weight_files,
    read_json,
    read_safetensors_index,
    sentence_transformers_keys,
    special_tokens,
    st_modules,
)


# sentencepiece ModelProto.SentencePiece.Type -> the type llama.cpp's converter
# derives through SentencePieceProcessor (IsUnknown/IsControl/IsUnused/IsByte, else
# normal). USER_DEFINED pieces therefore count as NORMAL here.
_SP_TYPES = {1: TokenType.NORMAL, 2: TokenType.UNKNOWN, 3: TokenType.CONTROL,
             4: TokenType.NORMAL, 5: TokenType.UNUSED, 6: TokenType.BYTE}


def _read_sentencepiece(path: Path) -> tuple[list[bytes], list[float], list[int], bool]:
    """Pieces, scores, token types and add_dummy_prefix from a tokenizer.model.

    Field numbers come from sentencepiece_model.proto: ModelProto.pieces = 1,
    normalizer_spec = 3; SentencePiece.piece = 1, score = 2, type = 3;
    NormalizerSpec.add_dummy_prefix = 3 (default true).
    """
    data = path.read_bytes()
    pieces: list[bytes] = []
    scores: list[float] = []
    types: list[int] = []
    add_dummy_prefix = True
    for num, wire, val in pb_fields(data):
        if num == 1 and wire == 2:
            piece, score, kind = b"", 0.0, 1
            for pnum, _, pval in pb_fields(val):
                if pnum == 1:
                    piece = bytes(pval)
                elif pnum == 2:
                    (score,) = struct.unpack("<f", pval)
                elif pnum == 3:
                    kind = pval
            pieces.append(piece)
            scores.append(score)
            types.append(int(_SP_TYPES.get(kind, TokenType.NORMAL)))
        elif num == 3 and wire == 2:
            for nnum, _, nval in pb_fields(val):
                if nnum == 3:
                    add_dummy_prefix = bool(nval)
    if not pieces:
        raise ConversionError(f"{path}: no sentencepiece pieces found")
    return pieces, scores, types, add_dummy_prefix


def _gemma_vocab(m: ModelPlan, model_dir: Path, cfg: dict) -> int:
    sp_path = model_dir / "tokenizer.model"
    if not sp_path.is_file():
        raise ConversionError(f"{model_dir}: tokenizer.model (sentencepiece) is required for Gemma")
    pieces, scores, types, add_dummy_prefix = _read_sentencepiece(sp_path)
    n_vocab = int(cfg.get("vocab_size") or len(pieces))
    tokens = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    tscores = [-10000.0] * n_vocab
    ttypes = [int(TokenType.UNUSED)] * n_vocab
    k = min(n_vocab, len(pieces))
    tokens[:k], tscores[:k], ttypes[:k] = pieces[:k], scores[:k], types[:k]

    # Added tokens override the sentencepiece entries, the way HF (and llama.cpp)
    # resolve them; ids past the embedding matrix (e.g. <image_soft_token>) have no
    # row to point at and are dropped.
    for text, i in read_json(model_dir / "added_tokens.json", required=False).items():
        if i < n_vocab:
            tokens[i], tscores[i], ttypes[i] = text.encode(), -1000.0, int(TokenType.USER_DEFINED)
    tcfg = read_json(model_dir / "tokenizer_config.json", required=False)
    for sid, info in (tcfg.get("added_tokens_decoder") or {}).items():
        i = int(sid)
        if i >= n_vocab:
            continue
        text = info["content"]
        if info.get("special") or looks_special(text):
            ttypes[i] = int(TokenType.CONTROL)
        else:
            # user-defined pieces are matched against already-normalized text
            text = text.replace("\u2581", " ")
            ttypes[i] = int(TokenType.USER_DEFINED)
        tokens[i], tscores[i] = text.encode(), -1000.0

    m.put("add_tokenizer_model", "llama")
    m.put("add_tokenizer_pre", "default")
    m.put("add_token_list", tokens)
    m.put("add_token_scores", tscores)
    m.put("add_token_types", ttypes)
    m.put("add_add_space_prefix", bool(add_dummy_prefix))

    index: dict[str, int] = {}
    for i, t in enumerate(tokens):
        index.setdefault(t.decode("utf-8", "replace"), i)
    tj = read_json(model_dir / "tokenizer.json", required=False)
    special_tokens(m, model_dir, index.get, tj, bert_style=False)
    return n_vocab


_GEMMA_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gemma_tensor_name(hf: str) -> str:
    name = hf.removeprefix("model.")
    if name == "embed_tokens.weight":
        return "token_embd.weight"
    if name == "norm.weight":
        return "output_norm.weight"
    parts = name.split(".")
    if len(parts) > 3 and parts[0] == "layers" and parts[1].isdigit() and parts[-1] == "weight":
        sub = ".".join(parts[2:-1])
        if sub in _GEMMA_LAYER:
            return f"blk.{int(parts[1])}.{_GEMMA_LAYER[sub]}.weight"
    return ""


def _plus_one(load: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    # Gemma's RMSNorm scales by (1 + w); llama.cpp stores 1 + w so the runtime
    # multiplies by the stored value like any other RMSNorm.
    return lambda: np.asarray(load(), dtype=np.float32) + np.float32(1.0)


def build_gemma_embedding(model_dir: Path, cfg: dict) -> ModelPlan:
    m = ModelPlan(arch="gemma-embedding", n_embd=int(cfg["hidden_size"]))
    n_layer = int(cfg["num_hidden_layers"])
    head_dim = int(cfg.get("head_dim", 256))
    m.put("add_context_length", int(cfg.get("max_position_embeddings", 2048)))
    m.put("add_embedding_length", int(cfg["hidden_size"]))
    m.put("add_feed_forward_length", int(cfg["intermediate_size"]))
    m.put("add_block_count", n_layer)
    m.put("add_head_count", int(cfg["num_attention_heads"]))
    m.put("add_head_count_kv", int(cfg.get("num_key_value_heads", cfg["num_attention_heads"])))
    m.put("add_key_length", head_dim)
    m.put("add_value_length", head_dim)
    m.put("add_layer_norm_rms_eps", float(cfg.get("rms_norm_eps", 1e-6)))
    rope = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", rope.get("full_attention", {}).get("rope_theta", 1_000_000.0))
    theta_swa = cfg.get("rope_local_base_freq", rope.get("sliding_attention", {}).get("rope_theta", 10_000.0))
    m.put("add_rope_freq_base", float(theta))
    m.put("add_rope_freq_base_swa", float(theta_swa))
    # config.json holds the trained window; transformers' config class rewrites it
    # on load, which is why we read the raw file.
    m.put("add_sliding_window", int(cfg["sliding_window"]))
    layer_types = cfg.get("layer_types")
    if layer_types:
        if len(layer_types) != n_layer:
            raise ConversionError(f"layer_types has {len(layer_types)} entries for {n_layer} layers")
        # Same bool-per-layer form llama.cpp's converters use for other models.
        m.put("add_sliding_window_pattern", [t == "sliding_attention" for t in layer_types])
    if cfg.get("final_logit_softcapping"):
        m.put("add_final_logit_softcapping", float(cfg["final_logit_softcapping"]))
    if cfg.get("attn_logit_softcapping"):
        raise ConversionError("attention logit soft-capping is not supported")
    m.put("add_causal_attention", False)

    n_vocab = _gemma_vocab(m, model_dir, cfg)
    for file in model_weight_files(model_dir):
        for hf, entry in read_safetensors_index(file).items():
            name = _gemma_tensor_name(hf)
            if not name:
                raise ConversionError(f"{file}: unexpected tensor {hf!r} for a Gemma3 embedding model")
            load: Callable[[], np.ndarray] = lambda e=entry: load_safetensor(e)
            shape = entry.shape
            if name == "token_embd.weight":
                if shape[0] < n_vocab:
                    raise ConversionError(f"token embedding has {shape[0]} rows, vocabulary {n_vocab}")
                # rows past the tokenizer's vocabulary can never be looked up
                shape = (n_vocab, shape[1])
                load = lambda e=entry, n=n_vocab: load_safetensor(e)[:n]
            if name.endswith("norm.weight"):
                load = _plus_one(load)
            m.tensors.append(TensorPlan(name, shape, load))

    dense = [x for x in st_modules(model_dir) if x.get("type", "").endswith("Dense")]
    if len(dense) > 2:
        raise ConversionError(f"{len(dense)} Dense modules; llama.cpp's layout has room for two")
    for slot, mod in zip(("dense_2", "dense_3"), dense):
        mdir = model_dir / mod["path"]
        mcfg = read_json(mdir / "config.json")
        act = mcfg.get("activation_function", "torch.nn.modules.linear.Identity")
        if not act.endswith("Identity"):
            raise ConversionError(f"{mdir}: Dense activation {act} is not supported (only Identity)")
        entries = read_safetensors_index(mdir / "model.safetensors")
        for hf, entry in entries.items():
            if hf not in ("linear.weight", "linear.bias"):
                raise ConversionError(f"{mdir}: unexpected tensor {hf!r}")
            suffix = hf.rpartition(".")[2]
            m.tensors.append(TensorPlan(f"{slot}.{suffix}", entry.shape, lambda e=entry: load_safetensor(e)))
        m.put(f"gemma-embedding.{slot}_feat_in", int(mcfg["in_features"]), gguf.GGUFValueType.UINT32)
        m.put(f"gemma-embedding.{slot}_feat_out", int(mcfg["out_features"]), gguf.GGUFValueType.UINT32)

    sentence_transformers_keys(m, model_dir, cfg, tok_lowercase=False)
    return m
