"""What every architecture's converter uses: the error type, a small safetensors reader, the
plan of a GGUF file (tensors and key/values), and the sentence-transformers and special-token keys."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import TokenType

FORMAT_VERSION = 1

# llama.cpp knows these keys but the gguf package on PyPI has no helper for them.
_KEY_CLS_ID = "tokenizer.ggml.cls_token_id"
KEY_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
KEY_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"

# Matryoshka sizes are a training-time fact that the model folder does not
# record in machine-readable form (only the model card mentions them).
_MATRYOSHKA_DIMS = {"gemma-embedding": [768, 512, 256, 128]}


class ConversionError(ValueError):
    """The model folder cannot be converted (missing files, unsupported model, bad option)."""


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


def read_safetensors_index(path: Path) -> dict[str, _StEntry]:
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


def load_safetensor(entry: _StEntry) -> np.ndarray:
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


def model_weight_files(model_dir: Path) -> list[Path]:
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


@dataclass
class TensorPlan:
    name: str
    shape: tuple[int, ...]  # numpy order (rows, cols); the writer reverses it for ggml
    load: Callable[[], np.ndarray]
    qtype: QT = QT.F32


@dataclass
class ModelPlan:
    arch: str
    tensors: list[TensorPlan] = field(default_factory=list)
    # (method or key, value, explicit gguf type or None); applied in order
    kv: list[tuple[str, object, object]] = field(default_factory=list)
    n_embd: int = 0

    def put(self, key: str, value, vtype=None) -> None:
        self.kv.append((key, value, vtype))


def read_json(path: Path, required: bool = True) -> dict:
    if not path.is_file():
        if required:
            raise ConversionError(f"missing {path.name} in {path.parent}")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: invalid JSON ({e})") from e


def st_modules(model_dir: Path) -> list[dict]:
    mods = read_json(model_dir / "modules.json", required=False)
    return mods if isinstance(mods, list) else []


def _pooling_type(model_dir: Path, mods: list[dict]) -> tuple[gguf.PoolingType, bool]:
    """(gguf pooling type, include_prompt) from the Pooling module's config."""
    pool = next((m for m in mods if m.get("type", "").endswith("Pooling")), None)
    if pool is None:
        raise ConversionError(f"{model_dir}: modules.json has no Pooling module; not a sentence-transformers folder?")
    cfg = read_json(model_dir / pool.get("path", "") / "config.json")
    # sentence-transformers < 6 writes one flag per mode; 6 writes "pooling_mode": "mean".
    mode = cfg.get("pooling_mode")
    if cfg.get("pooling_mode_mean_tokens") or mode == "mean":
        kind = gguf.PoolingType.MEAN
    elif cfg.get("pooling_mode_cls_token") or mode == "cls":
        kind = gguf.PoolingType.CLS
    elif cfg.get("pooling_mode_lasttoken") or mode == "lasttoken":
        kind = gguf.PoolingType.LAST
    else:
        raise ConversionError(f"{model_dir}: only mean, CLS and last-token pooling are supported ({cfg})")
    return kind, bool(cfg.get("include_prompt", True))


def sentence_transformers_keys(m: ModelPlan, model_dir: Path, cfg: dict, tok_lowercase: bool) -> None:
    mods = st_modules(model_dir)
    pooling, include_prompt = _pooling_type(model_dir, mods)
    m.put("add_pooling_type", pooling)

    st = read_json(model_dir / "sentence_bert_config.json", required=False)
    # sentence-transformers 6 keeps the limit as the tokenizer's model_max_length instead;
    # transformers writes a huge placeholder there when a tokenizer has no limit.
    tok_max = read_json(model_dir / "tokenizer_config.json", required=False).get("model_max_length")
    if not isinstance(tok_max, int) or tok_max > 1 << 20:
        tok_max = None
    max_seq = st.get("max_seq_length") or tok_max or cfg.get("max_position_embeddings")
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

    stc = read_json(model_dir / "config_sentence_transformers.json", required=False)
    prompts = stc.get("prompts") or {}
    if prompts:
        names = list(prompts)
        m.put("embedq.prompt_names", names, gguf.GGUFValueType.STRING)
        m.put("embedq.prompt_texts", [prompts[n] for n in names], gguf.GGUFValueType.STRING)
    if stc.get("default_prompt_name"):
        m.put("embedq.default_prompt_name", str(stc["default_prompt_name"]), gguf.GGUFValueType.STRING)
    dims = _MATRYOSHKA_DIMS.get(m.arch, [m.n_embd])
    m.put("embedq.dims_allowed", [int(d) for d in dims], gguf.GGUFValueType.UINT32)


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


