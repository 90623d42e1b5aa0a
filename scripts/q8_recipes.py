"""Where does EmbeddingGemma's Q8_0 error come from, and which recipe fixes it?

1. Sensitivity: quantize one tensor group to Q8_0 at a time (the rest F32)
   and measure cosine to sentence-transformers on the corpus.
2. Recipes: full Q8_0 files with chosen groups kept at higher precision,
   measured for size, accuracy (f32 and int8 activations) and speed.

Results print as markdown and go into BENCHMARKS.md. Run from a checkout:
    python scripts/q8_recipes.py [--texts 160]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from corpus import load_corpus  # noqa: E402
from references import st_vectors  # noqa: E402

from native import Model, hub  # noqa: E402
from native.bench import update_markdown  # noqa: E402
from native.convert import convert  # noqa: E402

GROUPS = {
    "token_embd": ["token_embd.weight"],
    "attn_qkv": ["blk.*.attn_q.weight", "blk.*.attn_k.weight", "blk.*.attn_v.weight"],
    "attn_output": ["blk.*.attn_output.weight"],
    "ffn_gate_up": ["blk.*.ffn_gate.weight", "blk.*.ffn_up.weight"],
    "ffn_down": ["blk.*.ffn_down.weight"],
    "dense": ["dense_2.weight", "dense_3.weight"],
}
RECIPES = {
    "all Q8_0": [],
    "token_embd F16": ["token_embd.weight=f16"],
    "token_embd + dense F16": ["token_embd.weight=f16", "dense_*.weight=f16"],
    "token_embd + dense + ffn_down F16": ["token_embd.weight=f16", "dense_*.weight=f16", "blk.*.ffn_down.weight=f16"],
}


def stats(v, ref):
    cos = (v * ref).sum(1)
    return {"min": float(cos.min()), "median": float(np.median(cos)), "under_999": int((cos < 0.999).sum()),
            "max_abs": float(np.abs(v - ref).max())}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=0, help="use the first N corpus texts (0 = all)")
    ap.add_argument("--skip-groups", action="store_true")
    ap.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()
    folder = hub.fetch("embeddinggemma-300m")
    texts = load_corpus()
    ref = st_vectors(folder, texts)
    if args.texts:
        texts, ref = texts[: args.texts], ref[: args.texts]
    speed_texts = [t for t in texts if 20 < len(t) < 300][:48]
    tmp = Path(tempfile.mkdtemp(prefix="q8recipes-"))
    lines = []
    if not args.skip_groups:
        lines += ["#### Sensitivity: one tensor group in Q8_0, the rest F32 (f32 activations)", "",
                  "| group in Q8_0 | min cos | median cos | texts < 0.999 | max abs diff |", "|---|---:|---:|---:|---:|"]
        for g, pats in GROUPS.items():
            others = [p for k, v in GROUPS.items() if k != g for p in v]
            out = tmp / f"group-{g}.gguf"
            convert(folder, out, "q8_0", keep_f32=others, progress=False)
            s = stats(Model(out, threads=2).embed(texts), ref)
            lines.append(f"| {g} | {s['min']:.5f} | {s['median']:.6f} | {s['under_999']} | {s['max_abs']:.4f} |")
            print(lines[-1], flush=True)
            out.unlink()
    lines += ["", "#### Q8_0 recipes", "",
              "| recipe | size MB | activations | min cos | median cos | texts < 0.999 | max abs diff | texts/s (batch 16) |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, keep in RECIPES.items():
        out = tmp / "recipe.gguf"
        from native.convert import parse_keep

        kf32, kf16 = parse_keep(keep)
        convert(folder, out, "q8_0", keep_f32=kf32, keep_f16=kf16, progress=False)
        size = out.stat().st_size / 1e6
        for act in ("f32", "int8"):
            m = Model(out, threads=2, activations=act)
            s = stats(m.embed(texts), ref)
            m.embed(speed_texts[:4])
            t0 = time.perf_counter()
            for i in range(0, len(speed_texts), 16):
                m.embed(speed_texts[i:i + 16])
            tps = len(speed_texts) / (time.perf_counter() - t0)
            lines.append(f"| {name} | {size:.0f} | {act} | {s['min']:.5f} | {s['median']:.6f} | {s['under_999']} | "
                         f"{s['max_abs']:.4f} | {tps:.1f} |")
            print(lines[-1], flush=True)
        out.unlink()
    body = (f"### EmbeddingGemma-300M Q8_0 recipes\n\n{len(texts)} corpus texts vs sentence-transformers "
            f"(torch, F32), 2 threads.\n\n" + "\n".join(lines) + "\n\n")
    print(body)
    update_markdown(args.output, "gemma-q8-recipes", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
