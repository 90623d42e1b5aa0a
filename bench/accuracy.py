"""`embedq bench accuracy`: our vectors and token ids against sentence-transformers and HF.

For each model and GGUF file type, on the multilingual corpus with its edge cases
(bench/corpus.py), against sentence-transformers with the model's F32 weights (bench/references.py
caches those vectors):

- cosine of each text's vector to the reference: minimum, median, texts under 0.999;
- the largest absolute difference of any vector component;
- token ids: the share of texts whose ids, as our forward pass gets them (special tokens added,
  truncated at the model's maximum length), equal those of HF transformers' AutoTokenizer with
  special tokens and truncation at the same length (what sentence-transformers feeds its model).

Optionally llama.cpp (llama-cpp-python, in a subprocess) on the same GGUF file as a comparison
row. The figures go to BENCHMARKS.md (section `accuracy`, rendered from every row measured so
far) and to bench/results/accuracy.json beside it, which tests/runtime/test_accuracy_*.py check their
own measurements against. A run that measures some rows replaces those rows and keeps the rest.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import report

MODELS = ("all-MiniLM-L6-v2", "embeddinggemma-300m")
TYPES = ("f32", "f16", "q8_0")
THRESHOLD = 0.999
SECTION = "accuracy"
RESULTS = Path("bench") / "results" / "accuracy.json"  # relative to the markdown file's folder
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "accuracy.json"  # the published figures
DISPLAY = {"all-MiniLM-L6-v2": "all-MiniLM-L6-v2", "embeddinggemma-300m": "EmbeddingGemma-300M"}


# --------------------------------------------------------------------------- measures

def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def figures(vectors: np.ndarray, reference: np.ndarray) -> dict:
    """The published figures of one row: vectors vs reference, row by row."""
    if vectors.shape != reference.shape:
        raise ValueError(f"shape {vectors.shape} vs reference {reference.shape}")
    cos = cosines(vectors, reference)
    return {"texts": int(len(cos)), "min_cos": float(cos.min()), "median_cos": float(np.median(cos)),
            "under_0999": int((cos < THRESHOLD).sum()),
            "max_abs_diff": float(np.abs(vectors.astype(np.float64) - reference).max()),
            "worst_text": int(cos.argmin())}


def forward_ids(model, texts: list[str]) -> list[list[int]]:
    """Token ids as our forward pass gets them: special tokens added, truncated at max_tokens."""
    enc = model.encode(texts)  # Encoded: every text's ids back to back, and their lengths
    return [x.tolist() for x in np.split(enc.ids, np.cumsum(enc.lengths)[:-1])]


def hf_ids(hf_dir: str | os.PathLike, texts: list[str], max_length: int) -> list[list[int]]:
    """HF transformers' ids for the texts: special tokens added, truncated at max_length, as
    sentence-transformers tokenizes them (tests/runtime/test_tokenizer_gemma.py checks AutoTokenizer gives
    the same ids as the model's tokenizer.json pipeline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    return [list(tok(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"])
            for t in texts]


def token_agreement(ours: list[list[int]], theirs: list[list[int]]) -> int:
    """How many texts have exactly the same ids."""
    if len(ours) != len(theirs):
        raise ValueError("different numbers of texts")
    return sum(a == b for a, b in zip(ours, theirs))


