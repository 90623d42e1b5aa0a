"""What a GGUF file holds, read with the `gguf` package (no model is loaded, so this works for any
GGUF, including architectures and tensor types the runtime does not run): `embedq models info FILE`."""
from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path

POOLING = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


def _field(fields, key):
    f = fields.get(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # a field whose value the package cannot decode: report it as absent
        return None


def _group(name: str) -> str:
    """blk.7.attn_q.weight -> blk.*.attn_q.weight: one line per kind of tensor, not per layer."""
    return re.sub(r"^blk\.\d+\.", "blk.*.", name)


def describe(path: str | os.PathLike) -> dict:
    """Architecture, sizes, tensor types per group, pooling, prompts, Matryoshka dims, context length.
    Raises ValueError with the file's name for anything that is not a readable GGUF."""
    from gguf import GGMLQuantizationType, GGUFReader

    path = Path(path)
    try:
        reader = GGUFReader(path)
    except Exception as e:
        raise ValueError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e
    fields = reader.fields
    arch = _field(fields, "general.architecture") or "?"
    groups: dict[str, Counter] = defaultdict(Counter)
    bytes_by_type: Counter = Counter()
    for t in reader.tensors:
        try:
            kind = GGMLQuantizationType(int(t.tensor_type)).name
        except ValueError:
            kind = f"type {int(t.tensor_type)}"
        groups[_group(t.name)][kind] += 1
        bytes_by_type[kind] += int(t.n_bytes)
    names = _field(fields, "embedq.prompt_names") or []
    texts = _field(fields, "embedq.prompt_texts") or []
    pooling = _field(fields, f"{arch}.pooling_type")
    return {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "name": _field(fields, "general.name"),
        "architecture": arch,
        "context_length": _field(fields, f"{arch}.context_length"),
        "max_seq_length": _field(fields, "embedq.max_seq_length"),
        "embedding_length": _field(fields, f"{arch}.embedding_length"),
        "block_count": _field(fields, f"{arch}.block_count"),
        "pooling": POOLING.get(pooling, pooling) if pooling is not None else None,
        "normalize": _field(fields, "embedq.normalize"),
        "dims_allowed": _field(fields, "embedq.dims_allowed"),
        "prompts": dict(zip(names, texts)),
        "tokenizer": _field(fields, "tokenizer.ggml.model"),
        "vocab_size": len(fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in fields else None,
        "tensors": len(reader.tensors),
        "types_by_group": {g: dict(c) for g, c in sorted(groups.items())},
        "bytes_by_type": dict(bytes_by_type.most_common()),
    }


def format_description(d: dict) -> str:
    lines = [f"{d['file']}  ({d['size_bytes'] / 2**20:.1f} MiB, {d['tensors']} tensors)"]
    for key in ("name", "architecture", "embedding_length", "block_count", "context_length", "max_seq_length",
                "pooling", "normalize", "dims_allowed", "tokenizer", "vocab_size"):
        if d.get(key) is not None:
            lines.append(f"  {key.replace('_', ' ')}: {d[key]}")
    for name, text in d["prompts"].items():
        lines.append(f"  prompt {name}: {text!r}")
    total = sum(d["bytes_by_type"].values()) or 1
    lines.append("  tensor bytes by type: " + ", ".join(f"{k} {v / total:.0%}" for k, v in d["bytes_by_type"].items()))
    lines.append("  types per tensor group:")
    for group, kinds in d["types_by_group"].items():
        lines.append(f"    {group}: " + ", ".join(f"{k} x{n}" if n > 1 else k for k, n in kinds.items()))
    return "\n".join(lines)