def pair_adds_separator(tokenizer_json: dict, single_last: str | None, separators: set[str]) -> bool:
    """Whether the pair template puts a separator between A and B beyond the one that
    closes A: RoBERTa's "<s> A </s></s> B </s>" does, BERT's "[CLS] A [SEP] B [SEP]" does not."""
    pp = tokenizer_json.get("post_processor") or {}
    for proc in pp.get("processors", [pp]):
        if proc.get("type") == "RobertaProcessing":
            return True
        if proc.get("type") != "TemplateProcessing":
            continue
        pair = proc.get("pair", [])
        seqs = [i for i, p in enumerate(pair) if "Sequence" in p]
        if len(seqs) != 2:
            return False
        middle = [p.get("SpecialToken", {}).get("id") for p in pair[seqs[0] + 1:seqs[1]]]
        if not middle or middle[0] not in separators:
            return False
        # One separator closes A when the single template ends with it; a second is extra.
        return single_last is None or (len(middle) == 2 and middle[1] in separators)
    return False


def special_tokens(m: ModelPlan, model_dir: Path, token_id: Callable[[str], int | None],
                    tokenizer_json: dict, bert_style: bool) -> None:
    tcfg = read_json(model_dir / "tokenizer_config.json", required=False)
    smap = read_json(model_dir / "special_tokens_map.json", required=False)

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
    # We only ever embed single sequences, so the runtime never reads this; it says
    # what llama.cpp should do with pairs (reranking), as llama.cpp's converter decides it.
    m.put("add_add_sep_token", pair_adds_separator(tokenizer_json, last, {
        t for t in (_token_content(tcfg.get("sep_token")), _token_content(tcfg.get("eos_token")),
                    _token_content(smap.get("sep_token")), _token_content(smap.get("eos_token"))) if t}))


KEY_LSTRIP, KEY_RSTRIP = "embedq.tokenizer.lstrip", "embedq.tokenizer.rstrip"
KEY_NORMALIZED = "embedq.tokenizer.normalized"


def added_token_rules(m: ModelPlan, added_tokens: list[dict] = (), lstrip: list[int] = ()) -> None:
    """How HF matches tokenizer.json's added tokens, as id lists the runtime reads (added_tokens.h):
    lstrip / rstrip ones take the white space on that side into their match (XLM-R's <mask>,
    ModernBERT's [MASK]: "a [MASK]" is "a", "[MASK]", not "a", " ", "[MASK]"), and normalized
    ones are matched after the others. `lstrip` adds ids a tokenizer declares in code."""
    rules = {KEY_LSTRIP: [int(t["id"]) for t in added_tokens if t.get("lstrip")] + [int(i) for i in lstrip],
             KEY_RSTRIP: [int(t["id"]) for t in added_tokens if t.get("rstrip")],
             KEY_NORMALIZED: [int(t["id"]) for t in added_tokens if t.get("normalized")]}
    for key, ids in rules.items():
        if ids:
            m.put(key, ids, gguf.GGUFValueType.INT32)


def looks_special(text: str) -> bool:
    # Mirrors the rule llama.cpp applies to added tokens that are not flagged special.
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _pb_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def pb_fields(buf: bytes) -> Iterable[tuple[int, int, object]]:
    """(field number, wire type, value) of one protobuf message, without a schema
    (sentencepiece .model files are protobuf; reading them needs no protobuf package)."""
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
            raise ConversionError(f"sentencepiece model: unsupported protobuf wire type {wire}")
        yield num, wire, val


def byte_level_bpe_vocab(m: ModelPlan, tj: dict, tj_path: Path, n_rows: int, pre: str) -> dict[str, int]:
    """A byte-level BPE vocabulary (Qwen, ModernBERT) as llama.cpp's "gpt2" tokenizer keys: one token per
    embedding row (rows no token uses become "[PADi]", unused), added tokens typed control or
    user-defined, the merges as "a b". Returns token text -> id for the special-token lookups."""
    model = tj["model"]
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    added = {int(t["id"]): t for t in tj.get("added_tokens") or []}
    for i, t in added.items():
        by_id[i] = t["content"]
    if by_id and max(by_id) >= n_rows:
        raise ConversionError(f"{tj_path}: token id {max(by_id)} has no row in the embedding table ({n_rows} rows)")
    tokens, types = [], []
    for i in range(n_rows):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(int(TokenType.UNUSED))
        elif i in added:
            special = added[i].get("special") or looks_special(by_id[i])
            tokens.append(by_id[i])
            types.append(int(TokenType.CONTROL if special else TokenType.USER_DEFINED))
        else:
            tokens.append(by_id[i])
            types.append(int(TokenType.NORMAL))
    added_token_rules(m, list(added.values()))
    merges = [" ".join(p) if isinstance(p, list) else str(p) for p in model.get("merges") or []]
    m.put("add_tokenizer_model", "gpt2")
    m.put("add_tokenizer_pre", pre)
    m.put("add_token_list", tokens)
    m.put("add_token_types", types)
    m.put("add_token_merges", merges)
    return {t: i for i, t in reversed(list(enumerate(tokens))) if types[i] != int(TokenType.UNUSED)}
