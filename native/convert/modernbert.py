"""ModernBERT encoders (gte-modernbert, modernbert-embed) in the layout llama.cpp's converter writes
for them: general.architecture = modern-bert, fused attn_qkv, ffn_up holding Wi's [input, gate]
halves (2 x feed_forward_length rows), no attn_norm in layer 0, the local window and the
global-layer period as attention.sliding_window / sliding_window_pattern, the two RoPE bases as
rope.freq_base / rope.freq_base_swa; tokenizer.ggml.model = gpt2, tokenizer.ggml.pre = modern-bert.

Only the tokenizer the runtime reproduces is accepted: no normalizer, ByteLevel alone (GPT-2's
regex, no prefix space), plain BPE merges, a post-processor writing [CLS] text [SEP]; the
vocabulary is padded with "[PAD<i>]" entries (type UNUSED) up to the embedding table's rows, as
llama.cpp pads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

from .common import (
    ConversionError,
    byte_level_bpe_vocab,
    ModelPlan,
    TensorPlan,
    load_safetensor,
    model_weight_files,
    read_json,
    read_safetensors_index,
    sentence_transformers_keys,
    special_tokens,
)

_KEY_ACT = "modern-bert.hidden_activation"  # llama.cpp's key; gguf-py on PyPI has no setter for it


def _check_pipeline(path: Path, tj: dict) -> None:
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise ConversionError(f"{path}: expected a BPE tokenizer, got {model.get('type')}")
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") \
            or model.get("ignore_merges") or model.get("dropout"):
        raise ConversionError(f"{path}: BPE options other than ModernBERT's (byte_fallback, prefixes, "
                              "ignore_merges, dropout) are not supported")
    if tj.get("normalizer"):
        raise ConversionError(f"{path}: normalizer {tj['normalizer'].get('type')} is not supported "
                              "(ModernBERT has none)")
    pre = tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    ok = (len(steps) == 1 and steps[0].get("type") == "ByteLevel" and not steps[0].get("add_prefix_space")
          and steps[0].get("use_regex", True))
    if not ok:
        raise ConversionError(f"{path}: only ModernBERT's pre-tokenizer (ByteLevel with GPT-2's regex, "
                              "no prefix space) is supported")


def _vocab(m: ModelPlan, model_dir: Path, n_rows: int) -> None:
    tj_path = model_dir / "tokenizer.json"
    tj = read_json(tj_path)
    _check_pipeline(tj_path, tj)
    index = byte_level_bpe_vocab(m, tj, tj_path, n_rows, "modern-bert")
    special_tokens(m, model_dir, index.get, tj, bert_style=True)


_LAYER = {
    "attn_norm": "attn_norm",
    "attn.Wqkv": "attn_qkv",
    "attn.Wo": "attn_output",
    "mlp_norm": "ffn_norm",
    "mlp.Wi": "ffn_up",
    "mlp.Wo": "ffn_down",
}


def _tensor_name(hf: str) -> str:
    """GGUF name of a ModernBertModel / ModernBertForMaskedLM weight; "" for the MLM head and
    decoder (an embedding model never reads them) and for anything unknown (refused by the caller)."""
    name = hf.removeprefix("model.")
    stem, _, kind = name.rpartition(".")
    if kind not in ("weight", "bias"):
        return ""
    if stem == "embeddings.tok_embeddings" and kind == "weight":
        return "token_embd.weight"
    if stem == "embeddings.norm":
        return f"token_embd_norm.{kind}"
    if stem == "final_norm":
        return f"output_norm.{kind}"
    parts = stem.split(".")
    if len(parts) > 2 and parts[0] == "layers" and parts[1].isdigit():
        sub = ".".join(parts[2:])
        if sub in _LAYER:
            return f"blk.{int(parts[1])}.{_LAYER[sub]}.{kind}"
    return ""


def _layer_pattern(cfg: dict, n_layer: int) -> int | list[bool]:
    """The global-layer period (llama.cpp's form), or one flag per layer (True = windowed) when
    the config's layer_types follow no period."""
    every = int(cfg.get("global_attn_every_n_layers", 3))
    if every < 1:
        raise ConversionError(f"global_attn_every_n_layers must be at least 1, got {every}")
    types = cfg.get("layer_types")
    if not types:
        return every
    if len(types) != n_layer or any(t not in ("full_attention", "sliding_attention") for t in types):
        raise ConversionError(f"layer_types {types} do not give full/sliding attention for {n_layer} layers")
    flags = [t == "sliding_attention" for t in types]
    return every if flags == [bool(i % every) for i in range(n_layer)] else flags


def _rope_bases(cfg: dict) -> tuple[float, float]:
    rp = cfg.get("rope_parameters") or {}
    full, local = rp.get("full_attention") or {}, rp.get("sliding_attention") or {}
    for kind in (full, local):
        if kind.get("rope_type", "default") != "default":
            raise ConversionError(f"RoPE scaling {rp} is not supported")
    if cfg.get("rope_scaling"):
        raise ConversionError(f"RoPE scaling {cfg['rope_scaling']} is not supported")
    g = full.get("rope_theta", cfg.get("global_rope_theta", 160000.0))
    loc = local.get("rope_theta", cfg.get("local_rope_theta", 10000.0))
    return float(g), float(loc if loc is not None else g)


def build_modernbert(model_dir: Path, cfg: dict) -> ModelPlan:
    hidden = int(cfg["hidden_size"])
    n_head = int(cfg["num_attention_heads"])
    n_layer = int(cfg["num_hidden_layers"])
    m = ModelPlan(arch="modern-bert", n_embd=hidden)
    act = cfg.get("hidden_activation", "gelu")
    if act not in ("gelu", "silu"):
        raise ConversionError(f"activation {act!r} is not supported (ModernBERT uses gelu; silu, for SwiGLU "
                              "derivatives such as Granite Embedding R2, is supported too)")
    if hidden % n_head:
        raise ConversionError(f"hidden_size {hidden} is not a multiple of num_attention_heads {n_head}")
    # transformers' config keeps local_attention; sliding_window is its half.
    window = int(cfg.get("local_attention") or 2 * int(cfg.get("sliding_window", 64)))
    full_theta, local_theta = _rope_bases(cfg)

    m.put("add_context_length", int(cfg.get("max_position_embeddings", 8192)))
    m.put("add_embedding_length", hidden)
    m.put("add_feed_forward_length", int(cfg["intermediate_size"]))
    m.put("add_block_count", n_layer)
    m.put("add_head_count", n_head)
    # llama.cpp's converter writes norm_eps under the RMS key only, though these are LayerNorms,
    # and llama.cpp's loader then refuses the file for want of the plain key: both are written.
    eps = float(cfg.get("norm_eps", 1e-5))
    m.put("add_layer_norm_eps", eps)
    m.put("add_layer_norm_rms_eps", eps)
    m.put("add_causal_attention", False)
    m.put("add_sliding_window", window)
    m.put("add_sliding_window_pattern", _layer_pattern(cfg, n_layer))
    m.put("add_rope_freq_base", full_theta)
    m.put("add_rope_freq_base_swa", local_theta)
    m.put("add_rope_scaling_type", gguf.RopeScalingType.NONE)
    m.put(_KEY_ACT, str(act), gguf.GGUFValueType.STRING)
    # What a classification head would pool (llama.cpp keeps it; an embedding never reads it).
    head_pool = {"cls": gguf.PoolingType.CLS, "mean": gguf.PoolingType.MEAN}.get(cfg.get("classifier_pooling", ""))
    if head_pool is not None:
        m.put("modern-bert.classifier.pooling_type", int(head_pool), gguf.GGUFValueType.UINT32)

    files = model_weight_files(model_dir)
    entries = {hf: e for f in files for hf, e in read_safetensors_index(f).items()}
    emb = next((e for hf, e in entries.items() if _tensor_name(hf) == "token_embd.weight"), None)
    if emb is None:
        raise ConversionError(f"{model_dir}: no embeddings.tok_embeddings.weight")
    n_rows = int(emb.shape[0])
    m.put("add_vocab_size", n_rows)
    _vocab(m, model_dir, n_rows)
    for hf, entry in entries.items():
        name = _tensor_name(hf)
        if not name:
            if hf.startswith(("head.", "decoder.")):
                continue
            raise ConversionError(f"{model_dir}: unexpected tensor {hf!r} for a ModernBERT model")
        load: Callable[[], np.ndarray] = lambda e=entry: load_safetensor(e)
        m.tensors.append(TensorPlan(name, entry.shape, load))
    sentence_transformers_keys(m, model_dir, cfg, tok_lowercase=False)
    return m
