"""Prometheus metrics of the gateway (GET /metrics), in one registry per app.

Two sources, both honest about what they cover:
* per job the gateway waited for (POST /v1/embeddings), observed from the job's stored metrics
  (storage.LATENCY_FIELDS and the counts the worker recorded): latency parts, batch sizes, tokens,
  cache hits, outcomes. Jobs sent with embed.delay or POST /v1/jobs are not waited for here and
  are not in these: the workers' own exporter (worker/metrics.py, EMBEDQ_METRICS_PORT) counts
  every job;
* read on each scrape: jobs in the database by status (all jobs, however submitted), the broker
  queue's depth, and the workers answering on the queue (from the gateway's cached view).

Metric names (all prefixed embedq_):
  embedq_job_latency_seconds{part}         histogram; part = queue_wait, batch_wait, tokenize, forward,
                                           persist, total (worker/job_runner.py defines each)
  embedq_job_batch_texts                   histogram; texts in the (largest) batch the job rode in
  embedq_job_batch_jobs                    histogram; jobs coalesced into that batch
  embedq_job_tokens                        histogram; tokens the model ran for the job (cache hits: 0)
  embedq_job_tokens_per_second             histogram; the job's tokens / its forward time (a lower
                                           bound on the runtime's rate: a batch shared with other
                                           jobs ran their tokens too)
  embedq_tokens_total                      counter; tokens run for waited jobs: rate() is tokens/s
  embedq_texts_total                       counter; texts in waited jobs
  embedq_cache_hits_total                  counter; of those, texts answered from the cache
  embedq_gateway_jobs_total{outcome}       counter; done, invalid (refused by the worker), failed,
                                           timeout (504: the job goes on)
  embedq_http_requests_total{route,status} counter
  embedq_http_request_duration_seconds{route} histogram
  embedq_jobs{status}                      gauge (scrape); stored jobs by status
  embedq_queue_depth{queue}                gauge (scrape); messages waiting in each broker queue of ours
                                           (EMBEDQ_QUEUE and the QUEUE@NAME queues workers consume)
  embedq_workers{queue}                    gauge (scrape); workers answering on the queue
"""
from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("embedq.gateway")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 262144)
RATE_BUCKETS = (100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000)
PARTS = ("queue_wait", "batch_wait", "tokenize", "forward", "persist", "total")


class GatewayMetrics:
    def __init__(self, scrape: Callable[[], dict]):
        """`scrape()` -> {"jobs": {status: n}, "queue": name, "queue_depths": {queue: n}, "workers": n}, called on
        each scrape (from a thread); a part it cannot read is left out."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram("embedq_job_latency_seconds", "Latency parts of jobs the gateway waited for",
                                 ["part"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_texts = Histogram("embedq_job_batch_texts", "Texts in the batch a job rode in",
                                     buckets=SIZE_BUCKETS, registry=r)
        self.batch_jobs = Histogram("embedq_job_batch_jobs", "Jobs coalesced into the batch a job rode in",
                                    buckets=SIZE_BUCKETS, registry=r)
        self.job_tokens = Histogram("embedq_job_tokens", "Tokens the model ran for a job",
                                    buckets=TOKEN_BUCKETS, registry=r)
        self.tokens_per_s = Histogram("embedq_job_tokens_per_second", "A job's tokens over its forward time",
                                      buckets=RATE_BUCKETS, registry=r)
        self.tokens = Counter("embedq_tokens", "Tokens run for jobs the gateway waited for", registry=r)
        self.texts = Counter("embedq_texts", "Texts in jobs the gateway waited for", registry=r)
        self.cache_hits = Counter("embedq_cache_hits", "Texts answered from the content-hash cache", registry=r)
        self.jobs = Counter("embedq_gateway_jobs", "Jobs the gateway waited for, by outcome", ["outcome"], registry=r)
        self.requests = Counter("embedq_http_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.duration = Histogram("embedq_http_request_duration_seconds", "HTTP request duration by route",
                                  ["route"], buckets=LATENCY_BUCKETS, registry=r)
        for outcome in ("done", "invalid", "failed", "timeout"):
            self.jobs.labels(outcome)
        for part in PARTS:
            self.latency.labels(part)
        r.register(_ScrapeCollector(scrape))

    def observe_job(self, count: int, metrics: dict) -> None:
        """A finished job: its stored metrics (storage.get_metrics)."""
        for part in PARTS:
            v = metrics.get(f"{part}_ms")
            if v is not None:
                self.latency.labels(part).observe(v / 1000.0)
        tokens = int(metrics.get("tokens") or 0)
        if metrics.get("batch_size"):
            self.batch_texts.observe(metrics["batch_size"])
            self.batch_jobs.observe(metrics.get("batch_jobs") or 1)
        if tokens:
            self.job_tokens.observe(tokens)
            if metrics.get("forward_ms"):
                self.tokens_per_s.observe(tokens / (metrics["forward_ms"] / 1000.0))
        self.tokens.inc(tokens)
        self.texts.inc(count)
        self.cache_hits.inc(int(metrics.get("cache_hits") or 0))
        self.jobs.labels("done").inc()

    def outcome(self, outcome: str) -> None:
        self.jobs.labels(outcome).inc()

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.duration.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeCollector:
    def __init__(self, scrape: Callable[[], dict]):
        self.scrape = scrape

    def describe(self):
        return []  # unchecked: its series depend on what the scrape finds

    def collect(self):
        try:
            s = self.scrape()
        except Exception as e:  # a scrape must still answer with the rest
            log.warning("metrics scrape: %s: %s", type(e).__name__, e)
            return
        if "jobs" in s:
            g = GaugeMetricFamily("embedq_jobs", "Stored jobs by status", labels=["status"])
            for status in sorted({"running", "done", "failed", *s["jobs"]}):
                g.add_metric([status], s["jobs"].get(status, 0))
            yield g
        if "queue_depths" in s:
            g = GaugeMetricFamily("embedq_queue_depth", "Messages waiting in a broker queue", labels=["queue"])
            for queue, depth in sorted(s["queue_depths"].items()):
                g.add_metric([queue], depth)
            yield g
        if "workers" in s:
            g = GaugeMetricFamily("embedq_workers", "Workers answering on the queue", labels=["queue"])
            g.add_metric([s["queue"]], s["workers"])
            yield g
