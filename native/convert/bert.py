"""BERT-family sentence encoders (all-MiniLM-L6-v2, bge, DistilBERT-based models and kin): WordPiece
vocabulary, normalizer flags and tensor names, in the layout llama.cpp's converter writes."""

from __future__ import annotations

from pathlib import Path

import gguf
from gguf import TokenType

from .common import (
    KEY_LOWERCASE,
    KEY_STRIP_ACCENTS,
    ConversionError,
    ModelPlan,
    TensorPlan,
    load_safetensor,
    looks_special,
    model_weight_files,
    read_json,
    read_safetensors_index,
    sentence_transformers_keys,
    special_tokens,
    st_modules,
)


def _bert_vocab(m: ModelPlan, model_dir: Path, cfg: dict) -> tuple[int, bool]:
    tj_path = model_dir / "tokenizer.json"
    tj = read_json(tj_path, required=False)
    if tj:
        model = tj.get("model", {})
        if model.get("type") != "WordPiece":
            raise ConversionError(f"{tj_path}: expected a WordPiece tokenizer, got {model.get('type')}")
        vocab: dict[str, int] = dict(model["vocab"])
    elif (model_dir / "vocab.txt").is_file():
        lines = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {t: i for i, t in enumerate(lines)}
    else:
        raise ConversionError(f"{model_dir}: neither tokenizer.json nor vocab.txt found")
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    for i, t in added.items():
        vocab.setdefault(t["content"], i)

    n_vocab = int(cfg.get("vocab_size", len(vocab)))
    if max(vocab.values()) >= n_vocab:
        raise ConversionError(f"tokenizer has ids beyond vocab_size={n_vocab}")
    by_id: list[str | None] = [None] * n_vocab
    for text, i in vocab.items():
        by_id[i] = text

    tokens: list[str] = []
    types: list[int] = []
    for i, text in enumerate(by_id):
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
            continue
        if i in added:
            kind = TokenType.CONTROL if added[i].get("special") or looks_special(text) else TokenType.USER_DEFINED
        else:
            kind = TokenType.NORMAL
        # llama.cpp's WPM tokenizer expects the "phantom space" form: a piece that
        # starts a word carries U+2581, a "##" continuation loses its marker.
        if kind != TokenType.CONTROL:
            text = text[2:] if text.startswith("##") else "\u2581" + text
        tokens.append(text)
        types.append(kind)

    norm = tj.get("normalizer") or {}
    tcfg = read_json(model_dir / "tokenizer_config.json", required=False)
    lowercase = _normalizer_flag(norm, "lowercase")
    if lowercase is None:
        lowercase = bool(tcfg.get("do_lower_case", False))
    strip_accents = _normalizer_flag(norm, "strip_accents")

    m.put("add_token_type_count", int(cfg.get("type_vocab_size", 1)))
    m.put("add_tokenizer_model", "bert")
    # llama.cpp ignores the pre-tokenizer name for WordPiece vocabularies (its own
    # converter derives one from a tokenization hash); "default" is always accepted.
    m.put("add_tokenizer_pre", "default")
    m.put("add_token_list", tokens)
    m.put("add_token_types", [int(t) for t in types])
    m.put(KEY_LOWERCASE, bool(lowercase), gguf.GGUFValueType.BOOL)
    if strip_accents is not None:
        m.put(KEY_STRIP_ACCENTS, bool(strip_accents), gguf.GGUFValueType.BOOL)

    index = {t: i for i, t in enumerate(by_id) if t is not None}
    special_tokens(m, model_dir, index.get, tj, bert_style=True)
    return n_vocab, bool(lowercase)


def _normalizer_flag(norm: dict, flag: str) -> bool | None:
    kind = norm.get("type")
    if kind == "BertNormalizer":
        return norm.get(flag)
    if kind == "Lowercase" and flag == "lowercase":
        return True
    if kind == "StripAccents" and flag == "strip_accents":
        return True
    if kind == "Sequence":
        for sub in norm.get("normalizers", []):
            v = _normalizer_flag(sub, flag)
            if v is not None:
                return v
    return None


_BERT_LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}


_BERT_GLOBAL = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.LayerNorm": "token_embd_norm",
}


# The MLM/NSP heads and the pooler are training leftovers an embedder never uses.
_BERT_SKIP = ("embeddings.position_ids", "pooler.", "cls.")