def embed(model, texts: list[str], batch: int, desc: str) -> np.ndarray:
    """Model.embed over the texts in batches of `batch`, with a progress bar."""
    from tqdm import tqdm

    out = np.empty((len(texts), model.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit="text", leave=False, disable=None) as bar:
        for i in range(0, len(texts), batch):
            out[i:i + batch] = model.embed(texts[i:i + batch])
            bar.update(len(texts[i:i + batch]))
    return out


def discrepancies(vectors: np.ndarray, reference: np.ndarray, row: dict, cos_margin: float,
                  abs_margin: float) -> list[str]:
    """How figures measured now differ from a published row beyond the margins (empty: they agree).

    min/median cosine within cos_margin, max abs diff within abs_margin, the same number of texts;
    the count under 0.999 exactly, except that texts whose cosine lies within cos_margin of 0.999
    may fall on either side."""
    f = figures(vectors, reference)
    cos = cosines(vectors, reference)
    out = []
    if f["texts"] != row["texts"]:
        out.append(f"texts: measured {f['texts']}, published {row['texts']}")
    for k in ("min_cos", "median_cos"):
        if abs(f[k] - row[k]) > cos_margin:
            out.append(f"{k}: measured {f[k]:.8f}, published {row[k]:.8f} (margin {cos_margin:g})")
    if abs(f["max_abs_diff"] - row["max_abs_diff"]) > abs_margin:
        out.append(f"max_abs_diff: measured {f['max_abs_diff']:.3g}, published {row['max_abs_diff']:.3g} "
                   f"(margin {abs_margin:g})")
    near = int((np.abs(cos - THRESHOLD) <= cos_margin).sum())
    if abs(f["under_0999"] - row["under_0999"]) > near:
        out.append(f"under_0999: measured {f['under_0999']}, published {row['under_0999']} "
                   f"({near} texts within the margin of {THRESHOLD})")
    return out


def corpus_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def row_key(row: dict) -> tuple:
    return row["model"], row["file_type"], row["engine"], row.get("activations")


def find_row(results: dict, model: str, file_type: str, engine: str = "embedq",
             activations: str | None = "f32") -> dict | None:
    for row in results.get("rows", []):
        if row_key(row) == (model, file_type, engine, activations):
            return row
    return None


def load_results(path: str | os.PathLike) -> dict:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"rows": []}


# --------------------------------------------------------------------------- llama.cpp

def _llama_child(spec: dict) -> None:
    """In a subprocess: llama.cpp's vectors and fed ids for the texts, to spec['out'] (.npz)."""
    import llama_cpp
    from tqdm import tqdm

    from bench.llama_peer import open_llama

    n_ctx = int(spec["n_ctx"])
    llm = open_llama(spec["model"], n_ctx, threads=spec["threads"])
    texts = spec["texts"]
    vectors = np.full((len(texts), spec["dim"]), np.nan, dtype=np.float32)
    ids = []
    for i, t in enumerate(tqdm(texts, desc="llama.cpp", unit="text", leave=False, disable=None)):
        # What Llama.embed(truncate=True) feeds the model: its tokenizer with specials, cut at n_batch.
        ids.append(llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)[:n_ctx])
        try:
            vectors[i] = llm.embed(t, normalize=True, truncate=True)
        except Exception as e:  # noqa: BLE001 - reported as a failed text
            print(f"llama.cpp failed on text {i}: {e}", file=sys.stderr)
    llm.close()
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    flat = np.array([i for x in ids for i in x], dtype=np.int64)
    np.savez(spec["out"], vectors=vectors, lengths=lengths, ids=flat, version=llama_cpp.__version__)


def llama_cpp_run(gguf: Path, texts: list[str], dim: int, n_ctx: int, threads: int):
    """(vectors with NaN rows for failed texts, fed ids, llama-cpp-python version) or None."""
    with tempfile.TemporaryDirectory(prefix="embedq-acc-") as tmp:
        spec = {"model": str(gguf), "texts": texts, "dim": dim, "n_ctx": n_ctx, "threads": threads,
                "out": str(Path(tmp) / "llama.npz")}
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        p = subprocess.run([sys.executable, "-m", "bench.accuracy", "--llama-child"], input=json.dumps(spec),
                           text=True, stdout=subprocess.PIPE, env=env)
        if p.returncode != 0 or not Path(spec["out"]).exists():
            print(f"llama.cpp on {gguf.name} failed (exit {p.returncode}); no llama.cpp row", file=sys.stderr)
            return None
        z = np.load(spec["out"])
        ids = np.split(z["ids"], np.cumsum(z["lengths"])[:-1])
        return z["vectors"], [x.tolist() for x in ids], str(z["version"])


# --------------------------------------------------------------------------- the benchmark

