"""`embedq bench runtime`: our runtime beside llama.cpp and sentence-transformers.

Each engine runs in its own subprocess (same texts, same thread count) so that
load time and peak RSS are its own. Results print as a table, replace the section
`runtime-MODEL-CORPUS` of BENCHMARKS.md (bench/report.py) with the command that
reproduces it, and come as a plot, docs/bench-runtime-MODEL-CORPUS.png (throughput
vs batch size, latency distributions).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import report

DATA = Path(__file__).parent / "data"
BATCH_SIZES = (1, 8, 32, 128)


def load_corpus(name: str, n: int) -> list[str]:
    """'short': short English sentences; 'long': the multilingual test corpus
    (longer, many scripts). Repeated/cut to exactly n texts."""
    if name == "short":
        texts = (DATA / "bench_short_en.txt").read_text(encoding="utf-8").splitlines()
    elif name == "long":
        p = DATA / "corpus_multilingual.txt"
        texts = [t for t in p.read_text(encoding="utf-8").splitlines() if t.strip()]
    else:
        p = Path(name)
        texts = [t for t in p.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts = [t for t in texts if t.strip()]
    out = (texts * (n // len(texts) + 1))[:n]
    return out


# --- engines (run inside the child process) ----------------------------------

def _engine_embedq(model: str, threads: int, opts: dict):
    from native import Model

    m = Model(model, threads=threads, activations=opts.get("activations", "auto"))
    meta = {"kernels": m.info["kernels"], "weight_type": m.info["weight_type"], "activations": m.info["activations"],
            "tokenize_ms": 0.0, "forward_ms": 0.0}

    def run(batch):
        v, stats = m.embed_with_stats(batch)
        meta["tokenize_ms"] += stats["tokenize_ms"]
        meta["forward_ms"] += stats["forward_ms"]
        meta.update(m.op_times())  # linear_ms, attention_ms, linear_ops: same span as forward_ms
        return v

    m.op_times(reset=True)
    return run, meta


def _engine_llama(model: str, threads: int, opts: dict):
    import llama_cpp

    from bench.llama_peer import extra_buffers_default, open_llama

    n_ctx = int(opts.get("n_ctx", 512))
    extra = extra_buffers_default()
    llm = open_llama(model, n_ctx, threads=threads, extra_buffers=extra, n_seq_max=int(opts.get("n_seq_max", 64)))

    def run(batch):
        return np.asarray(llm.embed(batch, normalize=True, truncate=True), dtype=np.float32)

    return run, {"n_ctx": n_ctx, "version": llama_cpp.__version__, "extra_buffers": extra}


def _engine_st(model: str, threads: int, opts: dict):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(opts["hf_dir"], device="cpu")
    return lambda batch: st.encode(batch, batch_size=len(batch), normalize_embeddings=True), {"torch": torch.__version__}


def _engine_onnx(model: str, threads: int, opts: dict):
    from .onnx_peer import engine

    return engine(model, threads, opts)


ENGINES = {"embedq": _engine_embedq, "llama.cpp": _engine_llama, "sentence-transformers": _engine_st,
           "onnxruntime": _engine_onnx}


def _child(spec: dict) -> dict:
    texts = spec["texts"]
    t0 = time.perf_counter()
    run, meta = ENGINES[spec["engine"]](spec["model"], spec["threads"], spec.get("opts", {}))
    if spec.get("dump"):  # the accuracy reference: vectors of `texts`, saved for the other engines
        np.save(spec["dump"], np.concatenate([np.asarray(run(texts[i:i + 32]), dtype=np.float32)
                                              for i in range(0, len(texts), 32)]))
        return {"engine": spec["engine"], "dump": spec["dump"]}
    load_s = time.perf_counter() - t0
    run(texts[:2])  # warm-up: first-call allocations and page faults
    results = []
    for bs in spec["batch_sizes"]:
        lat = []
        deadline = time.perf_counter() + spec.get("max_seconds", 60)
        done = 0
        for i in range(0, len(texts), bs):
            batch = texts[i:i + bs]
            t = time.perf_counter()
            run(batch)
            lat.append((time.perf_counter() - t) * 1000)
            done += len(batch)
            if time.perf_counter() > deadline:
                break
        total_s = sum(lat) / 1000
        results.append({
            "batch_size": bs, "texts": done, "seconds": total_s,
            "texts_per_s": done / total_s, "latency_ms": lat,
        })
    accuracy = None
    if spec.get("reference"):  # cosine to sentence-transformers on the multilingual corpus
        ref_texts, ref = spec["reference"]["texts"], np.load(spec["reference"]["vectors"])
        got = np.concatenate([np.asarray(run(ref_texts[i:i + 32]), dtype=np.float32)
                              for i in range(0, len(ref_texts), 32)])
        cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
        accuracy = {"min": float(cos.min()), "median": float(np.median(cos)), "under_0999": int((cos < 0.999).sum())}
    rss_mb = peak_rss_mb()
    return {"engine": spec["engine"], "label": spec.get("label", spec["engine"]), "load_s": load_s,
            "peak_rss_mb": rss_mb, "meta": meta, "results": results, "accuracy": accuracy}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries that across
    fork and exec, so a child started by a parent holding torch would report the parent's peak.
    VmHWM belongs to the address space exec created."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_engine(spec: dict, timeout: float = 1800) -> dict | None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    p = subprocess.run([sys.executable, "-m", "bench.runtime", "--child"], input=json.dumps(spec), text=True,
                       capture_output=True, env=env, timeout=timeout)
    if p.returncode != 0:
        print(f"  {spec.get('label', spec['engine'])} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def count_tokens(model: str, texts: list[str]) -> int:
    """Tokens the texts occupy in forward passes (special tokens added, truncated)."""
    from native import Model

    return Model(model, threads=1).encode(texts).tokens


def merge_rounds(rounds: list[dict]) -> dict:
    """One engine's runs over several rounds as one: texts/s is the median round's (the machine may be
    shared, and a median ignores a round that another process slowed down), latencies are pooled."""
    out = dict(rounds[0], load_s=statistics.median(r["load_s"] for r in rounds),
               peak_rss_mb=max(r["peak_rss_mb"] for r in rounds), results=[])
    for i, first in enumerate(rounds[0]["results"]):
        per = [r["results"][i] for r in rounds]
        rates = [x["texts_per_s"] for x in per]
        out["results"].append(dict(first, texts_per_s=statistics.median(rates), rounds=rates,
                                   latency_ms=[v for x in per for v in x["latency_ms"]]))
    return out


def summarize(r: dict) -> dict:
    lat = np.array(r["latency_ms"])
    return {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99))}


def render_markdown(title: str, setup: str, runs: list[dict], tokens_per_text: float) -> str:
    lines = [f"## {title}", "", setup, "",
             "| engine | batch | texts/s | tokens/s | p50 ms | p95 ms | p99 ms | load s | peak RSS MB | vs llama.cpp best | vs llama.cpp best at any batch | vs sentence-transformers | min cos | median cos | texts < 0.999 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    best_llama = {}
    st = {}
    for run in runs:
        for r in run["results"]:
            if run["engine"] == "llama.cpp":
                best_llama[r["batch_size"]] = max(best_llama.get(r["batch_size"], 0), r["texts_per_s"])
            if run["engine"] == "sentence-transformers":
                st[r["batch_size"]] = r["texts_per_s"]
    for run in runs:
        for r in run["results"]:
            s = summarize(r)
            bs = r["batch_size"]
            vs_l = f"{r['texts_per_s'] / best_llama[bs]:.2f}x" if bs in best_llama else "–"
            # The fair speed comparison: llama.cpp at whichever batch size and n_ctx suits it best.
            vs_any = f"{r['texts_per_s'] / max(best_llama.values()):.2f}x" if best_llama else "–"
            vs_s = f"{r['texts_per_s'] / st[bs]:.2f}x" if bs in st else "–"
            lines.append(
                f"| {run['label']} | {bs} | {r['texts_per_s']:.1f} | {r['texts_per_s'] * tokens_per_text:.0f} | "
                f"{s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | {run['load_s']:.2f} | {run['peak_rss_mb']:.0f} | {vs_l} | "
                f"{vs_any} | {vs_s} | {_accuracy_cells(run.get('accuracy'))} |")
    return "\n".join(lines) + "\n"


def _accuracy_cells(a: dict | None) -> str:
    if not a:
        return "– | – | –"
    return f"{a['min']:.5f} | {a['median']:.5f} | {a['under_0999']}"


# Which peak a run's matrix products are rated against: the instruction family its kernels use.
def peak_family(meta: dict) -> str:
    wide = "avx512" if meta.get("kernels", "").startswith("avx512") else "avx2"
    weights = str(meta.get("weight_type", "")).lower()  # the runtime reports "Q8_0", "F16", ...
    q8 = weights == "q8_0"
    # int16 products take every weight type but F32 (F16 and the 4-6 bit types as 12-bit blocks).
    if weights not in ("", "f32") and meta.get("activations") == "int16":
        return "int16 dot (avx512 vpdpwssd)" if meta.get("kernels") == "avx512vnni" else "int16 dot (avx2 vpmaddwd)"
    if q8 and meta.get("activations") == "int8":
        return "int8 dot (avx512 vpdpbusd)"
    return f"fp32 fma ({wide})"


def time_split(run: dict, peaks: dict) -> str:
    """Where an embedq run's forward time went, and its GEMM rate as a share of this machine's peak."""
    m = run["meta"]
    fwd = m.get("forward_ms") or 0.0
    if not fwd or "linear_ms" not in m:
        return ""
    lin, att, tok = m["linear_ms"], m["attention_ms"], m["tokenize_ms"]
    rate = m["linear_ops"] / m["linear_ms"] / 1e6 if m["linear_ms"] else 0.0  # GOP/s
    family = peak_family(m)
    peak = peaks.get(family)
    share = f", {100 * rate / peak:.0f}% of the {peak:.0f} GOP/s {family} peak" if peak else ""
    return (f"{run['label']} ({m['kernels']} kernels): linear layers {100 * lin / fwd:.1f}% of forward time "
            f"at {rate:.0f} GOP/s{share}; attention {100 * att / fwd:.1f}%; norms, activations, pooling and the "
            f"rest {100 * max(0.0, fwd - lin - att) / fwd:.1f}%; tokenization {100 * tok / fwd:.2f}% on top.")


def plot(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        xs = [r["batch_size"] for r in run["results"]]
        a.plot(xs, [r["texts_per_s"] for r in run["results"]], marker="o", label=run["label"])
    a.set_xscale("log", base=2)
    a.set_xlabel("batch size (texts)")
    a.set_ylabel("texts / s")
    a.set_title("throughput vs batch size")
    a.legend(fontsize=8)
    data, labels = [], []
    for run in runs:
        for r in run["results"]:
            if r["batch_size"] == 32:
                data.append(np.array(r["latency_ms"]) / 32)
                labels.append(run["label"])
    if data:
        b.boxplot(data, showfliers=True)
        b.set_xticks(range(1, len(labels) + 1), labels, rotation=20, fontsize=7)
    b.set_ylabel("ms per text (batch 32)")
    b.set_title("latency distribution")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_runtime(model: str, threads: int, corpus: str, n_texts: int, batch_sizes, peers: list[str],
                  hf_dir: str | None, output: Path | None, llama_model: str | None, activations: list[str],
                  llama_ctx: list[int], max_seconds: float, command: str = "", rounds: int = 1,
                  accuracy: bool = True) -> list[dict]:
    from tqdm import tqdm

    texts = load_corpus(corpus, n_texts)
    tokens_per_text = count_tokens(model, texts) / len(texts)
    specs = []
    for act in activations:
        specs.append({"engine": "embedq", "label": f"embedq ({act})", "model": model, "opts": {"activations": act}})
    if "llama.cpp" in peers:
        from bench.llama_peer import extra_buffers_default

        # Without its repacked/AMX buffers where those crash (bench/llama_peer.py): said in the label.
        plain = "" if extra_buffers_default() else ", plain buffers"
        for ctx in llama_ctx:
            specs.append({"engine": "llama.cpp", "label": f"llama.cpp (n_ctx=n_batch={ctx}{plain})",
                          "model": llama_model or model, "opts": {"n_ctx": ctx}})
    if "sentence-transformers" in peers and hf_dir:
        specs.append({"engine": "sentence-transformers", "label": "sentence-transformers (torch)", "model": model,
                      "opts": {"hf_dir": hf_dir}})
    if "onnxruntime" in peers and hf_dir:
        for kind in ("fp32", "int8"):
            specs.append({"engine": "onnxruntime", "label": f"onnxruntime ({kind})", "model": model,
                          "opts": {"hf_dir": hf_dir, "onnx": kind}})
    reference = _reference(hf_dir, threads) if hf_dir and accuracy else None
    # Rounds alternate the engines, so a burst of load from elsewhere hits one round of each
    # rather than all of one engine's measurements.
    by_spec: list[list[dict]] = [[] for _ in specs]
    load_before = os.getloadavg()[0]
    for spec in specs:
        spec.update(texts=texts, threads=threads, batch_sizes=list(batch_sizes), max_seconds=max_seconds)
    for rnd, (k, spec) in tqdm([(r, ks) for r in range(rounds) for ks in enumerate(specs)], desc="engine runs",
                               unit="run"):
        r = run_engine(dict(spec, reference=reference if rnd == 0 else None))
        if r:
            if spec["engine"] == "embedq" and spec["opts"]["activations"] == "auto":
                r["label"] = f"embedq (default: {r['meta']['activations']})"
            by_spec[k].append(r)
            tqdm.write(f"  {r['label']}: " + ", ".join(
                f"b{x['batch_size']}={x['texts_per_s']:.1f}/s" for x in r["results"]))
    runs = [merge_rounds(rs) for rs in by_spec if rs]
    name = Path(model).stem
    setup = (f"Model `{name}`, corpus `{corpus}` ({len(texts)} texts, {tokens_per_text:.1f} tokens/text), "
             f"{threads} threads, CPU: {report.cpu_name()}, {time.strftime('%Y-%m-%d')}.")
    if rounds > 1:
        setup += (f" Every engine ran {rounds} times, alternating with the others; texts/s is the median "
                  "run's, latencies pool all runs.")
    # Other processes on the machine move every figure (and llama.cpp's spinning threads suffer most
    # when the cores are oversubscribed), so the table says how busy the machine was.
    setup += (f" Load average (1 min) {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end, "
              f"on {os.cpu_count()} CPUs.")
    if reference:
        setup += (" Accuracy columns: cosine to sentence-transformers (F32, torch) on the multilingual corpus "
                  f"({len(reference['texts'])} texts), each engine in batches of 32.")
    kernels = next((r["meta"]["kernels"] for r in runs if r["engine"] == "embedq"), "avx512vnni")
    other_isa = "" if kernels == "avx512vnni" else f", {kernels} kernels"
    md = render_markdown(f"Runtime: {name} ({corpus} texts{other_isa})", setup, runs, tokens_per_text)
    from native import _native

    peaks = _native.measure_peaks(threads, 0.3)
    md += "\nPeaks measured in this run (`native.measure_peaks`, " + f"{threads} threads): " + ", ".join(
        f"{k} {v:.0f} GOP/s" for k, v in peaks.items()) + ".\n"
    for run in runs:
        if run["engine"] == "embedq" and time_split(run, peaks):
            md += f"\n{time_split(run, peaks)}\n"
    if command:
        md += f"\n{command}\n"
    print(md)
    if output:
        key = section_key(name, corpus, kernels)
        png, link = report.plot_path(output, f"bench-{key}.png")
        plot(runs, png, f"{name}, {corpus} texts, {threads} threads, {kernels} kernels")
        report.replace_section(output, key, md + f"\n![throughput and latency]({link})\n")
        print(f"wrote {output} and {png}")
    return runs


def section_key(name: str, corpus: str, kernels: str) -> str:
    """The BENCHMARKS.md section (and plot name) of a run: a run on another kernel set than AVX-512
    VNNI (another CPU, or EMBEDQ_KERNELS forcing one) gets sections of its own beside the VNNI ones
    instead of replacing them."""
    return f"runtime-{name}-{corpus}" + ("" if kernels == "avx512vnni" else f"-{kernels}")


def _reference(hf_dir: str, threads: int) -> dict | None:
    """sentence-transformers' vectors of the multilingual corpus, made once in a child process."""
    import tempfile

    from .corpus import load_corpus as multilingual

    texts = [t for t in multilingual() if t.strip()]
    path = Path(tempfile.mkdtemp(prefix="embedq-bench-")) / "reference.npy"
    got = run_engine({"engine": "sentence-transformers", "model": "", "opts": {"hf_dir": hf_dir}, "texts": texts,
                      "threads": threads, "batch_sizes": [], "dump": str(path)})
    return {"texts": texts, "vectors": str(path)} if got else None


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="GGUF path or known model name (e.g. all-MiniLM-L6-v2:q8_0)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--corpus", default="short", help="short | long | PATH (one text per line)")
    p.add_argument("--texts", type=int, default=256, help="texts per batch size")
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    p.add_argument("--peers", default="llama.cpp,sentence-transformers,onnxruntime",
                   help="comma list of peers to run beside embedq (empty for none)")
    p.add_argument("--hf-dir", help="sentence-transformers folder (default: from the model name's cache)")
    p.add_argument("--llama-model", help="GGUF for llama.cpp (default: the same file)")
    p.add_argument("--llama-ctx", default="512,2048", help="llama.cpp n_ctx=n_batch values to try")
    p.add_argument("--activations", default="auto,f32,int8",
                   help="embedq activation schemes to run (auto: the default, int16 with VPDPWSSD, else f32)")
    p.add_argument("--no-accuracy", action="store_true",
                   help="skip the accuracy columns (cosine to sentence-transformers on the multilingual corpus)")
    p.add_argument("--rounds", type=int, default=1, help="runs per engine, alternating engines; medians reported")
    p.add_argument("--max-seconds", type=float, default=90, help="time cap per engine and batch size")
    p.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"), help="markdown file to update ('' for none)")


