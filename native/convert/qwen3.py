"""Qwen3 embedding models (Qwen3-Embedding-0.6B and its family): a Qwen3 decoder with a byte-level
BPE vocabulary, in the layout llama.cpp's converter writes for them (general.architecture = qwen3,
tokenizer.ggml.model = gpt2, tokenizer.ggml.pre = qwen2, pooling type LAST).

The vocabulary comes from tokenizer.json, in Hugging Face's id order, padded with "[PAD<i>]"
entries (type UNUSED) up to the embedding table's rows as llama.cpp pads it. Only the tokenizer
the runtime reproduces is accepted: NFC, Qwen2's split regex, ByteLevel without prefix space,
plain BPE merges; anything else is refused rather than converted into wrong ids.

EOS: Qwen3-Embedding's tokenizer_config names <|im_end|> as EOS, but its post-processor appends
<|endoftext|> to every text. As llama.cpp's converter (gguf's SpecialVocab) does, the token the
post-processor appends becomes tokenizer.ggml.eos_token_id and the configured one the EOT."""

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
    pair_adds_separator,
    read_json,
    read_safetensors_index,
    sentence_transformers_keys,
)

# Qwen2's pre-tokenizer regex, the one split the runtime implements (bpe.cpp).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_EOT_KEY = "tokenizer.ggml.eot_token_id"


def _check_pipeline(path: Path, tj: dict) -> None:
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise ConversionError(f"{path}: expected a BPE tokenizer, got {model.get('type')}")
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") \
            or model.get("ignore_merges") or model.get("dropout"):
        raise ConversionError(f"{path}: BPE options other than Qwen's (byte_fallback, prefixes, ignore_merges, "
                              "dropout) are not supported")
    norm = tj.get("normalizer") or {}
    if norm.get("type") != "NFC":
        raise ConversionError(f"{path}: normalizer {norm.get('type')} is not supported (Qwen uses NFC)")
    pre = tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    ok = (len(steps) == 2 and steps[0].get("type") == "Split"
          and (steps[0].get("pattern") or {}).get("Regex") == QWEN2_PATTERN
          and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
          and steps[1].get("type") == "ByteLevel" and not steps[1].get("add_prefix_space")
          and not steps[1].get("use_regex"))
    if not ok:
        raise ConversionError(f"{path}: only Qwen2's pre-tokenizer (its split regex, then ByteLevel) is supported")


def _trailing_special(tj: dict) -> str | None:
    """The special token the post-processor appends to a single text, if any."""
    pp = tj.get("post_processor") or {}
    for proc in pp.get("processors", [pp]):
        if proc.get("type") == "TemplateProcessing":
            single = proc.get("single") or []
            if any("SpecialToken" in s for s in single[:-1]):
                raise ConversionError("a post-processor that puts special tokens before the text is not supported")
            return single[-1].get("SpecialToken", {}).get("id") if single else None
    return None


def _qwen_vocab(m: ModelPlan, model_dir: Path, n_rows: int) -> None:
    tj_path = model_dir / "tokenizer.json"
    tj = read_json(tj_path)
    _check_pipeline(tj_path, tj)
    index = byte_level_bpe_vocab(m, tj, tj_path, n_rows, "qwen2")
    tcfg = read_json(model_dir / "tokenizer_config.json", required=False)

    def content(x) -> str | None:
        return x.get("content") if isinstance(x, dict) else x

    last = _trailing_special(tj)
    configured_eos = content(tcfg.get("eos_token"))
    eos = last or configured_eos
    if eos is not None and eos in index:
        m.put("add_eos_token_id", index[eos])
    if last and configured_eos and configured_eos != last and configured_eos in index:
        m.put(_EOT_KEY, index[configured_eos], gguf.GGUFValueType.UINT32)
    pad = content(tcfg.get("pad_token"))
    if pad in index:
        m.put("add_pad_token_id", index[pad])
    bos = content(tcfg.get("bos_token"))
    if bos in index:
        m.put("add_bos_token_id", index[bos])
    m.put("add_add_bos_token", False)
    m.put("add_add_eos_token", last is not None)
    # What llama.cpp should do with pairs (reranking); we embed single texts only.
    m.put("add_add_sep_token", pair_adds_separator(tj, last, {t for t in (last, configured_eos) if t}))


_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _tensor_name(hf: str) -> str:
    """GGUF name of a Qwen3Model / Qwen3ForCausalLM weight; "" for the LM head (an embedding
    model never reads it) and for anything unknown (refused by the caller)."""
    name = hf.removeprefix("model.")
    if name == "embed_tokens.weight":
        return "token_embd.weight"
    if name == "norm.weight":
        return "output_norm.weight"
    parts = name.split(".")
    if len(parts) > 3 and parts[0] == "layers" and parts[1].isdigit() and parts[-1] == "weight":
        sub = ".".join(parts[2:-1])
        if sub in _LAYER:
            return f"blk.{int(parts[1])}.{_LAYER[sub]}.weight"
    return ""


def build_qwen3(model_dir: Path, cfg: dict) -> ModelPlan:
    hidden = int(cfg["hidden_size"])
    n_head = int(cfg["num_attention_heads"])
    n_layer = int(cfg["num_hidden_layers"])
    m = ModelPlan(arch="qwen3", n_embd=hidden)
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ConversionError(f"activation {act!r} is not supported (Qwen3 uses silu)")
    if cfg.get("attention_bias"):
        raise ConversionError("attention biases are not supported (Qwen3 has none)")
    if cfg.get("use_sliding_window"):
        raise ConversionError("sliding-window attention is not supported")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConversionError(f"RoPE scaling {rope} is not supported")
    theta = cfg.get("rope_theta", rope.get("rope_theta", 1_000_000.0))
    head_dim = int(cfg.get("head_dim") or hidden // n_head)

    m.put("add_context_length", int(cfg.get("max_position_embeddings", 32768)))
    m.put("add_embedding_length", hidden)
    m.put("add_feed_forward_length", int(cfg["intermediate_size"]))
    m.put("add_block_count", n_layer)
    m.put("add_head_count", n_head)
    m.put("add_head_count_kv", int(cfg.get("num_key_value_heads", n_head)))
    m.put("add_key_length", head_dim)
    m.put("add_value_length", head_dim)
    m.put("add_rope_freq_base", float(theta))
    m.put("add_layer_norm_rms_eps", float(cfg.get("rms_norm_eps", 1e-6)))

    files = model_weight_files(model_dir)
    entries = {hf: e for f in files for hf, e in read_safetensors_index(f).items()}
    emb = next((e for hf, e in entries.items() if _tensor_name(hf) == "token_embd.weight"), None)
    if emb is None:
        raise ConversionError(f"{model_dir}: no embed_tokens.weight")
    n_rows = int(emb.shape[0])
    _qwen_vocab(m, model_dir, n_rows)
    for hf, entry in entries.items():
        name = _tensor_name(hf)
        if not name:
            if hf.removeprefix("model.") == "lm_head.weight" or hf == "lm_head.weight":
                continue
            raise ConversionError(f"{model_dir}: unexpected tensor {hf!r} for a Qwen3 model")
        load: Callable[[], np.ndarray] = lambda e=entry: load_safetensor(e)
        m.tensors.append(TensorPlan(name, entry.shape, load))
    sentence_transformers_keys(m, model_dir, cfg, tok_lowercase=False)
    return m
