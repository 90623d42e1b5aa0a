"""`embedq bench quants`: files quantized by llama.cpp's own quantizer, run by embedq and by
llama.cpp on the very same file.

For each llama.cpp recipe (Q4_0 ... Q6_K, Q4_K_M ...) the model's F32 GGUF is quantized with
llama-cpp-python's `llama_model_quantize` (cached under $EMBEDQ_HOME/peers/quantized, keyed by
the source file's hash), then, per engine: the file size, cosine of each text's vector to
sentence-transformers with F32 weights on the multilingual corpus (min, median, texts under 0.999),
texts/s at batch 32 and batch 1 on the short English texts (the best of a few rounds that
alternate the engines, so a busy spell on a shared machine does not land on one engine only).
The table replaces the section `quants-MODEL` of BENCHMARKS.md.

llama-cpp-python is a peer for measuring, never something embedq needs at run time.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from schemas.home import embedq_home

from . import report

RECIPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K")
THRESHOLD = 0.999


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def llama_cpp_quantize(src: str | os.PathLike, recipe: str, threads: int = 2) -> Path:
    """`src` quantized by llama.cpp to `recipe` (as in LLAMA_FTYPE_MOSTLY_<recipe>), cached under
    $EMBEDQ_HOME/peers/quantized/<sha256 of src>/, so a changed source never reuses a stale file."""
    import ctypes

    import llama_cpp

    src = Path(src)
    target = embedq_home() / "peers" / "quantized" / sha256(src)[:16] / f"{src.stem}-{recipe}.gguf"
    if target.is_file():
        return target
    code = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{recipe}", None)
    if code is None:
        raise ValueError(f"llama-cpp-python has no LLAMA_FTYPE_MOSTLY_{recipe}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = code
    params.nthread = threads
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
        if rc != 0 or not partial.is_file():
            raise RuntimeError(f"llama_model_quantize({src.name}, {recipe}) failed with {rc}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def tensor_types(path: Path) -> str:
    """'Q5_0 28, Q4_K 4, ...': the matrices' types, most common first."""
    from collections import Counter

    import native

    c = Counter(t["type"] for t in native.inspect_gguf(str(path))["tensors"] if len(t["shape"]) == 2)
    return ", ".join(f"{t} {n}" for t, n in c.most_common())


def _speed(engine: str, path: Path, threads: int, texts: list[str], max_seconds: float) -> dict | None:
    from .runtime import run_engine

    spec = {"engine": engine, "model": str(path), "texts": texts, "threads": threads, "batch_sizes": [32, 1],
            "max_seconds": max_seconds, "opts": {"n_ctx": 512} if engine == "llama.cpp" else {}}
    r = run_engine(spec)
    if r is None:
        return None
    by_bs = {x["batch_size"]: x["texts_per_s"] for x in r["results"]}
    return {"b32": by_bs[32], "b1": by_bs[1], "rss": r["peak_rss_mb"]}


def best_speed(runs: list[dict | None]) -> dict | None:
    """Per batch size, the fastest of the rounds that ran; the smallest peak resident memory."""
    runs = [r for r in runs if r]
    if not runs:
        return None
    return {**{k: max(r[k] for r in runs) for k in ("b32", "b1")}, "rss": min(r["rss"] for r in runs)}


def _measure_file(recipe: str, maker: str, path: Path, texts: list[str], reference: np.ndarray, fast: list[str],
                  threads: int, max_seconds: float, rounds: int) -> dict:
    from tqdm import tqdm

    from native import Model

    from .accuracy import embed, figures, llama_cpp_run

    m = Model(path, threads=threads)
    row = {"recipe": recipe, "maker": maker, "mb": path.stat().st_size / 1e6, "types": tensor_types(path)}
    row["embedq"] = {**figures(embed(m, texts, 16, f"embedq {recipe} ({maker}'s file)"), reference)}
    got = llama_cpp_run(path, texts, reference.shape[1], m.max_tokens, threads)
    if got is not None:
        vec, _, version = got
        ok = ~np.isnan(vec).any(axis=1)
        row["llama.cpp"] = {**figures(vec[ok], reference[ok]), "failed": int((~ok).sum()), "version": version}
    del m
    engines = [e for e in ("embedq", "llama.cpp") if e in row]
    speeds = {e: [] for e in engines}
    for _ in range(rounds):
        for e in engines:
            speeds[e].append(_speed(e, path, threads, fast, max_seconds))
    for e in engines:
        row[e]["speed"] = best_speed(speeds[e])
    tqdm.write(f"  {recipe} ({maker}'s file): " + "; ".join(
        f"{e} min {row[e]['min_cos']:.5f} median {row[e]['median_cos']:.6f}" for e in engines))
    return row


def measure(model: str, recipes: list[str], threads: int, n_speed: int, max_seconds: float,
            rounds: int) -> list[dict]:
    from tqdm import tqdm

    from native import hub
    from native.convert import OUT_TYPES

    from .corpus import load_corpus
    from .references import st_vectors
    from .runtime import load_corpus as speed_corpus

    texts = load_corpus()
    reference = st_vectors(hub.fetch(model), texts, progress=True)
    src = hub.pull(model, "f32")
    fast = speed_corpus("short", n_speed)
    rows = []
    for recipe in tqdm(recipes, desc="recipes", unit="file"):
        # The recipes `embedq convert` also writes get a second row: our own file of the recipe.
        files = [("llama.cpp", llama_cpp_quantize(src, recipe, threads))]
        if recipe.lower() in OUT_TYPES:
            files.append(("embedq", hub.pull(model, recipe.lower(), progress=False)))
        for maker, path in files:
            rows.append(_measure_file(recipe, maker, path, texts, reference, fast, threads, max_seconds, rounds))
    return rows