def run_cli(args) -> int:
    from native import hub

    model = str(hub.resolve(args.model))
    hf_dir = args.hf_dir
    if hf_dir is None:
        name, _ = hub.split_name(args.model)
        if name in hub.MODELS:
            hf_dir = str(hub.fetch(name))
    peers = [p for p in args.peers.split(",") if p]
    output = args.output if str(args.output) not in ("", ".") else None
    bench_runtime(model, args.threads, args.corpus, args.texts, [int(b) for b in args.batch_sizes.split(",")],
                  peers, hf_dir, output, args.llama_model,
                  [a for a in args.activations.split(",") if a], [int(c) for c in args.llama_ctx.split(",")],
                  args.max_seconds, reproduce_line(args), rounds=args.rounds, accuracy=not args.no_accuracy)
    return 0


def reproduce_line(args) -> str:
    """The command that regenerates this section, every measurement option spelled out."""
    return report.reproduce("runtime", [
        ("--model", args.model), ("--threads", args.threads), ("--corpus", args.corpus), ("--texts", args.texts),
        ("--batch-sizes", args.batch_sizes), ("--peers", args.peers), ("--llama-ctx", args.llama_ctx),
        ("--activations", args.activations), ("--max-seconds", f"{args.max_seconds:g}"), ("--rounds", args.rounds),
        ("--hf-dir", args.hf_dir), ("--llama-model", args.llama_model), ("--no-accuracy", args.no_accuracy)])


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(_child(json.loads(sys.stdin.read()))))
