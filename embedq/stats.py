"""`embedq stats`: latency statistics over stored jobs and a plot of their distributions.

The statistics are the ones the benchmark article this project grew from reports: mean, median,
p95, p99, standard deviation, min, max, and the success rate (done / (done + failed)).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from storage import LATENCY_FIELDS as LATENCIES
COLUMNS = ("mean", "median", "p95", "p99", "std", "min", "max")


def describe(values) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {c: float("nan") for c in COLUMNS}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


def compute(metrics: list[dict], counts: dict[str, int]) -> dict:
    """Statistics per latency field, success rate, cache and batching figures."""
    done, failed = counts.get("done", 0), counts.get("failed", 0)
    settled = done + failed
    hits = sum(m["cache_hits"] for m in metrics)
    texts = sum(m["count"] for m in metrics)
    batches = {b for m in metrics for b in m["batch_ids"]}
    return {
        "jobs": {"done": done, "failed": failed, "running": counts.get("running", 0)},
        "success_rate": (done / settled) if settled else float("nan"),
        "latency_ms": {f: describe([m[f] for m in metrics]) for f in LATENCIES},
        "texts": texts,
        "cache_hits": hits,
        "cache_hit_rate": hits / texts if texts else float("nan"),
        "tokens": sum(m["tokens"] for m in metrics),
        "batches": len(batches),
        "batch_jobs_mean": float(np.mean([m["batch_jobs"] for m in metrics if m["batch_jobs"]]))
        if any(m["batch_jobs"] for m in metrics) else float("nan"),
    }


def format_table(stats: dict) -> str:
    head = f"{'latency (ms)':<16}" + "".join(f"{c:>10}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for f, row in stats["latency_ms"].items():
        lines.append(f"{f.removesuffix('_ms'):<16}" + "".join(f"{row[c]:>10.2f}" for c in COLUMNS))
    j = stats["jobs"]
    rate = stats["success_rate"]
    lines += [
        "",
        f"jobs: {j['done']} done, {j['failed']} failed, {j['running']} running; success rate "
        + ("n/a" if np.isnan(rate) else f"{100 * rate:.2f}%"),
        f"texts: {stats['texts']}; from the cache: {stats['cache_hits']} ({100 * stats['cache_hit_rate']:.1f}%); "
        f"tokens computed: {stats['tokens']}",
        f"batches: {stats['batches']}; jobs per batch (mean): {stats['batch_jobs_mean']:.2f}",
    ]
    return "\n".join(lines)


def plot(metrics: list[dict], path: str | Path) -> Path:
    """One histogram per latency field, with median and p95/p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, f in zip(axes.flat, LATENCIES):
        a = np.asarray([m[f] for m in metrics], dtype=np.float64)
        ax.set_title(f.removesuffix("_ms").replace("_", " ") + " (ms)")
        if a.size == 0:
            ax.text(0.5, 0.5, "no jobs", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.hist(a, bins=min(50, max(5, a.size // 4)), color="#4C72B0", alpha=0.85)
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            v = np.percentile(a, q)
            ax.axvline(v, color="#C44E52", linestyle=style, linewidth=1.2, label=f"p{q} {v:.1f}")
        ax.legend(fontsize=8)
        ax.set_ylabel("jobs")
    fig.suptitle(f"embedq job latency over {len(metrics)} jobs")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
