"""XLM-RoBERTa sentence encoders (multilingual-e5, bge-m3's dense head, paraphrase-multilingual):
a BERT encoder under a SentencePiece Unigram vocabulary, in the layout llama.cpp's converter
writes for them (general.architecture = bert, tokenizer.ggml.model = t5).

The vocabulary is taken in Hugging Face's order, which is what the model's ids mean:
tokenizer.json when the folder has one, else sentencepiece.bpe.model rearranged as HF does
(<s> <pad> </s> <unk>, then the model's pieces from its fourth on, then <mask>).

RoBERTa numbers positions from padding_idx + 1. Like llama.cpp, the rows below that are cut
from position_embd, so row i is position i. The padding row itself is what a "<pad>" inside a
text is given; it is kept in embedq.position_padding_row for the runtime."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import gguf
import numpy as np
from gguf import TokenType

from .bert import bert_tensor_name
from .common import (
    ConversionError,
    ModelPlan,
    TensorPlan,
    added_token_rules,
    load_safetensor,
    model_weight_files,
    pb_fields,
    read_json,
    read_safetensors_index,
    sentence_transformers_keys,
    special_tokens,
    st_modules,
)

KEY_SCORES_F64 = "embedq.tokenizer.scores_f64"
_UNIGRAM = 1  # sentencepiece TrainerSpec.ModelType


class _Vocab:
    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.scores: list[float] = []
        self.types: list[int] = []
        self.charsmap = b""
        self.add_space_prefix = True
        self.remove_extra_whitespaces = True

    def add(self, text: str, score: float, kind: TokenType) -> None:
        self.pieces.append(text)
        self.scores.append(score)
        self.types.append(int(kind))


def _from_sentencepiece(path: Path) -> _Vocab:
    """Field numbers from sentencepiece_model.proto: ModelProto.pieces = 1, trainer_spec = 2,
    normalizer_spec = 3; SentencePiece.piece = 1, score = 2; TrainerSpec.model_type = 3;
    NormalizerSpec.precompiled_charsmap = 2, add_dummy_prefix = 3, remove_extra_whitespaces = 4."""
    v = _Vocab()
    model_type = _UNIGRAM
    sp: list[tuple[str, float]] = []
    for num, wire, val in pb_fields(path.read_bytes()):
        if num == 1 and wire == 2:
            piece, score = "", 0.0
            for pnum, _, pval in pb_fields(val):
                if pnum == 1:
                    piece = bytes(pval).decode("utf-8")
                elif pnum == 2:
                    (score,) = struct.unpack("<f", pval)
            sp.append((piece, score))
        elif num == 2 and wire == 2:
            for tnum, twire, tval in pb_fields(val):
                if tnum == 3 and twire == 0:
                    model_type = tval
        elif num == 3 and wire == 2:
            for nnum, _, nval in pb_fields(val):
                if nnum == 2:
                    v.charsmap = bytes(nval)
                elif nnum == 3:
                    v.add_space_prefix = bool(nval)
                elif nnum == 4:
                    v.remove_extra_whitespaces = bool(nval)
    if model_type != _UNIGRAM:
        raise ConversionError(f"{path}: not a Unigram model (sentencepiece model_type {model_type})")
    if len(sp) < 4:
        raise ConversionError(f"{path}: no sentencepiece pieces found")
    # fairseq's dictionary, which XLM-R was trained with, puts <s> <pad> </s> <unk> first and
    # shifts every other piece up by one; <mask> comes last.
    specials = [("<s>", TokenType.CONTROL), ("<pad>", TokenType.CONTROL), ("</s>", TokenType.CONTROL),
                ("<unk>", TokenType.UNKNOWN)]
    for text, kind in specials:
        v.add(text, 0.0, kind)
    for text, score in sp[3:]:
        v.add(text, score, TokenType.NORMAL)
    v.add("<mask>", 0.0, TokenType.CONTROL)
    return v


def _charsmap_in(normalizer: dict | None) -> bytes:
    if not normalizer:
        return b""
    if normalizer.get("type") == "Precompiled":
        return base64.b64decode(normalizer.get("precompiled_charsmap") or "")
    for sub in normalizer.get("normalizers") or []:
        found = _charsmap_in(sub)
        if found:
            return found
    return b""


def _from_tokenizer_json(path: Path, tj: dict) -> _Vocab:
    model = tj.get("model") or {}
    if model.get("type") != "Unigram":
        raise ConversionError(f"{path}: expected a Unigram tokenizer, got {model.get('type')}")
    if model.get("byte_fallback"):
        raise ConversionError(f"{path}: Unigram with byte fallback is not supported")
    unk_id = model.get("unk_id")
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    v = _Vocab()
    for i, (text, score) in enumerate(model["vocab"]):
        if i in added:
            kind = TokenType.CONTROL if added[i].get("special") else TokenType.USER_DEFINED
        else:
            kind = TokenType.NORMAL
        if i == unk_id:
            kind = TokenType.UNKNOWN
        v.add(text, float(score), kind)
    for i, t in added.items():
        if i >= len(v.pieces):
            raise ConversionError(f"{path}: added token {t['content']!r} has id {i} past the Unigram vocabulary")
    v.charsmap = _charsmap_in(tj.get("normalizer"))
    pre = tj.get("pre_tokenizer") or {}
    metas = [p for p in pre.get("pretokenizers", [pre]) if p.get("type") == "Metaspace"]
    if metas:
        scheme = metas[0].get("prepend_scheme")
        v.add_space_prefix = scheme != "never" if scheme else bool(metas[0].get("add_prefix_space", True))
    return v


def _xlmr_vocab(m: ModelPlan, model_dir: Path, cfg: dict) -> int:
    tj_path, sp_path = model_dir / "tokenizer.json", model_dir / "sentencepiece.bpe.model"
    tj = read_json(tj_path, required=False)
    if tj:
        v = _from_tokenizer_json(tj_path, tj)
        if sp_path.is_file():  # only the normalizer flags live there
            sp = _from_sentencepiece(sp_path)
            v.remove_extra_whitespaces = sp.remove_extra_whitespaces
    elif sp_path.is_file():
        v = _from_sentencepiece(sp_path)
    else:
        raise ConversionError(f"{model_dir}: neither tokenizer.json nor sentencepiece.bpe.model found")

    n_vocab = int(cfg.get("vocab_size") or len(v.pieces))
    if len(v.pieces) > n_vocab:
        raise ConversionError(f"tokenizer has {len(v.pieces)} pieces but vocab_size={n_vocab}")
    for i in range(len(v.pieces), n_vocab):  # embedding rows no piece points at
        v.add(f"[PAD{i}]", -10000.0, TokenType.UNUSED)

    if tj:
        added_token_rules(m, tj.get("added_tokens") or [])
    else:  # XLMRobertaTokenizer declares its <mask> with lstrip=True
        added_token_rules(m, lstrip=[v.pieces.index("<mask>")])
    m.put("add_tokenizer_model", "t5")
    m.put("add_tokenizer_pre", "default")
    m.put("add_token_list", v.pieces)
    m.put("add_token_scores", v.scores)
    m.put("add_token_types", v.types)
    m.put("add_add_space_prefix", v.add_space_prefix)
    m.put("add_token_type_count", int(cfg.get("type_vocab_size", 1)))
    m.put("add_remove_extra_whitespaces", v.remove_extra_whitespaces)
    if v.charsmap:
        m.put("add_precompiled_charsmap", v.charsmap)
    # GGUF stores scores as float32; HF adds them up in double. A tokenizer.json
    # written from other sources can hold scores float32 would round, and near-ties in
    # the Viterbi search would then go the other way: keep the exact values too.
    if any(float(np.float32(s)) != s for s in v.scores):
        m.put(KEY_SCORES_F64, v.scores, gguf.GGUFValueType.FLOAT64)

    index: dict[str, int] = {}
    for i, t in enumerate(v.pieces):
        index.setdefault(t, i)
    special_tokens(m, model_dir, index.get, tj, bert_style=False)
    return n_vocab


def _xlmr_tensor_name(hf: str) -> str | None:
    name = hf.removeprefix("roberta.")
    if name.startswith("lm_head."):
        return None
    return bert_tensor_name(name)


def build_xlm_roberta(model_dir: Path, cfg: dict) -> ModelPlan:
    m = ModelPlan(arch="bert", n_embd=int(cfg["hidden_size"]))
    pad = int(cfg.get("pad_token_id", 1))
    offset = pad + 1
    n_pos = int(cfg["max_position_embeddings"])
    if n_pos <= offset:
        raise ConversionError(f"max_position_embeddings={n_pos} leaves no position after the offset {offset}")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"XLM-RoBERTa with {cfg['position_embedding_type']} position embeddings is not supported")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ConversionError(f"hidden_act {cfg['hidden_act']!r} is not supported (only gelu)")
    if any(x.get("type", "").endswith("Dense") for x in st_modules(model_dir)):
        raise ConversionError("Dense modules after pooling are only supported for EmbeddingGemma")
    if read_json(model_dir / "sentence_bert_config.json", required=False).get("do_lower_case"):
        raise ConversionError("do_lower_case is not supported for XLM-RoBERTa tokenizers")
    m.put("add_context_length", n_pos - offset)
    m.put("add_embedding_length", int(cfg["hidden_size"]))
    m.put("add_feed_forward_length", int(cfg["intermediate_size"]))
    m.put("add_block_count", int(cfg["num_hidden_layers"]))
    m.put("add_head_count", int(cfg["num_attention_heads"]))
    m.put("add_layer_norm_eps", float(cfg.get("layer_norm_eps", 1e-5)))
    m.put("add_causal_attention", False)

    n_vocab = _xlmr_vocab(m, model_dir, cfg)
    for file in model_weight_files(model_dir):
        for hf, entry in read_safetensors_index(file).items():
            name = _xlmr_tensor_name(hf)
            if name is None:
                continue
            if name == "":
                raise ConversionError(f"{file}: unexpected tensor {hf!r} for an XLM-RoBERTa model")
            load = lambda e=entry: load_safetensor(e)
            shape = entry.shape
            if name == "token_embd.weight" and shape[0] != n_vocab:
                raise ConversionError(f"token embedding has {shape[0]} rows, vocabulary {n_vocab}")
            if name == "position_embd.weight":
                if shape[0] != n_pos:
                    raise ConversionError(f"position embedding has {shape[0]} rows, config says {n_pos}")
                row = np.asarray(load_safetensor(entry)[pad], dtype=np.float32)
                m.put("embedq.position_padding_id", pad, gguf.GGUFValueType.UINT32)
                m.put("embedq.position_padding_row", [float(x) for x in row], gguf.GGUFValueType.FLOAT32)
                shape = (n_pos - offset, shape[1])
                load = lambda e=entry: load_safetensor(e)[offset:]
            m.tensors.append(TensorPlan(name, shape, load))
    sentence_transformers_keys(m, model_dir, cfg, tok_lowercase=False)
    return m
