"""`embedq bench http`: the HTTP gateway beside the Celery path, same worker, same run.

One worker process and one `embedq http` process on this machine, Redis as the broker, a fresh
SQLite database. For single-text requests and 32-text requests, at each client count: N requests
closed-loop (each client thread sends its next request when the previous one is answered) through

* HTTP: POST /v1/embeddings with the body the `openai` client sends by default (base64 vectors),
  one keep-alive connection per client thread (http.client: a thin client, so the figures are the
  gateway's, not a heavy client library's); the answer carries the vectors;
* Celery: `embed.delay(texts).get()` from the same number of threads; the answer is the job
  summary (the vectors stay in the database; the HTTP path reads them back and sends them).

Requests/s over the run and the p50/p95/p99 of each request's latency as the client sees it, best
of --repeat runs; for HTTP also the gateway process's CPU time per request.
Every text is distinct, so the cache never answers. Bounded: the request counts are capped, a
run stops sending after --max-seconds, and everything listens on and talks to 127.0.0.1 only.
The result replaces the `http` section of BENCHMARKS.md (bench/report.py).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from .report import cpu_name, replace_section, reproduce
from .service import make_texts, process_cpu_s

SECTION = "http"
MAX_REQUESTS = 5000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=400, help="single-text requests per run (default 400)")
    p.add_argument("--batch-requests", type=int, default=80, help="32-text requests per run (default 80)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per batch request (default 32)")
    p.add_argument("--clients", default="1,8", help="client threads, comma-separated (default 1,8)")
    p.add_argument("--words", type=int, default=16, help="words per text (default 16)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long in one run")
    p.add_argument("--repeat", type=int, default=2, help="runs per row, the best kept (default 2; damps "
                   "interference from other load on the machine)")
    p.add_argument("--broker", default="redis://127.0.0.1:6379/15", help="Redis URL on this machine "
                   "(a database it may flush)")
    p.add_argument("--threads", type=int, help="model threads of the worker (default: all cores)")
    p.add_argument("--model", help="model (default EMBEDQ_MODEL)")
    p.add_argument("--output", default="BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Texts:
    def __init__(self, words: int):
        self.words, self.next = words, 10_000_000  # far from bench service's texts: no cache hits

    def take(self, n: int) -> list[str]:
        out = make_texts(n, self.words, self.next, seed=11)
        self.next += n
        return out


def closed_loop(send, jobs: list[list[str]], clients: int, max_seconds: float) -> dict:
    """Send `jobs` from `clients` threads, each its next when the last is answered; latencies in ms."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    cursor = iter(range(len(jobs)))
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client() -> None:
        state: dict = {}
        start.wait()
        while time.perf_counter() < stop_at[0]:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            t = time.perf_counter()
            try:
                send(jobs[i], state)
            except Exception as e:  # counted, reported, and the run fails
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            dt = (time.perf_counter() - t) * 1000.0
            with lock:
                latencies.append(dt)
        if "conn" in state:
            state["conn"].close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + max_seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed; first: {errors[0]}")
    lat = np.array(latencies)
    return dict(requests=len(lat), seconds=elapsed, rps=len(lat) / elapsed,
                p50=float(np.percentile(lat, 50)), p95=float(np.percentile(lat, 95)),
                p99=float(np.percentile(lat, 99)))


