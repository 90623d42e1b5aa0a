"""The workers' Prometheus metrics (EMBEDQ_METRICS_PORT), scraped from a real worker on real Redis:
latency parts per job, batches, tokens, outcomes, cache hits, chunks and queue depth, for jobs sent
with embed.delay (which the gateway's own /metrics never sees), summed across a worker process's
restart (the multiprocess directory keeps a dead process's counts)."""
from __future__ import annotations

import socket
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import storage
from schemas import InvalidJob

pytestmark = pytest.mark.service

SERVICE_SETTINGS = {"batch_wait_ms": 2, "threads": 1, "slots": 4}
MODEL = "all-MiniLM-L6-v2-f32"
LONG = " ".join(f"Line {i} of a document that needs several windows." for i in range(80))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture(scope="module")
def worker(module_service, port):
    return module_service.start_worker("met", metrics_port=port)


def scrape(port: int) -> dict:
    """{(name, frozenset(labels)): value} of every sample."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: dict, name: str, **labels) -> float:
    want = {"model": MODEL, **labels}
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, v2) in ls for k, v2 in want.items()))


def run(texts, **kw):
    from worker.tasks import embed

    r = embed.delay(texts, **kw)
    return r.id, r.get(timeout=120)


def test_worker_metrics_count_every_job_and_survive_a_restart(module_service, worker, port, service_model):
    assert f"worker metrics on http://127.0.0.1:{port}/metrics" in worker.log()
    db = storage.connect(module_service.database_url)
    done = [run([f"metrics text {i}", f"another metrics text {i}"])[0] for i in range(3)]
    done.append(run(["metrics text 0", "a new one"])[0])                 # one cache hit
    chunk_id, _ = run([LONG], overflow="chunk", overflow_overlap=8)
    done.append(chunk_id)
    from worker.tasks import embed

    with pytest.raises(InvalidJob):
        embed.delay([LONG], overflow="reject").get(timeout=120)

    stored = [storage.get_metrics(db, j) for j in done]
    s = scrape(port)
    assert value(s, "embedq_worker_jobs_total", outcome="done") == len(done)
    assert value(s, "embedq_worker_jobs_total", outcome="invalid") == 1
    assert value(s, "embedq_worker_texts_total") == 2 * 4 + 1
    assert value(s, "embedq_worker_cache_hits_total") == 1
    assert value(s, "embedq_worker_chunks_total") == stored[-1]["chunks"] == len(storage.get_chunks(db, chunk_id)) > 2
    for part in ("queue_wait", "batch_wait", "tokenize", "forward", "persist", "total"):
        assert value(s, "embedq_worker_job_latency_seconds_count", part=part) == len(done)
    total_s = value(s, "embedq_worker_job_latency_seconds_sum", part="total")
    assert abs(total_s - sum(m["total_ms"] for m in stored) / 1000.0) < 1e-6
    # Every token a job ran went through a forward pass the batch metrics counted (distinct texts,
    # one job at a time: no batch computed a sequence for two jobs). The reject job ran none.
    tokens = sum(m["tokens"] for m in stored)
    assert value(s, "embedq_worker_tokens_total") == value(s, "embedq_worker_batch_tokens_sum") == tokens
    assert value(s, "embedq_worker_batch_tokens_count") == value(s, "embedq_worker_batch_texts_count") >= len(done)
    assert value(s, "embedq_worker_forward_seconds_total") > 0
    assert value(s, "embedq_worker_batch_tokens_per_second_count") >= len(done)
    # The queue depth of the queues this worker consumes, read by the worker itself.
    deadline = time.monotonic() + 10
    while not any(n == "embedq_worker_queue_depth" for n, _ in s) and time.monotonic() < deadline:
        time.sleep(0.5)
        s = scrape(port)
    depths = {dict(ls)["queue"]: v for (n, ls), v in s.items() if n == "embedq_worker_queue_depth"}
    assert module_service.queue in depths and all(v == 0 for v in depths.values())

    # A worker process killed and restarted by its supervisor: what it counted stays counted.
    after = len(worker.log())
    worker.kill_worker()
    worker.wait_for_log(f"{worker.hostname} ready.", timeout=90, after=after)
    run(["after the restart"])
    s = scrape(port)
    assert value(s, "embedq_worker_jobs_total", outcome="done") == len(done) + 1
    assert value(s, "embedq_worker_job_latency_seconds_count", part="total") == len(done) + 1


def test_metrics_are_off_without_a_port(make_service):
    svc = make_service(threads=1)
    w = svc.start_worker("nomet")
    assert "ready." in w.log() and "worker metrics on" not in w.log()
