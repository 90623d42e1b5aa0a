"""Convert a sentence-transformers folder into a GGUF file.

The layout (architecture names, hyper-parameter keys, tensor names, vocabulary
form, special-token keys) follows what llama.cpp's own converter writes, so the
files load in llama.cpp as well as in our runtime. Keys llama.cpp has no notion
of live under the ``embedq.`` prefix; llama.cpp ignores unknown keys.

Only numpy, the ``gguf`` package and a small safetensors reader are needed:
no torch, no transformers, no sentencepiece.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import TokenType

__all__ = [
    "OUT_TYPES",
    "ConversionError",
    "convert",
    "parse_keep",
    "quantize_q8_0",
]

OUT_TYPES = ("f32", "f16", "q8_0")
FORMAT_VERSION = 1

_FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}
_QTYPES = {"f32": QT.F32, "f16": QT.F16, "q8_0": QT.Q8_0}

# llama.cpp knows these keys but the gguf package on PyPI has no helper for them.
_KEY_CLS_ID = "tokenizer.ggml.cls_token_id"
_KEY_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
_KEY_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"

# Matryoshka sizes are a training-time fact that the model folder does not
# record in machine-readable form (only the model card mentions them).
_MATRYOSHKA_DIMS = {"gemma-embedding": [768, 512, 256, 128]}

Q8_0_BLOCK = 32
_Q8_0_BYTES = 34  # fp16 scale + 32 int8


class ConversionError(ValueError):
    """The model folder cannot be converted (missing files, unsupported model, bad option)."""


# --------------------------------------------------------------------------- safetensors

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened to f32 by hand: numpy has no bfloat16
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


@dataclass
class _StEntry:
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def _read_safetensors_index(path: Path) -> dict[str, _StEntry]:
    """Header of one .safetensors file: name -> where its bytes lie.

    Parsing the header ourselves lets us memory-map the data (no copy of a 1.2 GB
    file into RAM) and read bfloat16 without torch.
    """
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, struct.error, json.JSONDecodeError) as e:
        raise ConversionError(f"{path}: not a readable safetensors file ({e})") from e
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise ConversionError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        b, e = info["data_offsets"]
        out[name] = _StEntry(path, info["dtype"], tuple(info["shape"]), base + b, base + e)
    return out


def _load_st(entry: _StEntry) -> np.ndarray:
    """Tensor as a float32 array (a read-only memory map when already float32)."""
    dt = np.dtype(_ST_DTYPES[entry.dtype]).newbyteorder("<")
    count = (entry.end - entry.start) // dt.itemsize
    arr = np.memmap(entry.path, dtype=dt, mode="r", offset=entry.start, shape=(count,))
    arr = arr.reshape(entry.shape)
    if entry.dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if entry.dtype != "F32":
        return arr.astype(np.float32)
    return arr


def _model_weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [model_dir / f for f in sorted(set(weight_map.values()))]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    if (model_dir / "pytorch_model.bin").is_file():
        raise ConversionError(f"{model_dir}: only safetensors weights are supported (found pytorch_model.bin)")
    raise ConversionError(f"{model_dir}: no model.safetensors found")


# --------------------------------------------------------------------------- quantization

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


def _tensor_nbytes(shape: Sequence[int], qtype: QT) -> int:
    n = int(np.prod(shape, dtype=np.int64))
    if qtype == QT.F32:
        return 4 * n
    if qtype == QT.F16:
        return 2 * n
    if qtype == QT.Q8_0:
        return n // Q8_0_BLOCK * _Q8_0_BYTES
    raise AssertionError(qtype)


def _encode(data: np.ndarray, qtype: QT) -> np.ndarray:
    if qtype == QT.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == QT.F16:
        return np.ascontiguousarray(data, dtype=np.float16)
    return quantize_q8_0(data)


# --------------------------------------------------------------------------- plan

@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order (rows, cols); the writer reverses it for ggml
    load: Callable[[], np.ndarray]
    qtype: QT = QT.F32


@dataclass
class _Model:
    arch: str
    tensors: list[_Tensor] = field(default_factory=list)
    # (method or key, value, explicit gguf type or None); applied in order
    kv: list[tuple[str, object, object]] = field(default_factory=list)
    n_embd: int = 0

    def put(self, key: str, value, vtype=None) -> None:
        self.kv.append((key, value, vtype))


def _read_json(path: Path, required: bool = True) -> dict:
    if not path.is_file():
        if required:
            raise ConversionError(f"missing {path.name} in {path.parent}")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: invalid JSON ({e})") from e


def _modules(model_dir: Path) -> list[dict]:
    mods = _read_json(model_dir / "modules.json", required=False)
    return mods if isinstance(mods, list) else []


def _pooling_type(model_dir: Path, mods: list[dict]) -> tuple[gguf.PoolingType, bool]:
    """(gguf pooling type, include_prompt) from the Pooling module's config."""
    pool = next((m for m in mods if m.get("type", "").endswith("Pooling")), None)
    if pool is None:
        raise ConversionError(f"{model_dir}: modules.json has no Pooling module; not a sentence-transformers folder?")
    cfg = _read_json(model_dir / pool.get("path", "") / "config.json")
    if cfg.get("pooling_mode_mean_tokens"):
        kind = gguf.PoolingType.MEAN
    elif cfg.get("pooling_mode_cls_token"):
        kind = gguf.PoolingType.CLS
    elif cfg.get("pooling_mode_lasttoken"):
        kind = gguf.PoolingType.LAST
    else:
        raise ConversionError(f"{model_dir}: only mean, CLS and last-token pooling are supported ({cfg})")
    return kind, bool(cfg.get("include_prompt", True))