def _tensor_name(hf: str, prefix: str, skip: tuple[str, ...], globals_: dict, layers: str, layer_map: dict) -> str | None:
    """GGUF name of a Hugging Face tensor: None for one an embedder never uses, "" for one we do not know."""
    name = hf.removeprefix(prefix)
    if name.startswith(skip):
        return None
    stem, _, suffix = name.rpartition(".")
    suffix = {"gamma": "weight", "beta": "bias"}.get(suffix, suffix)  # old checkpoints' LayerNorm names
    if suffix not in ("weight", "bias"):
        return ""
    if stem in globals_:
        return f"{globals_[stem]}.{suffix}"
    parts = stem.split(".")
    if len(parts) > 3 and ".".join(parts[:2]) == layers and parts[2].isdigit():
        sub = ".".join(parts[3:])
        if sub in layer_map:
            return f"blk.{int(parts[2])}.{layer_map[sub]}.{suffix}"
    return ""


def bert_tensor_name(hf: str) -> str | None:
    return _tensor_name(hf, "bert.", _BERT_SKIP, _BERT_GLOBAL, "encoder.layer", _BERT_LAYER)


# DistilBERT is BERT without token-type embeddings (and without the pooler), under other names.
_DISTILBERT_LAYER = {
    "attention.q_lin": "attn_q",
    "attention.k_lin": "attn_k",
    "attention.v_lin": "attn_v",
    "attention.out_lin": "attn_output",
    "sa_layer_norm": "attn_output_norm",
    "ffn.lin1": "ffn_up",
    "ffn.lin2": "ffn_down",
    "output_layer_norm": "layer_output_norm",
}

_DISTILBERT_GLOBAL = {k: v for k, v in _BERT_GLOBAL.items() if k != "embeddings.token_type_embeddings"}
_DISTILBERT_SKIP = ("embeddings.position_ids", "vocab_", "pre_classifier.", "classifier.", "qa_outputs.")


def distilbert_tensor_name(hf: str) -> str | None:
    return _tensor_name(hf, "distilbert.", _DISTILBERT_SKIP, _DISTILBERT_GLOBAL, "transformer.layer", _DISTILBERT_LAYER)


def build_distilbert(model_dir: Path, cfg: dict) -> ModelPlan:
    if cfg.get("sinusoidal_pos_embds"):
        raise ConversionError("DistilBERT with sinusoidal position embeddings is not supported")
    # DistilBERT's LayerNorms use eps 1e-12, fixed in its code rather than in config.json.
    bert_cfg = {"hidden_size": cfg["dim"], "intermediate_size": cfg["hidden_dim"], "num_hidden_layers": cfg["n_layers"],
                "num_attention_heads": cfg["n_heads"], "max_position_embeddings": cfg["max_position_embeddings"],
                "layer_norm_eps": 1e-12, "vocab_size": cfg["vocab_size"],
                # llama.cpp writes a token-type count of 1 with no token-type table, and refuses 0.
                "type_vocab_size": 1,
                "hidden_act": cfg.get("activation", "gelu")}
    return _build(model_dir, bert_cfg, distilbert_tensor_name, "DistilBERT")


def build_bert(model_dir: Path, cfg: dict) -> ModelPlan:
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"BERT with {cfg['position_embedding_type']} position embeddings is not supported")
    return _build(model_dir, cfg, bert_tensor_name, "BERT")


def _build(model_dir: Path, cfg: dict, tensor_name, family: str) -> ModelPlan:
    m = ModelPlan(arch="bert", n_embd=int(cfg["hidden_size"]))
    m.put("add_context_length", int(cfg["max_position_embeddings"]))
    m.put("add_embedding_length", int(cfg["hidden_size"]))
    m.put("add_feed_forward_length", int(cfg["intermediate_size"]))
    m.put("add_block_count", int(cfg["num_hidden_layers"]))
    m.put("add_head_count", int(cfg["num_attention_heads"]))
    m.put("add_layer_norm_eps", float(cfg.get("layer_norm_eps", 1e-12)))
    m.put("add_causal_attention", False)
    if cfg.get("hidden_act", "gelu") != "gelu":  # the runtime's BERT feed-forward is erf GELU
        raise ConversionError(f"{family} with activation {cfg['hidden_act']!r} is not supported (only 'gelu')")
    if any(x.get("type", "").endswith("Dense") for x in st_modules(model_dir)):
        raise ConversionError("Dense modules after pooling are only supported for EmbeddingGemma")

    n_vocab, lowercase = _bert_vocab(m, model_dir, cfg)
    for file in model_weight_files(model_dir):
        for hf, entry in read_safetensors_index(file).items():
            name = tensor_name(hf)
            if name is None:
                continue
            if name == "":
                raise ConversionError(f"{file}: unexpected tensor {hf!r} for a {family} model")
            if name == "token_embd.weight" and entry.shape[0] != n_vocab:
                raise ConversionError(f"token embedding has {entry.shape[0]} rows, vocabulary {n_vocab}")
            m.tensors.append(TensorPlan(name, entry.shape, lambda e=entry: load_safetensor(e)))
    sentence_transformers_keys(m, model_dir, cfg, lowercase)
    return m
