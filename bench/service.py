"""`embedq bench service`: end-to-end throughput and latency of the queue service through Redis.

1. saturation, for each job size: `native.Model.embed` on the run's texts in batches of the
   worker's token budget, in this process with the worker's thread count (the ceiling); then
   the same texts as jobs: N client threads enqueue them as fast as they can and wait for all;
   texts/s enqueue-to-committed, as a fraction of raw.
   Alongside: the CPU each job cost the worker processes and the client process, and the same
   for `embedq.ping`, a task that does nothing (Celery's own per-job cost with these settings:
   message, events, result, ack). The forward passes need all cores at raw speed, so the service
   reaches a fraction f of raw only if everything else fits in (1 - f) of the cores; the report
   gives that CPU budget per job at 90% next to what a job costs.
2. latency: jobs offered open-loop at 50% and 90% of the measured capacity (fixed arrival
   schedule spread over the client threads); p50/p95/p99 of each job's total latency (enqueue to
   commit, from the database) and the medians of its parts.
Every text is distinct so the content-hash cache never answers. The result replaces the
`service` section of BENCHMARKS.md (bench/report.py), plot included: docs/bench-service.png.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .report import cpu_name, plot_path, replace_section, reproduce

SECTION = "service"

_WORDS = ("queue worker batch vector model token search index cluster latency memory thread kernel "
          "document sentence meaning river mountain city music garden window paper light signal "
          "engine market policy health school travel energy ocean forest winter summer story").split()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--texts", type=int, default=2400, help="texts per saturation run (default 2400)")
    p.add_argument("--texts-per-job", default="1,4,16,64",
                   help="job sizes to saturate with, comma-separated (default 1,4,16,64)")
    p.add_argument("--latency-texts-per-job", type=int, default=4, help="job size of the latency runs (default 4)")
    p.add_argument("--latency-jobs", type=int, default=200, help="jobs per latency run (default 200)")
    p.add_argument("--repeat", type=int, default=2,
                   help="measure raw and service this many times per job size and keep the best of each "
                        "(default 2; damps interference from other load on the machine)")
    p.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    p.add_argument("--words", type=int, default=16, help="words per text (default 16)")
    p.add_argument("--broker", default="redis://127.0.0.1:6379/15", help="Redis URL (a database it may flush)")
    p.add_argument("--database", help="database URL (default: a fresh SQLite file in a temp dir)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, help="model threads per worker (default: cores / workers)")
    p.add_argument("--model", help="model (default EMBEDQ_MODEL)")
    p.add_argument("--batch-tokens", type=int)
    p.add_argument("--batch-wait-ms", type=float)
    p.add_argument("--slots", type=int)
    p.add_argument("--output", default="BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--texts-per-job must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ValueError("--texts-per-job sizes must be >= 1")
    return sizes


def make_texts(n: int, words: int, start: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed + start)
    return [f"item {start + i}: " + " ".join(rng.choice(_WORDS) for _ in range(words)) for i in range(n)]


def raw_throughput(model, texts: list[str], budget: int) -> float:
    """Texts per second of Model.embed over `texts` in token-budget batches, as the worker cuts them."""
    from worker.coalescer import split

    runs = split(model.encode(texts).lengths.tolist(), budget)
    model.embed(texts[:8])
    t = time.perf_counter()
    for a, b, _tok in runs:
        model.embed(texts[a:b])
    return len(texts) / (time.perf_counter() - t)


def process_cpu_s(pid: int | None = None) -> float | None:
    """User + system CPU seconds of a process (this one by default); None where /proc is missing."""
    if pid is None:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by the worker processes and by this (the client) process over a block."""

    def __init__(self, worker_pids: list[int]):
        self.pids = worker_pids

    def _now(self) -> tuple[float | None, float]:
        w = [process_cpu_s(p) for p in self.pids]
        return (None if None in w else sum(w)), process_cpu_s()

    def __enter__(self) -> "CpuMeter":
        self._start = self._now()
        return self

    def __exit__(self, *exc) -> None:
        (w1, c1), (w0, c0) = self._now(), self._start
        self.worker_s = None if w0 is None or w1 is None else w1 - w0
        self.client_s = c1 - c0


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _enqueue_all(embed, jobs: list[list[str]], clients: int, schedule: list[float] | None, desc: str):
    """Send jobs from `clients` threads (at schedule[i] seconds after start, if given); wait for all.
    Returns (job ids, seconds from first send to last result)."""
    ids: list[str | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    # disable=None: a progress bar on a terminal, nothing in CI logs.
    bar = tqdm(total=len(jobs), desc=desc, unit="job", leave=False, disable=None)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    t0_box: list[float] = []

    def client(k: int) -> None:
        mine = range(k, len(jobs), clients)
        start.wait()
        t0 = t0_box[0]
        results = []
        for i in mine:
            if schedule is not None:
                delay = t0 + schedule[i] - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            results.append((i, embed.delay(jobs[i])))
        for i, r in results:
            try:
                ids[i] = r.get(timeout=600)["job_id"]
            except BaseException as e:
                errors.append(e)
            with lock:
                bar.update(1)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    t0_box.append(time.perf_counter())
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0_box[0]
    bar.close()
    if errors:
        raise RuntimeError(f"{len(errors)} jobs failed in the benchmark; first: {errors[0]!r}")
    return ids, elapsed


class _Texts:
    """Distinct benchmark texts, never repeated across runs (so the cache never answers)."""

    def __init__(self, words: int):
        self.words, self.next = words, 0

    def take(self, n: int) -> list[str]:
        out = make_texts(n, self.words, self.next)
        self.next += n
        return out


def _jobs(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def run(args) -> int:
    from schemas.settings import get_settings
    from worker.app import configure

    try:
        sizes = parse_sizes(args.texts_per_job)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in ("texts", "clients", "words", "latency_jobs", "workers", "latency_texts_per_job", "repeat"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if not args.broker.startswith(("redis://", "rediss://")):
        print("error: the service benchmark runs through Redis; give --broker redis://...", file=sys.stderr)
        return 2
    base = get_settings()
    model_name = args.model or base.model
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    budget = args.batch_tokens or base.batch_tokens
    tmp = Path(tempfile.mkdtemp(prefix="embedq-bench-"))
    db = args.database or f"sqlite:///{tmp / 'bench.sqlite'}"
    env = {"EMBEDQ_BROKER_URL": args.broker, "EMBEDQ_RESULT_BACKEND": args.broker, "EMBEDQ_DATABASE_URL": db,
           "EMBEDQ_MODEL": model_name, "EMBEDQ_THREADS": str(threads), "EMBEDQ_BATCH_TOKENS": str(budget),
           "EMBEDQ_QUEUE": "embedq-bench"}
    if args.batch_wait_ms is not None:
        env["EMBEDQ_BATCH_WAIT_MS"] = str(args.batch_wait_ms)
    if args.slots is not None:
        env["EMBEDQ_SLOTS"] = str(args.slots)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        return _run(args, env, sizes, model_name, threads, budget, tmp, db)
    finally:
        # Leave the calling process configured as it was (the benchmark can run in-process).
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        configure(get_settings())


def _run(args, env, sizes, model_name, threads, budget, tmp, db) -> int:
    import native
    import storage
    from schemas.settings import get_settings

    from worker.app import configure
    from worker.processes import WorkerProcess

    s = get_settings()
    configure(s)
    database = storage.connect(db)
    from worker.tasks import embed, ping

    texts = _Texts(args.words)
    model = native.Model(model_name, threads=threads, activations=s.activations)
    kernels = model.info.get("kernels")
    mean_tokens = float(np.mean(model.encode(make_texts(512, args.words, 0)).lengths))

    _flush_redis(args.broker)
    workers = [WorkerProcess(f"bench{i}@{platform.node()}", tmp / f"worker{i}.log", env=env).start()
               for i in range(args.workers)]
    saturation, loads, floor = [], [], None
    try:
        for w in workers:
            w.wait_ready()
        _enqueue_all(embed, _jobs(texts.take(32), 4), 2, None, "warm-up")

        # The worker processes are the supervisor's children (embedq worker always supervises).
        pids = [p for w in workers for p in w.children()]
        for size in dict.fromkeys(sizes + [args.latency_texts_per_job]):
            raw, best = 0.0, None
            for _ in range(args.repeat):
                run_texts = texts.take(args.texts)
                # Raw throughput on these very texts, right before the service gets them: on a
                # shared machine both figures of the ratio should see the same background load.
                raw = max(raw, raw_throughput(model, run_texts, budget))
                jobs = _jobs(run_texts, size)
                with CpuMeter(pids) as cpu:
                    secs = _enqueue_all(embed, jobs, args.clients, None, f"saturation, {size} texts/job")[1]
                if best is None or secs < best[0]:
                    best = (secs, cpu)
            secs, cpu = best
            saturation.append(dict(size=size, jobs=len(jobs), raw=raw, texts_s=args.texts / secs,
                                   jobs_s=len(jobs) / secs, ratio=args.texts / secs / raw, shown=size in sizes,
                                   **_cpu_per_job(cpu, len(jobs)),
                                   budget_ms=cpu_budget_ms(raw, size, os.cpu_count() or 1, 0.9)))
            print(f"saturation with {size} texts/job: {args.texts / secs:.1f} texts/s = "
                  f"{100 * args.texts / secs / raw:.1f}% of raw {raw:.1f}", file=sys.stderr)

        # Celery alone: as many no-op jobs as the one-text run had, same clients, same worker.
        pings = [[f"ping {i}"] for i in range(args.texts)]
        with CpuMeter(pids) as cpu:
            secs = _enqueue_all(ping, pings, args.clients, None, "no-op jobs")[1]
        floor = dict(jobs=len(pings), jobs_s=len(pings) / secs, **_cpu_per_job(cpu, len(pings)))
        print(f"no-op jobs: {floor['jobs_s']:.1f} jobs/s", file=sys.stderr)

        capacity = next(x["jobs_s"] for x in saturation if x["size"] == args.latency_texts_per_job)
        for frac in (0.5, 0.9):
            rate = frac * capacity
            jobs = _jobs(texts.take(args.latency_jobs * args.latency_texts_per_job), args.latency_texts_per_job)
            schedule = [i / rate for i in range(len(jobs))]
            ids, elapsed = _enqueue_all(embed, jobs, args.clients, schedule, f"{int(frac * 100)}% load")
            m = [storage.get_metrics(database, i) for i in ids]
            total = np.array([x["total_ms"] for x in m])
            loads.append(dict(
                load=frac, offered_jobs_s=rate, achieved_jobs_s=len(jobs) / elapsed, latencies=total.tolist(),
                p50=float(np.percentile(total, 50)), p95=float(np.percentile(total, 95)),
                p99=float(np.percentile(total, 99)),
                **{f"median_{k}": float(np.median([x[k] for x in m]))
                   for k in ("queue_wait_ms", "batch_wait_ms", "forward_ms", "persist_ms", "batch_jobs")}))
    finally:
        for w in workers:
            w.stop()
        _flush_redis(args.broker)

    del model
    report = dict(saturation=[x for x in saturation if x["shown"]], loads=loads, floor=floor, threads=threads,
                  budget=budget, kernels=kernels, mean_tokens=mean_tokens, settings=s, args=args, model=model_name,
                  db="SQLite" if db.startswith("sqlite") else db.split(":", 1)[0])
    md = render(report)
    print(md)
    if not args.no_write:
        write_report(Path(args.output), report, md)
    return 0


def write_report(output: Path, r: dict, md: str) -> None:
    """The plot to docs/bench-service.png, the section (with the plot's link) into `output`."""
    png, link = plot_path(output, "bench-service.png")
    plot(r, png)
    replace_section(output, SECTION, md + f"\n\n![service throughput and latency]({link})")
    print(f"wrote the service section of {output} and {png}", file=sys.stderr)


def cpu_budget_ms(raw_texts_s: float, size: int, cores: int, fraction: float) -> float:
    """CPU milliseconds a job of `size` texts may spend outside the forward pass for the service to
    run at `fraction` of raw: the forward passes then take `fraction` of all cores, the rest is
    shared by fraction * raw / size jobs per second."""
    return 1000.0 * (1.0 - fraction) * cores * size / (fraction * raw_texts_s)


def _cpu_per_job(cpu: CpuMeter, jobs: int) -> dict:
    return dict(worker_cpu_ms=None if cpu.worker_s is None else 1000.0 * cpu.worker_s / jobs,
                client_cpu_ms=1000.0 * cpu.client_s / jobs)


def plot(r: dict, path: Path) -> None:
    """Throughput vs job size (service and raw) and the job-latency distributions per load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    sat = r["saturation"]
    xs = [x["size"] for x in sat]
    a.plot(xs, [x["raw"] for x in sat], marker="o", label="raw Model.embed")
    a.plot(xs, [x["texts_s"] for x in sat], marker="o", label="service (enqueue to committed)")
    a.set_xscale("log", base=2)
    a.set_xlabel("texts per job")
    a.set_ylabel("texts / s")
    a.set_title("throughput at saturation")
    a.legend(fontsize=8)
    b.hist([x["latencies"] for x in r["loads"]], bins=40, label=[f"{int(100 * x['load'])}% load" for x in r["loads"]],
           histtype="step")
    b.set_xlabel("job latency, ms")
    b.set_ylabel("jobs")
    b.set_title("latency distribution")
    b.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(r: dict) -> str:
    a, s = r["args"], r["settings"]
    lines = [
        "## Service: `embedq bench service`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; kernels {r['kernels']}. Model {Path(r['model']).name}; "
        f"{a.workers} worker process(es) x {r['threads']} threads, {s.slots} slots, batches of <= {r['budget']} "
        f"tokens, max wait {s.batch_wait_ms:g} ms; broker Redis, database {r['db']}; {a.clients} client threads "
        f"in the benchmark process on the same machine (their CPU, Redis's and the worker's bookkeeping all come "
        f"out of the same cores as the forward passes). Texts of ~{r['mean_tokens']:.0f} tokens, all distinct, "
        "so the cache never answers.",
        "",
        f"Throughput, {a.texts} texts per run, enqueue to committed. Raw = `Model.embed` on the same texts, in "
        f"the same {r['budget']}-token batches, same threads, measured in the benchmark process just before "
        f"each service run; best of {a.repeat} for each.",
        "",
        "| texts per job | raw texts/s | service jobs/s | service texts/s | service / raw | worker CPU ms/job | "
        "client CPU ms/job | CPU budget ms/job at 90% |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["saturation"]:
        lines.append(f"| {x['size']} | {x['raw']:.1f} | {x['jobs_s']:.1f} | {x['texts_s']:.1f} | "
                     f"{100 * x['ratio']:.1f}% | {_ms(x['worker_cpu_ms'])} | {_ms(x['client_cpu_ms'])} | "
                     f"{x['budget_ms']:.2f} |")
    f = r.get("floor")
    if f:
        lines.append(f"| no-op `embedq.ping` | | {f['jobs_s']:.1f} | | | {_ms(f['worker_cpu_ms'])} | "
                     f"{_ms(f['client_cpu_ms'])} | |")
        lines += [
            "",
            "Worker CPU includes the forward passes. The last column is the CPU a job may spend outside the "
            "forward pass (worker bookkeeping, client, Redis) if the service is to run at 90% of raw: the forward "
            f"passes then occupy 90% of the {os.cpu_count()} cores. The no-op row is Celery's own cost per job "
            "with the same settings (message, task events, result, late ack): where it is above the budget, no "
            "amount of work on our side reaches 90% at that job size on this machine; larger jobs amortize it.",
        ]
    lines += [
        "",
        f"Job latency (enqueue to vectors committed), jobs of {a.latency_texts_per_job} texts offered open-loop at "
        "a fraction of the capacity measured above; medians of the parts from the stored metrics:",
        "",
        "| load | offered jobs/s | achieved | p50 ms | p95 ms | p99 ms | queue wait | batch wait | forward | "
        "persist | jobs/batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["loads"]:
        lines.append(
            f"| {int(x['load'] * 100)}% | {x['offered_jobs_s']:.1f} | {x['achieved_jobs_s']:.1f} | {x['p50']:.1f} | "
            f"{x['p95']:.1f} | {x['p99']:.1f} | {x['median_queue_wait_ms']:.1f} | {x['median_batch_wait_ms']:.1f} | "
            f"{x['median_forward_ms']:.1f} | {x['median_persist_ms']:.1f} | {x['median_batch_jobs']:.0f} |")
    lines += ["", reproduce("service", [
        ("--texts", a.texts), ("--texts-per-job", a.texts_per_job), ("--clients", a.clients),
        ("--workers", a.workers), ("--repeat", a.repeat)])]
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"
