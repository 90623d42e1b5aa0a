"""End to end through a real Redis and a real worker process on the real model: many small jobs
from several client threads are coalesced, vectors equal Model.embed, metrics add up, a job above
the token budget is split and reassembled, and repeated texts come from the cache."""
from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

import storage

pytestmark = pytest.mark.service

# Batches here are cut by the token budget, not by the clock: the wait is long enough that a
# batch flushes because it is full (~40 of these small jobs), however fast the runtime or slow
# the machine; only the last, partial batch waits it out. The budget is also small enough that
# the one large job below must be split.
SERVICE_SETTINGS = {"batch_tokens": 1024, "batch_wait_ms": 1000, "slots": 64, "threads": 2}
LATENCY_PARTS = ("queue_wait_ms", "batch_wait_ms", "tokenize_ms", "forward_ms", "persist_ms")


@pytest.fixture(scope="module")
def worker(module_service):
    return module_service.start_worker("e2e")


def job_texts(i: int) -> list[str]:
    return [f"job {i} asks about {topic} number {i * 7 % 13}" for topic in ("rivers", "queues")]


def send_from_threads(embed, jobs: list[list[str]], clients: int) -> list:
    results = [None] * len(jobs)

    def client(k):
        for i in range(k, len(jobs), clients):
            results[i] = embed.delay(jobs[i])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_200_jobs_from_8_clients_are_coalesced_and_exact(worker, module_service, service_model):
    from worker.tasks import embed

    jobs = [job_texts(i) for i in range(200)]
    results = send_from_threads(embed, jobs, clients=8)
    summaries = [r.get(timeout=180) for r in results]

    assert [s["job_id"] for s in summaries] == [r.id for r in results]
    assert all(s["status"] == "done" and s["count"] == 2 and s["dim"] == 384 for s in summaries)
    batch_of = Counter(b for s in summaries for b in s["batch_ids"])
    assert 1 <= len(batch_of) <= 25, f"200 jobs ran in {len(batch_of)} batches; coalescing should cut that 8x+"

    db = module_service.database_url
    reference = service_model.embed([t for texts in jobs for t in texts])
    for i, s in enumerate(summaries):
        np.testing.assert_array_equal(storage.get_vectors(storage.connect(db), s["job_id"]), reference[2 * i:2 * i + 2])
        m = storage.get_metrics(storage.connect(db), s["job_id"])
        assert all(m[k] is not None and m[k] >= 0 for k in (*LATENCY_PARTS, "total_ms"))
        assert m["total_ms"] >= sum(m[k] for k in LATENCY_PARTS) - 1e-6
        assert m["forward_ms"] > 0 and m["worker"] == worker.hostname
        assert m["tokens"] == service_model.encode(jobs[i]).tokens and m["cache_hits"] == 0
        # batch_jobs is what the batch really held: the number of jobs naming that batch id.
        (bid,) = s["batch_ids"]
        assert m["batch_jobs"] == batch_of[bid] and m["batch_size"] >= 2 * batch_of[bid]
        job = storage.get_job(storage.connect(db), s["job_id"])
        assert job["batch_ids"] == s["batch_ids"] and job["attempts"] == 1


def test_a_job_over_the_budget_is_split_and_reassembled(worker, module_service, service_model):
    from worker.tasks import embed

    texts = [f"paragraph {i}: " + "the service splits long jobs into several batches " * 3 for i in range(80)]
    assert service_model.encode(texts).tokens > 2 * SERVICE_SETTINGS["batch_tokens"]
    s = embed.delay(texts).get(timeout=180)
    assert len(s["batch_ids"]) >= 3 and len(set(s["batch_ids"])) == len(s["batch_ids"])
    np.testing.assert_array_equal(storage.get_vectors(storage.connect(module_service.database_url), s["job_id"]),
                                  service_model.embed(texts))


def test_repeated_texts_come_from_the_cache(worker, module_service, service_model):
    from worker.tasks import embed

    first = embed.delay(["a sentence worth caching", "another one"]).get(timeout=120)
    again = embed.delay(["another one", "a sentence worth caching", "and a new one"]).get(timeout=120)
    db = module_service.database_url
    m = storage.get_metrics(storage.connect(db), again["job_id"])
    assert again["cache_hits"] == m["cache_hits"] == 2
    assert m["tokens"] == service_model.encode(["and a new one"]).tokens
    np.testing.assert_array_equal(storage.get_vectors(storage.connect(db), again["job_id"]),
                                  service_model.embed(["another one", "a sentence worth caching", "and a new one"]))
    all_cached = embed.delay(["another one"]).get(timeout=120)
    assert all_cached["batch_ids"] == [] and all_cached["cache_hits"] == 1
    m = storage.get_metrics(storage.connect(db), all_cached["job_id"])
    assert m["forward_ms"] == m["tokenize_ms"] == m["batch_wait_ms"] == 0 and m["batch_size"] == 0
    assert first["cache_hits"] == 0


def test_options_reach_the_runtime(worker, module_service, service_model):
    from worker.tasks import embed

    texts = ["unnormalized output please", "second"]
    s = embed.delay(texts, normalize=False, model="all-MiniLM-L6-v2-f32", dims=384).get(timeout=120)
    got = storage.get_vectors(storage.connect(module_service.database_url), s["job_id"])
    np.testing.assert_array_equal(got, service_model.embed(texts, normalize=False))
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)


def test_search_finds_what_the_service_stored(worker, module_service, minilm_gguf):
    from worker.tasks import embed

    s = embed.delay(["Volcanic eruptions release ash into the sky.", "A recipe for tomato soup."]).get(timeout=120)
    from worker.search import nearest_text

    hits = nearest_text(storage.connect(module_service.database_url), "lava and ash from a volcano", k=1,
                        model=str(minilm_gguf))
    assert hits[0][:3] == (s["job_id"], 0, "Volcanic eruptions release ash into the sky.")