def _sentence_transformers_keys(m: _Model, model_dir: Path, cfg: dict, tok_lowercase: bool) -> None:
    mods = _modules(model_dir)
    pooling, include_prompt = _pooling_type(model_dir, mods)
    m.put("add_pooling_type", pooling)

    st = _read_json(model_dir / "sentence_bert_config.json", required=False)
    max_seq = st.get("max_seq_length") or cfg.get("max_position_embeddings")
    m.put("embedq.format_version", FORMAT_VERSION, gguf.GGUFValueType.UINT32)
    m.put("embedq.max_seq_length", int(max_seq), gguf.GGUFValueType.UINT32)
    # sentence-transformers lowercases before the tokenizer when its own flag is
    # set; the tokenizer may lowercase too. Either way the runtime must lowercase.
    m.put("embedq.do_lower_case", bool(st.get("do_lower_case")) or tok_lowercase, gguf.GGUFValueType.BOOL)
    m.put("embedq.normalize", any(x.get("type", "").endswith("Normalize") for x in mods), gguf.GGUFValueType.BOOL)
    m.put("embedq.pooling_include_prompt", include_prompt, gguf.GGUFValueType.BOOL)
    act = cfg.get("hidden_activation") or cfg.get("hidden_act")
    if act:
        m.put("embedq.hidden_act", str(act), gguf.GGUFValueType.STRING)

    stc = _read_json(model_dir / "config_sentence_transformers.json", required=False)
    prompts = stc.get("prompts") or {}
    if prompts:
        names = list(prompts)
        m.put("embedq.prompt_names", names, gguf.GGUFValueType.STRING)
        m.put("embedq.prompt_texts", [prompts[n] for n in names], gguf.GGUFValueType.STRING)
    if stc.get("default_prompt_name"):
        m.put("embedq.default_prompt_name", str(stc["default_prompt_name"]), gguf.GGUFValueType.STRING)
    dims = _MATRYOSHKA_DIMS.get(m.arch, [m.n_embd])
    m.put("embedq.dims_allowed", [int(d) for d in dims], gguf.GGUFValueType.UINT32)


# --------------------------------------------------------------------------- special tokens

def _token_content(tok) -> str | None:
    if isinstance(tok, dict):
        return tok.get("content")
    return tok