def measure(models: list[str], types: list[str], activations: list[str], llama_types: list[str], threads: int,
            batch: int) -> tuple[list[dict], dict]:
    """Rows for every model x type (x activations for the types other than F32), plus the run's metadata."""
    import sentence_transformers
    import torch
    from tqdm import tqdm

    from native import Model, hub

    from .corpus import load_corpus
    from .references import st_vectors

    texts = load_corpus()
    today = time.strftime("%Y-%m-%d")
    rows = []
    kernels = None
    for name in models:
        hf_dir = hub.fetch(name)
        tqdm.write(f"{name}: sentence-transformers reference vectors (cached after the first run)")
        reference = st_vectors(hf_dir, texts, progress=True)
        theirs = None
        for ftype in types:
            gguf = hub.pull(name, ftype)
            # F32 weights always take the f32 path; int8 activations exist only for Q8_0 weights.
            acts = (["f32"] if ftype == "f32"
                    else activations if ftype == "q8_0" else [a for a in activations if a != "int8"])
            for act in acts:
                model = Model(gguf, threads=threads, activations=act)
                kernels = model.info["kernels"]
                if theirs is None:
                    theirs = hf_ids(hf_dir, texts, model.max_tokens)
                t0 = time.perf_counter()
                vec = embed(model, texts, batch, f"{name} {ftype} ({act} activations)")
                secs = time.perf_counter() - t0
                row = {"model": name, "file_type": ftype, "engine": "embedq", "activations": act,
                       **figures(vec, reference),
                       "token_ids_equal": token_agreement(forward_ids(model, texts), theirs),
                       "max_tokens": model.max_tokens, "kernels": kernels, "threads": threads, "date": today,
                       "default": Model(gguf, threads=1).info["activations"] == act}
                rows.append(row)
                tqdm.write(f"  {_describe(row)} ({secs:.0f} s)")
                del model
            if ftype in llama_types:
                got = llama_cpp_run(gguf, texts, reference.shape[1], Model(gguf, threads=1).max_tokens, threads)
                if got is not None:
                    vec, ids, version = got
                    ok = ~np.isnan(vec).any(axis=1)
                    row = {"model": name, "file_type": ftype, "engine": "llama.cpp", "activations": None,
                           **figures(vec[ok], reference[ok]), "failed": int((~ok).sum()),
                           "token_ids_equal": token_agreement(ids, theirs), "llama_cpp_python": version,
                           "threads": threads, "date": today}
                    rows.append(row)
                    tqdm.write(f"  {_describe(row)}")
    meta = {"corpus": {"texts": len(texts), "sha256_16": corpus_fingerprint(texts)},
            "reference": {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__},
            "machine": report.cpu_name(), "date": today}
    return rows, meta


def _describe(row: dict) -> str:
    act = f" {row['activations']}" if row.get("activations") else ""
    return (f"{row['model']} {row['file_type']} {row['engine']}{act}: min {row['min_cos']:.7f}, median "
            f"{row['median_cos']:.7f}, {row['under_0999']} under {THRESHOLD}, max abs {row['max_abs_diff']:.2g}, "
            f"ids {row['token_ids_equal']}/{row['texts'] + row.get('failed', 0)}")


def merge(old: dict, rows: list[dict], meta: dict) -> dict:
    """New rows replace old ones with the same (model, type, engine, activations); old rows measured
    on another corpus are dropped."""
    keep = []
    if old.get("corpus") == meta["corpus"]:
        new_keys = {row_key(r) for r in rows}
        keep = [r for r in old.get("rows", []) if row_key(r) not in new_keys]
    order = {m: i for i, m in enumerate(MODELS)}
    types = {t: i for i, t in enumerate(TYPES)}

    def sort_key(r):
        return (order.get(r["model"], 99), r["model"], r["engine"] != "embedq", types.get(r["file_type"], 99),
                r.get("activations") or "")

    return {"about": "embedq bench accuracy: vectors vs sentence-transformers (F32), token ids vs HF "
                     "AutoTokenizer; see BENCHMARKS.md", **meta, "rows": sorted(keep + rows, key=sort_key)}


def _cos(x: float) -> str:
    return f"{x:.7f}"


def _abs(x: float) -> str:
    return f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}"


