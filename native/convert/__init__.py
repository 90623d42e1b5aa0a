"""Convert a sentence-transformers folder into a GGUF file.

The layout (architecture names, hyper-parameter keys, tensor names, vocabulary
form, special-token keys) follows what llama.cpp's own converter writes, so the
files load in llama.cpp as well as in our runtime. Keys llama.cpp has no notion
of live under the ``embedq.`` prefix; llama.cpp ignores unknown keys.

Only numpy, the ``gguf`` package and a small safetensors reader are needed:
no torch, no transformers, no sentencepiece.

One module per architecture (bert, gemma, modernbert, qwen3, xlmr) builds the plan of the file; quantize encodes the
tensors; common holds what they share; this module chooses tensor types and writes the file."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT

from .bert import build_bert, build_distilbert
from .common import (
    ConversionError,
    ModelPlan,
    TensorPlan,
    model_weight_files,
    read_json,
)
from .gemma import build_gemma_embedding
from .modernbert import build_modernbert
from .quantize import Q8_0_BLOCK, QTYPES, encode, quantize_q8_0, tensor_nbytes
from .recipes import K_RECIPES, k_recipe_types
from .qwen3 import build_qwen3
from .xlmr import build_xlm_roberta

__all__ = [
    "OUT_TYPES",
    "ConversionError",
    "convert",
    "parse_keep",
    "quantize_q8_0",
]


# The weight types a converted file can have: one type for all matrices, or one of llama.cpp's
# mixed K recipes (per-tensor types chosen as llama.cpp chooses them).
OUT_TYPES = (*QTYPES, *K_RECIPES)
_FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    **{recipe: ftype for recipe, (_, ftype) in K_RECIPES.items()},
}


_BUILDERS: dict[str, Callable[[Path, dict], ModelPlan]] = {
    "BertModel": build_bert,
    "BertForMaskedLM": build_bert,
    "DistilBertModel": build_distilbert,
    "DistilBertForMaskedLM": build_distilbert,
    "Gemma3TextModel": build_gemma_embedding,
    "ModernBertModel": build_modernbert,
    "ModernBertForMaskedLM": build_modernbert,
    "Qwen3Model": build_qwen3,
    "Qwen3ForCausalLM": build_qwen3,
    "XLMRobertaModel": build_xlm_roberta,
    "XLMRobertaForMaskedLM": build_xlm_roberta,
}


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


def _choose_types(tensors: list[TensorPlan], out_type: str, keep_f32: Sequence[str], keep_f16: Sequence[str]) -> None:
    used = {p: False for p in [*keep_f32, *keep_f16]}
    # Same exclusions as llama.cpp: vectors, norms and biases stay F32, and so
    # do the small position / token-type tables it never quantizes.
    matrices = [t for t in tensors if len(t.shape) >= 2 and t.name.endswith(".weight")
                and not t.name.endswith("_norm.weight")
                and t.name not in ("position_embd.weight", "token_types.weight")]
    for t in tensors:
        t.qtype = QT.F32
    if out_type in K_RECIPES:
        n_layer = 1 + max((int(t.name.split(".")[1]) for t in tensors if t.name.startswith("blk.")), default=-1)
        chosen = k_recipe_types(out_type, [t.name for t in matrices], [t.shape[-1] for t in matrices], n_layer)
    else:
        chosen = [QTYPES[out_type]] * len(matrices)
    for t, qtype in zip(matrices, chosen):
        t.qtype = qtype
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

    out_type: "f32", "f16" (2-D weights in F16), "q8_0" (2-D weights whose rows
    split into 32-value blocks in Q8_0), or one of llama.cpp's mixed recipes "q4_k_m",
    "q5_k_m", "q6_k" (per-tensor types as llama.cpp's quantizer picks them, see recipes).
    Vectors, norms and biases always stay F32.
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
    cfg = read_json(model_dir / "config.json")
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
            weight_files = model_weight_files(model_dir)
            writer.add_string("embedq.source_sha256", _sha256_files(weight_files))

        for t in model.tensors:
            store_dtype = np.float16 if t.qtype == QT.F16 else np.float32
            writer.add_tensor_info(t.name, t.shape, np.dtype(store_dtype),
                                   tensor_nbytes(t.shape, t.qtype), raw_dtype=t.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        # Counted in weights, not tensors: a K type takes seconds on one large matrix.
        total = sum(int(np.prod(t.shape, dtype=np.int64)) for t in model.tensors)
        with tqdm(total=total, desc=f"convert {out_type}", unit="w", unit_scale=True, disable=not progress) as bar:
            for t in model.tensors:
                bar.set_postfix_str(t.name, refresh=False)
                data = t.load()
                if tuple(data.shape) != tuple(t.shape):
                    raise ConversionError(f"{t.name}: expected shape {t.shape}, read {data.shape}")
                size, cols, done = data.size, t.shape[-1], [0]

                def advance(rows, cols=cols, done=done):
                    done[0] += rows * cols
                    bar.update(rows * cols)

                writer.write_tensor_data(encode(data, t.qtype, on_rows=advance))
                bar.update(size - done[0])
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path