def _template_specials(tokenizer_json: dict) -> tuple[str | None, str | None]:
    """Leading and trailing special token of the single-sequence template.

    This is what the HF tokenizer (and so sentence-transformers) wraps every
    text with, e.g. [CLS] ... [SEP] or <bos> ... <eos>.
    """
    pp = tokenizer_json.get("post_processor") or {}
    for proc in pp.get("processors", [pp]):
        kind = proc.get("type")
        if kind in ("RobertaProcessing", "BertProcessing"):
            return proc["cls"][0], proc["sep"][0]
        if kind == "TemplateProcessing":
            single = proc.get("single", [])
            first = single[0].get("SpecialToken", {}).get("id") if single else None
            last = single[-1].get("SpecialToken", {}).get("id") if len(single) > 1 else None
            return first, last
    return None, None


def _special_tokens(m: _Model, model_dir: Path, token_id: Callable[[str], int | None],
                    tokenizer_json: dict, bert_style: bool) -> None:
    tcfg = _read_json(model_dir / "tokenizer_config.json", required=False)
    smap = _read_json(model_dir / "special_tokens_map.json", required=False)

    def lookup(kind: str) -> int | None:
        text = _token_content(tcfg.get(f"{kind}_token")) or _token_content(smap.get(f"{kind}_token"))
        return token_id(text) if text else None

    ids = {k: lookup(k) for k in ("bos", "eos", "unk", "sep", "pad", "cls", "mask")}
    first, last = _template_specials(tokenizer_json)
    if bert_style:
        # llama.cpp's BERT path treats [CLS] as BOS and [SEP] as EOS.
        ids["bos"] = ids["bos"] if ids["bos"] is not None else ids["cls"]
        ids["eos"] = ids["eos"] if ids["eos"] is not None else ids["sep"]
    add_bos = tcfg.get("add_bos_token")
    add_eos = tcfg.get("add_eos_token")
    if add_bos is None:
        add_bos = first is not None and token_id(first) == ids["bos"]
    if add_eos is None:
        add_eos = last is not None and token_id(last) == ids["eos"]

    setters = {"bos": "add_bos_token_id", "eos": "add_eos_token_id", "unk": "add_unk_token_id",
               "sep": "add_sep_token_id", "pad": "add_pad_token_id", "mask": "add_mask_token_id"}
    for kind, method in setters.items():
        if ids[kind] is not None:
            m.put(method, ids[kind])
    if ids["cls"] is not None:
        m.put(_KEY_CLS_ID, ids["cls"], gguf.GGUFValueType.UINT32)
    m.put("add_add_bos_token", bool(add_bos))
    m.put("add_add_eos_token", bool(add_eos))
    # We only ever embed single sequences; a pair separator is never inserted.
    m.put("add_add_sep_token", False)


# --------------------------------------------------------------------------- BERT

def _looks_special(text: str) -> bool:
    # Mirrors the rule llama.cpp applies to added tokens that are not flagged special.
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _bert_vocab(m: _Model, model_dir: Path, cfg: dict) -> tuple[int, bool]:
    tj_path = model_dir / "tokenizer.json"
    tj = _read_json(tj_path, required=False)
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
            kind = TokenType.CONTROL if added[i].get("special") or _looks_special(text) else TokenType.USER_DEFINED
        else:
            kind = TokenType.NORMAL
        # llama.cpp's WPM tokenizer expects the "phantom space" form: a piece that
        # starts a word carries U+2581, a "##" continuation loses its marker.
        if kind != TokenType.CONTROL:
            text = text[2:] if text.startswith("##") else "\u2581" + text
        tokens.append(text)
        types.append(kind)

    norm = tj.get("normalizer") or {}
    tcfg = _read_json(model_dir / "tokenizer_config.json", required=False)
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
    m.put(_KEY_LOWERCASE, bool(lowercase), gguf.GGUFValueType.BOOL)
    if strip_accents is not None:
        m.put(_KEY_STRIP_ACCENTS, bool(strip_accents), gguf.GGUFValueType.BOOL)

    index = {t: i for i, t in enumerate(by_id) if t is not None}
    _special_tokens(m, model_dir, index.get, tj, bert_style=True)
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