def render(results: dict, threads: int) -> str:
    n = results["corpus"]["texts"]
    ref = results["reference"]
    lines = [
        "## Accuracy against sentence-transformers",
        "",
        f"{n} texts (`bench/data/corpus_multilingual.txt` plus the edge cases in `bench/corpus.py`: empty, "
        "whitespace, controls, emoji, combining marks, Korean, Hindi, CJK, 5000-character texts). Cosine of "
        f"each vector to sentence-transformers {ref['sentence_transformers']}'s (torch {ref['torch']}, CPU, "
        "the model's F32 weights); max abs diff is the largest difference of any component. Token ids: "
        "texts whose ids as fed to the forward pass (special tokens, truncated at the model's maximum) equal "
        "HF transformers' `AutoTokenizer` with the same truncation. The same figures, unrounded: "
        "[`bench/results/accuracy.json`](bench/results/accuracy.json), which the accuracy tests check "
        "their own measurements against.",
        "",
        "| model | file | engine | min cos | median cos | texts < 0.999 | max abs diff | token ids = HF |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for r in results["rows"]:
        if r["engine"] == "embedq":
            # Rows from before "auto" existed lack the flag; f32 was the default then.
            default = r.get("default", r["activations"] == "f32")
            engine = f"embedq, {r['activations']} activations" + (" (default)" if default
                                                                   and r["file_type"] != "f32" else "")
        else:
            engine = f"llama.cpp {r.get('llama_cpp_python', '')}".strip()
        total = r["texts"] + r.get("failed", 0)
        if r.get("failed"):
            notes.append(f"llama.cpp failed on {r['failed']} of {total} texts with {DISPLAY.get(r['model'], r['model'])}; "
                         "its cosine figures are over the others.")
        lines.append(f"| {DISPLAY.get(r['model'], r['model'])} | {r['file_type'].upper()} | {engine} | "
                     f"{_cos(r['min_cos'])} | {_cos(r['median_cos'])} | {r['under_0999']} | "
                     f"{_abs(r['max_abs_diff'])} | {r['token_ids_equal']}/{total} |")
    lines += [""]
    if any(r["engine"] == "llama.cpp" for r in results["rows"]):
        lines += ["llama.cpp (llama-cpp-python, `Llama.embed` with mean pooling and `truncate=True`, n_ctx = the "
                  "model's maximum) runs on the same GGUF file. Its token-id column compares the ids `Llama.embed` "
                  "feeds the model (llama.cpp's tokenizer with special tokens added; special tokens typed in the "
                  "text are not parsed; long texts cut at n_ctx without the closing special token) with HF's.", ""]
    lines += notes + ([""] if notes else [])
    dates = sorted({r.get("date", results["date"]) for r in results["rows"]})
    lines += [f"Machine: {results['machine']}; measured {' to '.join(dict.fromkeys([dates[0], dates[-1]]))}.", "",
              report.reproduce("accuracy", [("--threads", threads)])
              + " (`--models` and `--types` rerun some rows and keep the others)"]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list (default {','.join(MODELS)})")
    p.add_argument("--types", default=",".join(TYPES), help=f"GGUF file types (default {','.join(TYPES)})")
    p.add_argument("--activations", default="f32,int16,int8",
                   help="activation schemes measured (default f32,int16,int8; F32 files use f32 only, int8 applies to Q8_0 only)")
    p.add_argument("--llama-types", default="q8_0",
                   help="file types also measured with llama.cpp on the same file (default q8_0; '' for none)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batch", type=int, default=16, help="texts per Model.embed call (default 16)")
    p.add_argument("--out", "--output", dest="out", default="BENCHMARKS.md",
                   help="markdown file whose accuracy section is replaced ('' for none)")
    p.add_argument("--json", dest="json_path",
                   help=f"results file (default {RESULTS} in the markdown file's folder)")
    p.add_argument("--from-json", action="store_true",
                   help="measure nothing: rewrite the markdown section from the results file")


def _list(text: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if allowed is not None and x not in allowed]
    if bad:
        raise ValueError(f"unknown {what}: {', '.join(bad)} (known: {', '.join(allowed)})")
    return items


def run(args) -> int:
    try:
        models = _list(args.models, MODELS, "model")
        types = _list(args.types, TYPES, "file type")
        acts = _list(args.activations, ("f32", "int16", "int8"), "activations")
        llama_types = _list(args.llama_types, TYPES, "file type")
    except ValueError as e:
        print(f"embedq bench accuracy: error: {e}", file=sys.stderr)
        return 2
    if not models or not types or not acts or args.threads < 1 or args.batch < 1:
        print("embedq bench accuracy: error: give at least one model, type and activation scheme; "
              "--threads and --batch must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out not in ("", None) else None
    json_path = Path(args.json_path) if args.json_path else (out.resolve().parent if out else Path.cwd()) / RESULTS
    if args.from_json:
        results = load_results(json_path)
        if not results["rows"]:
            print(f"embedq bench accuracy: error: no results in {json_path}", file=sys.stderr)
            return 2
    else:
        rows, meta = measure(models, types, acts, llama_types, args.threads, args.batch)
        results = merge(load_results(json_path), rows, meta)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    md = render(results, results["rows"][0].get("threads", args.threads))
    print(md)
    if out:
        report.replace_section(out, SECTION, md)
        print(f"wrote the accuracy section of {out} and {json_path}", file=sys.stderr)
    else:
        print(f"wrote {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--llama-child"]:
        _llama_child(json.loads(sys.stdin.read()))
