"""Delivery under worker deaths, with real Redis and real worker processes: a message on its way to a
worker that dies is published again from the ledger; a crashed worker process is restarted by its
supervisor; the ledger holds exactly the unsettled jobs."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import redis

import storage
from worker.delivery import ledger_keys

pytestmark = pytest.mark.service


def wait_until(cond, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_a_message_in_flight_to_a_worker_that_dies_is_delivered_again(make_service, redis_url, service_model,
                                                                     db_url):
    # The deterministic version of the loss: the worker is stopped inside its blocking pop, the
    # message is popped by Redis into its socket (in no queue and no unacked hash), then it is killed.
    # On SQLite and on PostgreSQL (db_url), as deployed.
    svc = make_service(database_url=db_url, delivery_stale_s=4, visibility_timeout_s=600)
    victim = svc.start_worker("inflight")
    from worker.tasks import embed

    r = redis.Redis.from_url(redis_url)
    child = victim.children()[0]
    os.kill(child, signal.SIGSTOP)
    try:
        result = embed.delay(["a message that reaches a stopped worker"])
        wait_until(lambda: r.llen(svc.queue) == 0, 10, "the message to leave the queue")
        assert r.hlen("unacked") == 0, "the message must be in no queue and no unacked hash"
        jobs_key, _ = ledger_keys(svc.queue)
        assert r.hexists(jobs_key, result.id)
    finally:
        victim.kill()
    t0 = time.monotonic()
    svc.start_worker("after")
    summary = result.get(timeout=90)
    assert summary["status"] == "done" and time.monotonic() - t0 < 90
    assert svc.database_url == db_url
    db = storage.connect(svc.database_url)
    np.testing.assert_array_equal(storage.get_vectors(db, result.id),
                                  service_model.embed(["a message that reaches a stopped worker"]))
    # Settled jobs leave the ledger (removed in batches, within a second).
    wait_until(lambda: not r.hexists(jobs_key, result.id), 10, "the ledger entry to go")


def test_a_killed_worker_process_is_restarted_by_its_supervisor(make_service):
    svc = make_service()
    w = svc.start_worker("phoenix")
    from worker.tasks import embed

    assert embed.delay(["before"]).get(timeout=60)["status"] == "done"
    mark = len(w.log())
    pid = w.kill_worker()
    w.wait_for_log("phoenix@test ready.", timeout=120, after=mark)
    assert w.children() and w.children()[0] != pid and w.proc.poll() is None
    assert embed.delay(["after"]).get(timeout=60)["status"] == "done"


def test_the_ledger_holds_exactly_the_unsettled_jobs(make_service, redis_url):
    svc = make_service()
    from worker.tasks import embed

    r = redis.Redis.from_url(redis_url)
    jobs_key, seen_key = ledger_keys(svc.queue)
    queued = [embed.delay([f"queued {i}"]) for i in range(3)]  # no worker yet
    assert {k.decode() for k in r.hkeys(jobs_key)} == {q.id for q in queued}
    assert r.zcard(seen_key) == 3
    svc.start_worker("drain")
    for q in queued:
        assert q.get(timeout=60)["status"] == "done"
    wait_until(lambda: r.hlen(jobs_key) == 0 and r.zcard(seen_key) == 0, 10, "the ledger to empty")
    # A rejected job is settled too (its failure is recorded).
    bad = embed.apply_async(kwargs=dict(texts=[]))
    with pytest.raises(Exception, match="texts is empty"):
        bad.get(timeout=60)
    wait_until(lambda: r.hlen(jobs_key) == 0, 10, "the rejected job's entry to go")