def _bert_tensor_name(hf: str) -> str | None:
    name = hf.removeprefix("bert.")
    if name.startswith(_BERT_SKIP):
        return None
    stem, _, suffix = name.rpartition(".")
    suffix = {"gamma": "weight", "beta": "bias"}.get(suffix, suffix)
    if suffix not in ("weight", "bias"):
        return ""
    if stem in _BERT_GLOBAL:
        return f"{_BERT_GLOBAL[stem]}.{suffix}"
    parts = stem.split(".")
    if len(parts) > 3 and parts[0] == "encoder" and parts[1] == "layer" and parts[2].isdigit():
        sub = ".".join(parts[3:])
        if sub in _BERT_LAYER:
            return f"blk.{int(parts[2])}.{_BERT_LAYER[sub]}.{suffix}"
    return ""


def _build_bert(model_dir: Path, cfg: dict) -> _Model:
    m = _Model(arch="bert", n_embd=int(cfg["hidden_size"]))
    m.put("add_context_length", int(cfg["max_position_embeddings"]))
    m.put("add_embedding_length", int(cfg["hidden_size"]))
    m.put("add_feed_forward_length", int(cfg["intermediate_size"]))
    m.put("add_block_count", int(cfg["num_hidden_layers"]))
    m.put("add_head_count", int(cfg["num_attention_heads"]))
    m.put("add_layer_norm_eps", float(cfg.get("layer_norm_eps", 1e-12)))
    m.put("add_causal_attention", False)
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"BERT with {cfg['position_embedding_type']} position embeddings is not supported")
    if any(x.get("type", "").endswith("Dense") for x in _modules(model_dir)):
        raise ConversionError("Dense modules after pooling are only supported for EmbeddingGemma")

    n_vocab, lowercase = _bert_vocab(m, model_dir, cfg)
    for file in _model_weight_files(model_dir):
        for hf, entry in _read_safetensors_index(file).items():
            name = _bert_tensor_name(hf)
            if name is None:
                continue
            if name == "":
                raise ConversionError(f"{file}: unexpected tensor {hf!r} for a BERT model")
            if name == "token_embd.weight" and entry.shape[0] != n_vocab:
                raise ConversionError(f"token embedding has {entry.shape[0]} rows, vocabulary {n_vocab}")
            m.tensors.append(_Tensor(name, entry.shape, lambda e=entry: _load_st(e)))
    _sentence_transformers_keys(m, model_dir, cfg, lowercase)
    return m


# --------------------------------------------------------------------------- Gemma3 embedding