def _kernels() -> str:
    import native

    return native.kernel_sets()[-1]


def _wordpiece(model: str) -> bool:
    """Whether the known model is a BERT, whose WordPiece llama.cpp tokenizes differently from HF."""
    from native import hub

    entry = hub.MODELS.get(model)
    return bool(entry and entry.card and entry.card.architecture == "BERT")


def render(model: str, rows: list[dict], threads: int, n_texts: int, n_speed: int, rounds: int,
           command: str) -> str:
    lines = [
        f"## llama.cpp's quantized files: {model}",
        "",
        f"Each file made by llama.cpp's own quantizer (`llama_model_quantize`) from our F32 GGUF, and for the "
        f"recipes `embedq convert --type` writes (q4_k_m, q5_k_m, q6_k) our own file too, then run by "
        f"embedq and by llama.cpp (llama-cpp-python, mean pooling, `Llama.embed(truncate=True)`, n_ctx = the "
        f"model's maximum) on the same file. Cosine: each of {n_texts} texts of the multilingual corpus against "
        f"sentence-transformers with F32 weights. Speed: {n_speed} short English texts, {threads} threads, "
        f"texts/s at batch 32 and batch 1 and the peak resident memory of the measuring process, the best of {rounds} rounds alternating the engines (the machine "
        f"is shared, so expect noise; compare engines within a row). "
        f"A recipe falls back to a legacy type for rows that are not whole 256-element super-blocks, so each "
        f"file mixes types (listed per file below the table).",
        "",
        "| recipe | file by | MB | engine | min cos | median cos | texts < 0.999 | texts/s b32 | texts/s b1 | peak RSS MB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for engine in ("embedq", "llama.cpp"):
            e = r.get(engine)
            if e is None:
                continue
            s = e.get("speed") or {}
            speed = [f"{s[k]:.1f}" if k in s else "-" for k in ("b32", "b1")] + [f"{s['rss']:.0f}" if "rss" in s else "-"]
            name = engine if engine == "embedq" else f"llama.cpp {e.get('version', '')}".strip()
            failed = f" ({e['failed']} failed)" if e.get("failed") else ""
            maker = "embedq convert" if r.get("maker") == "embedq" else "llama.cpp's quantizer"
            lines.append(f"| {r['recipe']} | {maker} | {r['mb']:.1f} | {name} | {e['min_cos']:.5f} | {e['median_cos']:.6f} | "
                         f"{e['under_0999']}{failed} | {' | '.join(speed)} |")
    if _wordpiece(model):
        lines += ["", "llama.cpp's minimum comes from texts its WordPiece tokenizer splits differently from HF's (see "
                  "the accuracy section: 339 of 383 texts get HF's ids); over the texts where both engines feed the "
                  "model the same ids, tests/runtime/test_quant_types.py compares the numerics alone."]
    lines += ["", "Types per file: " + "; ".join(
                  f"{r['recipe']} ({'ours' if r.get('maker') == 'embedq' else 'llama.cpp'}): {r['types']}" for r in rows) + ".", "",
              f"Machine: {report.cpu_name()}, embedq's {_kernels()} kernels; {time.strftime('%Y-%m-%d')}.", "", command]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="known model name (its F32 file is the source)")
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"llama.cpp recipes (default {','.join(RECIPES)})")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--speed-texts", type=int, default=128, help="short texts per speed run (default 128)")
    p.add_argument("--max-seconds", type=float, default=20, help="time cap per engine and batch size")
    p.add_argument("--rounds", type=int, default=3, help="speed rounds per engine, alternating (best kept)")
    p.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"), help="markdown file to update ('' for none)")


def run(args) -> int:
    recipes = [r.strip().upper() for r in args.recipes.split(",") if r.strip()]
    bad = [r for r in recipes if r not in RECIPES]
    if bad or not recipes or args.threads < 1 or args.speed_texts < 1 or args.rounds < 1:
        print(f"embedq bench quants: error: recipes must be among {', '.join(RECIPES)} "
              f"(got {', '.join(bad) or 'none'}); --threads, --speed-texts and --rounds >= 1", file=sys.stderr)
        return 2
    from .corpus import load_corpus

    rows = measure(args.model, recipes, args.threads, args.speed_texts, args.max_seconds, args.rounds)
    command = report.reproduce("quants", [("--model", args.model), ("--recipes", ",".join(recipes)),
                                          ("--threads", args.threads), ("--speed-texts", args.speed_texts),
                                          ("--max-seconds", f"{args.max_seconds:g}"), ("--rounds", args.rounds)])
    md = render(args.model, rows, args.threads, len(load_corpus()), args.speed_texts, args.rounds, command)
    print(md)
    if str(args.output) not in ("", "."):
        report.replace_section(args.output, f"quants-{args.model}", md)
        print(f"wrote {args.output}")
    return 0