def http_sender(host: str, port: int, model: str):
    def send(texts: list[str], state: dict) -> None:
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection(host, port, timeout=300)
        body = json.dumps({"model": model, "input": texts, "encoding_format": "base64"})
        conn.request("POST", "/v1/embeddings", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
        if len(json.loads(data)["data"]) != len(texts):
            raise RuntimeError("wrong number of vectors")

    return send


def celery_sender(embed):
    def send(texts: list[str], state: dict) -> None:
        s = embed.delay(texts).get(timeout=300)
        if s["status"] != "done" or s["count"] != len(texts):
            raise RuntimeError(f"job {s['job_id']}: {s['status']}")

    return send


def run(args) -> int:
    from schemas.settings import get_settings
    from worker.app import configure

    try:
        clients = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        print(f"error: --clients must be comma-separated integers, got {args.clients!r}", file=sys.stderr)
        return 2
    if not clients or min(clients) < 1 or max(clients) > 64:
        print("error: --clients: 1 to 64 threads each", file=sys.stderr)
        return 2
    for name in ("requests", "batch_requests", "batch_size", "words", "repeat"):
        v = getattr(args, name)
        if not 1 <= v <= MAX_REQUESTS:
            print(f"error: --{name.replace('_', '-')} must be between 1 and {MAX_REQUESTS}", file=sys.stderr)
            return 2
    u = urlparse(args.broker)
    if u.scheme not in ("redis", "rediss") or u.hostname not in LOOPBACK:
        print("error: the HTTP benchmark runs through Redis on this machine: --broker redis://127.0.0.1:PORT/DB",
              file=sys.stderr)
        return 2
    base = get_settings()
    model_name = args.model or base.model
    threads = args.threads or os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="embedq-bench-http-"))
    env = {"EMBEDQ_BROKER_URL": args.broker, "EMBEDQ_RESULT_BACKEND": args.broker,
           "EMBEDQ_DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite'}", "EMBEDQ_MODEL": model_name,
           "EMBEDQ_THREADS": str(threads), "EMBEDQ_QUEUE": "embedq-bench-http", "EMBEDQ_HOME": str(base.home),
           "EMBEDQ_HTTP_MAX_QUEUE": "100000", "EMBEDQ_HTTP_WAIT_S": "300", "EMBEDQ_API_KEYS": ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        return _run(args, env, clients, model_name, threads, tmp)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        configure(get_settings())


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"embedq http exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedq http not healthy within {timeout:.0f} s:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def _run(args, env, clients, model_name, threads, tmp) -> int:
    import platform

    import redis

    import native
    from schemas.settings import get_settings, model_label
    from worker.app import configure
    from worker.processes import WorkerProcess

    s = get_settings()
    configure(s)
    from worker.tasks import embed

    model = native.Model(model_name, threads=1)
    kernels = model.info.get("kernels")
    mean_tokens = float(np.mean(model.encode(make_texts(256, args.words, 0)).lengths))
    served = model_label(model_name)
    del model

    redis.Redis.from_url(args.broker).flushdb()
    worker = WorkerProcess(f"benchhttp@{platform.node()}", tmp / "worker.log", env=env).start()
    port = _free_port()
    log = tmp / "http.log"
    with open(log, "ab") as out:
        gateway = subprocess.Popen([sys.executable, "-m", "embedq", "http", "--host", "127.0.0.1", "--port", str(port),
                                    "--log-level", "warning"], env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    texts = _Texts(args.words)
    rows = []
    load = [os.getloadavg()[0]]
    try:
        worker.wait_ready()
        _wait_healthy(port, gateway, log)
        senders = {"HTTP": http_sender("127.0.0.1", port, served), "Celery": celery_sender(embed)}
        for path, send in senders.items():  # warm-up: connections, the gateway's model view, the caches
            closed_loop(send, [texts.take(4) for _ in range(16)], 4, 60)
        for size, n in ((1, args.requests), (args.batch_size, args.batch_requests)):
            for c in clients:
                # Alternate which path goes first, so neither always meets a warmer machine.
                order = list(senders) if (size + c) % 2 else list(senders)[::-1]
                for path in order:
                    best = None
                    for _ in range(args.repeat):
                        jobs = [texts.take(size) for _ in range(n)]
                        cpu0 = process_cpu_s(gateway.pid)
                        r = closed_loop(senders[path], jobs, c, args.max_seconds)
                        cpu1 = process_cpu_s(gateway.pid)
                        r["gateway_cpu_ms"] = (None if path != "HTTP" or cpu0 is None or cpu1 is None
                                               else 1000.0 * (cpu1 - cpu0) / r["requests"])
                        if best is None or r["rps"] > best["rps"]:
                            best = r
                    r = best
                    rows.append(dict(size=size, clients=c, path=path, **r))
                    print(f"{size:>2} text(s)/request, {c} client(s), {path:<6}: {r['rps']:.1f} req/s, "
                          f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms ({r['requests']} requests)", file=sys.stderr)
        load.append(os.getloadavg()[0])
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
        worker.stop()
        redis.Redis.from_url(args.broker).flushdb()

    md = render(dict(rows=rows, args=args, threads=threads, kernels=kernels, mean_tokens=mean_tokens,
                     model=model_name, settings=s, load=load))
    print(md)
    if not args.no_write:
        replace_section(Path(args.output), SECTION, md)
        print(f"wrote the http section of {args.output}", file=sys.stderr)
    return 0


def render(r: dict) -> str:
    a, s = r["args"], r["settings"]
    rows = r["rows"]
    lines = [
        "## HTTP API: `embedq bench http`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; kernels {r['kernels']}. Model {Path(r['model']).name}; one "
        f"worker process x {r['threads']} threads, {s.slots} slots, batches of <= {s.batch_tokens} tokens, max wait "
        f"{s.batch_wait_ms:g} ms; broker Redis, database SQLite. One `embedq http` process (uvicorn, "
        f"{s.http_wait_threads} wait threads) and the client threads of the benchmark, all on the same machine and "
        f"the same cores as the forward passes. Texts of ~{r['mean_tokens']:.0f} tokens, all distinct. "
        f"Load average (1 min) {r['load'][0]:.1f} at the start, {r['load'][-1]:.1f} at the end: other work on "
        "the machine competes for the same cores, so compare the two paths within a run, not across runs.",
        "",
        "Closed loop: each client thread sends its next request when the previous one is answered. HTTP: "
        "POST /v1/embeddings with base64 vectors (the `openai` client's default), keep-alive connections; the "
        "answer carries the vectors. Celery: `embed.delay(texts).get()`; the answer is the job summary, the "
        "vectors stay in the database. Latency is the client's, request to answer. Each row is the best of "
        f"{a.repeat} runs by requests/s; gateway CPU is the `embedq http` process's CPU time per request.",
        "",
        "| texts per request | clients | path | requests | requests/s | texts/s | p50 ms | p95 ms | p99 ms | "
        "gateway CPU ms/request |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in rows:
        cpu = "" if x.get("gateway_cpu_ms") is None else f"{x['gateway_cpu_ms']:.1f}"
        lines.append(f"| {x['size']} | {x['clients']} | {x['path']} | {x['requests']} | {x['rps']:.1f} | "
                     f"{x['rps'] * x['size']:.1f} | {x['p50']:.1f} | {x['p95']:.1f} | {x['p99']:.1f} | {cpu} |")
    notes = []
    for size in dict.fromkeys(x["size"] for x in rows):
        for c in dict.fromkeys(x["clients"] for x in rows):
            pair = {x["path"]: x for x in rows if x["size"] == size and x["clients"] == c}
            if len(pair) == 2:
                h, k = pair["HTTP"], pair["Celery"]
                notes.append(f"{size} text{'s' if size > 1 else ''}, {c} client{'s' if c > 1 else ''}: HTTP "
                             f"{h['rps']:.1f} req/s vs Celery {k['rps']:.1f} ({100 * h['rps'] / k['rps']:.0f}%), "
                             f"p50 {h['p50']:.1f} vs {k['p50']:.1f} ms ({h['p50'] - k['p50']:+.1f} ms)")
    if notes:
        lines += ["", "HTTP beside Celery: " + "; ".join(notes) + "."]
    lines += ["", reproduce("http", [("--requests", a.requests), ("--batch-requests", a.batch_requests),
                                      ("--batch-size", a.batch_size if a.batch_size != 32 else None),
                                      ("--clients", a.clients), ("--words", a.words if a.words != 16 else None),
                                      ("--repeat", a.repeat if a.repeat != 2 else None),
                                      ("--threads", a.threads), ("--model", a.model)])]
    return "\n".join(lines)
