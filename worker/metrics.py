"""Prometheus metrics of the worker processes, for every job however it was submitted
(embed.delay, POST /v1/jobs, POST /v1/embeddings).

On with EMBEDQ_METRICS_PORT: `embedq worker` (the supervisor) then gives its worker processes a
prometheus_client multiprocess directory (PROMETHEUS_MULTIPROC_DIR) and serves GET /metrics on
EMBEDQ_METRICS_HOST:EMBEDQ_METRICS_PORT, summing what all of them recorded: one endpoint per
machine, whatever --concurrency and --model say, and counts that survive a worker's restart.
Off (the default), recording costs a dictionary lookup and nothing is served.

Metric names (every one labelled with the served `model`):
  embedq_worker_job_latency_seconds{part}     histogram; part = queue_wait, batch_wait, tokenize, forward,
                                              persist, total (worker/job_runner.py defines each), per done job
  embedq_worker_jobs_total{outcome}           counter; done, invalid (refused: bad input, overflow="reject"),
                                              failed
  embedq_worker_texts_total                   counter; texts of done jobs
  embedq_worker_cache_hits_total              counter; of those, answered from the content-hash cache
  embedq_worker_chunks_total                  counter; windows embedded for overflow="chunk" jobs
  embedq_worker_batch_texts                   histogram; distinct sequences per forward pass
  embedq_worker_batch_tokens                  histogram; tokens per forward pass
  embedq_worker_batch_jobs                    histogram; jobs coalesced into a forward pass
  embedq_worker_batch_tokens_per_second       histogram; a forward pass's tokens over its duration
  embedq_worker_tokens_total                  counter; tokens run through the model
  embedq_worker_forward_seconds_total         counter; time in forward passes (tokens/s over any window:
                                              rate(tokens_total) / rate(forward_seconds_total))
  embedq_worker_queue_depth{queue}            gauge; messages waiting in each broker queue a live worker
                                              consumes (read every QUEUE_POLL_S by each process; the max)
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading

log = logging.getLogger("embedq.worker")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
QUEUE_POLL_S = 2.0
PARTS = ("queue_wait", "batch_wait", "tokenize", "forward", "persist", "total")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
RATE_BUCKETS = (100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000)


class WorkerMetrics:
    """The metric objects of one worker process (created only where the exporter is on)."""

    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        m = ["model"]
        self.latency = Histogram("embedq_worker_job_latency_seconds", "Latency parts of done jobs", m + ["part"],
                                 buckets=LATENCY_BUCKETS)
        self.jobs = Counter("embedq_worker_jobs", "Jobs by outcome", m + ["outcome"])
        self.texts = Counter("embedq_worker_texts", "Texts of done jobs", m)
        self.cache_hits = Counter("embedq_worker_cache_hits", "Texts answered from the content-hash cache", m)
        self.chunks = Counter("embedq_worker_chunks", "Windows embedded for overflow=chunk jobs", m)
        self.batch_texts = Histogram("embedq_worker_batch_texts", "Sequences per forward pass", m,
                                     buckets=SIZE_BUCKETS)
        self.batch_tokens = Histogram("embedq_worker_batch_tokens", "Tokens per forward pass", m,
                                      buckets=TOKEN_BUCKETS)
        self.batch_jobs = Histogram("embedq_worker_batch_jobs", "Jobs per forward pass", m, buckets=SIZE_BUCKETS)
        self.rate = Histogram("embedq_worker_batch_tokens_per_second", "A forward pass's tokens per second", m,
                              buckets=RATE_BUCKETS)
        self.tokens = Counter("embedq_worker_tokens", "Tokens run through the model", m)
        self.forward = Counter("embedq_worker_forward_seconds", "Time in forward passes", m)
        self.queue_depth = Gauge("embedq_worker_queue_depth", "Messages waiting in a broker queue", ["queue"],
                                 multiprocess_mode="livemax")


_metrics: WorkerMetrics | None = None
_lock = threading.Lock()


def enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def get() -> WorkerMetrics | None:
    """This process's metrics, or None where no exporter collects them."""
    global _metrics
    if _metrics is None and enabled():
        with _lock:
            if _metrics is None:
                _metrics = WorkerMetrics()
    return _metrics


def job_done(model: str, metrics: dict, texts: int) -> None:
    m = get()
    if m is None:
        return
    for part in PARTS:
        v = metrics.get(f"{part}_ms")
        if v is not None:
            m.latency.labels(model, part).observe(v / 1000.0)
    m.jobs.labels(model, "done").inc()
    m.texts.labels(model).inc(texts)
    m.cache_hits.labels(model).inc(int(metrics.get("cache_hits") or 0))
    if metrics.get("chunks"):
        m.chunks.labels(model).inc(int(metrics["chunks"]))


def job_settled(model: str, outcome: str) -> None:
    m = get()
    if m is not None:
        m.jobs.labels(model, outcome).inc()


def batch_done(model: str, texts: int, tokens: int, jobs: int, forward_ms: float) -> None:
    m = get()
    if m is None:
        return
    m.batch_texts.labels(model).observe(texts)
    m.batch_tokens.labels(model).observe(tokens)
    m.batch_jobs.labels(model).observe(jobs)
    m.tokens.labels(model).inc(tokens)
    m.forward.labels(model).inc(forward_ms / 1000.0)
    if forward_ms > 0:
        m.rate.labels(model).observe(tokens / (forward_ms / 1000.0))


def watch_queues(app, queues: list[str], stop: threading.Event) -> threading.Thread | None:
    """Keep embedq_worker_queue_depth of `queues` current (a thread; None where metrics are off)."""
    m = get()
    if m is None:
        return None
    from kombu.exceptions import ChannelError

    def run():
        while not stop.wait(QUEUE_POLL_S):
            try:
                with app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1, timeout=5)
                    for q in queues:
                        try:
                            depth = int(conn.default_channel.queue_declare(queue=q, passive=True).message_count)
                        except ChannelError:  # Redis: nothing ever queued there
                            depth = 0
                        m.queue_depth.labels(q).set(depth)
            except Exception as e:  # the broker being down is the supervisor's and the job's business
                log.debug("queue depth: %s: %s", type(e).__name__, e)

    t = threading.Thread(target=run, name="embedq-queue-depth", daemon=True)
    t.start()
    return t


class Exporter:
    """The supervisor's side: a multiprocess directory for its children and the /metrics server."""

    def __init__(self, host: str, port: int):
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = tempfile.mkdtemp(prefix="embedq-metrics-")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.path)
        self.server, self.thread = start_http_server(port, addr=host, registry=registry)
        self.port = self.server.server_port
        self.url = f"http://{host}:{self.port}/metrics"

    def child_env(self) -> dict[str, str]:
        return {MULTIPROC_ENV: self.path}

    def process_dead(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.path)

    def close(self) -> None:
        self.server.shutdown()
        shutil.rmtree(self.path, ignore_errors=True)