def _pb_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _pb_fields(buf: bytes) -> Iterable[tuple[int, int, object]]:
    """(field number, wire type, value) of one protobuf message, without a schema."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _pb_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _pb_varint(buf, i)
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = _pb_varint(buf, i)
            val, i = buf[i:i + size], i + size
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ConversionError(f"tokenizer.model: unsupported protobuf wire type {wire}")
        yield num, wire, val


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
    for num, wire, val in _pb_fields(data):
        if num == 1 and wire == 2:
            piece, score, kind = b"", 0.0, 1
            for pnum, _, pval in _pb_fields(val):
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
            for nnum, _, nval in _pb_fields(val):
                if nnum == 3:
                    add_dummy_prefix = bool(nval)
    if not pieces:
        raise ConversionError(f"{path}: no sentencepiece pieces found")
    return pieces, scores, types, add_dummy_prefix


def _gemma_vocab(m: _Model, model_dir: Path, cfg: dict) -> int:
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
    for text, i in _read_json(model_dir / "added_tokens.json", required=False).items():
        if i < n_vocab:
            tokens[i], tscores[i], ttypes[i] = text.encode(), -1000.0, int(TokenType.USER_DEFINED)
    tcfg = _read_json(model_dir / "tokenizer_config.json", required=False)
    for sid, info in (tcfg.get("added_tokens_decoder") or {}).items():
        i = int(sid)
        if i >= n_vocab:
            continue
        text = info["content"]
        if info.get("special") or _looks_special(text):
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
    tj = _read_json(model_dir / "tokenizer.json", required=False)
    _special_tokens(m, model_dir, index.get, tj, bert_style=False)
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


def _build_gemma_embedding(model_dir: Path, cfg: dict) -> _Model:
    m = _Model(arch="gemma-embedding", n_embd=int(cfg["hidden_size"]))
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
    for file in _model_weight_files(model_dir):
        for hf, entry in _read_safetensors_index(file).items():
            name = _gemma_tensor_name(hf)
            if not name:
                raise ConversionError(f"{file}: unexpected tensor {hf!r} for a Gemma3 embedding model")
            load: Callable[[], np.ndarray] = lambda e=entry: _load_st(e)
            shape = entry.shape
            if name == "token_embd.weight":
                if shape[0] < n_vocab:
                    raise ConversionError(f"token embedding has {shape[0]} rows, vocabulary {n_vocab}")
                # rows past the tokenizer's vocabulary can never be looked up
                shape = (n_vocab, shape[1])
                load = lambda e=entry, n=n_vocab: _load_st(e)[:n]
            if name.endswith("norm.weight"):
                load = _plus_one(load)
            m.tensors.append(_Tensor(name, shape, load))

    dense = [x for x in _modules(model_dir) if x.get("type", "").endswith("Dense")]
    if len(dense) > 2:
        raise ConversionError(f"{len(dense)} Dense modules; llama.cpp's layout has room for two")
    for slot, mod in zip(("dense_2", "dense_3"), dense):
        mdir = model_dir / mod["path"]
        mcfg = _read_json(mdir / "config.json")
        act = mcfg.get("activation_function", "torch.nn.modules.linear.Identity")
        if not act.endswith("Identity"):
            raise ConversionError(f"{mdir}: Dense activation {act} is not supported (only Identity)")
        entries = _read_safetensors_index(mdir / "model.safetensors")
        for hf, entry in entries.items():
            if hf not in ("linear.weight", "linear.bias"):
                raise ConversionError(f"{mdir}: unexpected tensor {hf!r}")
            suffix = hf.rpartition(".")[2]
            m.tensors.append(_Tensor(f"{slot}.{suffix}", entry.shape, lambda e=entry: _load_st(e)))
        m.put(f"gemma-embedding.{slot}_feat_in", int(mcfg["in_features"]), gguf.GGUFValueType.UINT32)
        m.put(f"gemma-embedding.{slot}_feat_out", int(mcfg["out_features"]), gguf.GGUFValueType.UINT32)

    _sentence_transformers_keys(m, model_dir, cfg, tok_lowercase=False)
    return m


_BUILDERS: dict[str, Callable[[Path, dict], _Model]] = {
    "BertModel": _build_bert,
    "BertForMaskedLM": _build_bert,
    "Gemma3TextModel": _build_gemma_embedding,
}


# --------------------------------------------------------------------------- types

def parse_keep(specs: Iterable[str]) -> tuple[list[str], list[str]]:
    """["GLOB=f32", "GLOB=f16", ...] -> (keep_f32, keep_f16) glob lists."""
    keep_f32: list[str] = []
    keep_f16: list[str] = []
    for spec in specs:
        glob, sep, kind = spec.rpartition("=")
        if not sep or not glob:
            raise ConversionError(f"--keep expects TENSOR_GLOB=f32|f16, got {spec!r}")
        if kind == "f32":
            keep_f32.append(glob)
        elif kind == "f16":
            keep_f16.append(glob)
        else:
            raise ConversionError(f"--keep {spec!r}: type must be f32 or f16")
    return keep_f32, keep_f16


def _choose_types(tensors: list[_Tensor], out_type: str, keep_f32: Sequence[str], keep_f16: Sequence[str]) -> None:
    used = {p: False for p in [*keep_f32, *keep_f16]}
    for t in tensors:
        is_matrix = len(t.shape) >= 2
        # Same exclusions as llama.cpp: vectors, norms and biases stay F32, and so
        # do the small position / token-type tables it never quantizes.
        if (not is_matrix or not t.name.endswith(".weight") or t.name.endswith("_norm.weight")
                or t.name in ("position_embd.weight", "token_types.weight")):
            t.qtype = QT.F32
            continue
        t.qtype = _QTYPES[out_type]
        for pattern in keep_f32:
            if fnmatch.fnmatchcase(t.name, pattern):
                t.qtype, used[pattern] = QT.F32, True
                break
        else:
            for pattern in keep_f16:
                if fnmatch.fnmatchcase(t.name, pattern):
                    t.qtype, used[pattern] = QT.F16, True
                    break
        if t.qtype == QT.Q8_0 and t.shape[-1] % Q8_0_BLOCK:
            t.qtype = QT.F16  # llama.cpp's fallback for rows Q8_0 cannot split
    unused = [p for p, hit in used.items() if not hit]
    if unused:
        raise ConversionError(f"keep pattern(s) matched no quantizable tensor: {', '.join(unused)}")


# --------------------------------------------------------------------------- entry point

def _sha256_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _apply_kv(writer: gguf.GGUFWriter, kv: list[tuple[str, object, object]]) -> None:
    for key, value, vtype in kv:
        if vtype is None:
            getattr(writer, key)(value)
        elif isinstance(value, list):
            writer.add_key_value(key, value, gguf.GGUFValueType.ARRAY, sub_type=vtype)
        else:
            writer.add_key_value(key, value, vtype)


def convert(model_dir: str | os.PathLike, out_path: str | os.PathLike, out_type: str = "f32",
            progress: bool = True, keep_f32: Sequence[str] = (), keep_f16: Sequence[str] = (),
            name: str | None = None, source_hash: bool = True) -> Path:
    """Write ``out_path`` (GGUF) from a sentence-transformers folder.

    out_type: "f32", "f16" (2-D weights in F16) or "q8_0" (2-D weights whose rows
    split into 32-value blocks in Q8_0). Vectors, norms and biases always stay F32.
    keep_f32 / keep_f16: fnmatch globs over GGUF tensor names (e.g.
    "token_embd.weight", "blk.*.ffn_down.weight") forced to that type.
    The file appears atomically: it is written beside the target and renamed.
    """
    from tqdm.auto import tqdm

    model_dir = Path(model_dir)
    out_path = Path(out_path)
    if out_type not in OUT_TYPES:
        raise ConversionError(f"out_type must be one of {', '.join(OUT_TYPES)}, got {out_type!r}")
    if not model_dir.is_dir():
        raise ConversionError(f"{model_dir} is not a directory")
    cfg = _read_json(model_dir / "config.json")
    archs = cfg.get("architectures") or []
    builder = next((_BUILDERS[a] for a in archs if a in _BUILDERS), None)
    if builder is None:
        raise ConversionError(
            f"{model_dir}: unsupported architecture {archs} (supported: {', '.join(sorted(_BUILDERS))})")

    model = builder(model_dir, cfg)
    _choose_types(model.tensors, out_type, keep_f32, keep_f16)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name beside the target (same filesystem, so the rename is atomic);
    # the writer creates it normally so the umask applies, unlike mkstemp's 0600.
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        writer = gguf.GGUFWriter(tmp, model.arch)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or model_dir.name)
        _apply_kv(writer, model.kv)
        writer.add_file_type(int(_FILE_TYPES[out_type]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if source_hash:
            weight_files = _model_weight_files(model_dir)
            writer.add_string("embedq.source_sha256", _sha256_files(weight_files))

        for t in model.tensors:
            store_dtype = np.float16 if t.qtype == QT.F16 else np.float32
            writer.add_tensor_info(t.name, t.shape, np.dtype(store_dtype),
                                   _tensor_nbytes(t.shape, t.qtype), raw_dtype=t.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        bar = tqdm(model.tensors, desc=f"convert {out_type}", unit="tensor", disable=not progress)
        for t in bar:
            bar.set_postfix_str(t.name, refresh=False)
            data = t.load()
            if tuple(data.shape) != tuple(t.shape):
                raise ConversionError(f"{t.name}: expected shape {t.shape}, read {data.shape}")
            writer.write_tensor_data(_encode(data, t.qtype))
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path
