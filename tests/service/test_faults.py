"""Faults injected for real into a running service (bench/faults.py): worker processes SIGKILLed at
random moments, Redis stopped and restarted, the database taken away. Every submitted job must end
done with the right vectors: 0 lost, 0 duplicated, 0 failed. (The long variants, 20 kills and 20
restarts per scenario and a 5-minute database outage, are `embedq bench faults`.)"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from bench import faults

pytestmark = pytest.mark.service


@pytest.fixture
def private_redis(tmp_path):
    redis = faults.RedisServer(tmp_path).start()
    yield redis
    redis.stop(signal.SIGKILL)


@pytest.fixture
def deployment(tmp_path, private_redis, minilm_gguf):
    made = []

    def make(database_url: str | None = None, **settings):
        dep = faults.deployment(tmp_path, private_redis.url, database_url or f"sqlite:///{tmp_path / 'f.sqlite'}",
                                minilm_gguf, **{"slots": 16, "batch_wait_ms": 20, "delivery_stale_s": 8, **settings})
        made.append(dep)
        return dep

    yield make
    for dep in made:
        dep.close()


def assert_nothing_lost(o: faults.Outcome) -> None:
    assert o.submitted > 0
    assert (o.lost, o.duplicated, o.wrong, o.failed) == (0, 0, 0, 0), o
    assert o.recover_s == o.recover_s and o.recover_s <= faults.SETTLE_S, o  # not NaN: everything settled


def test_worker_sigkills_under_a_stream_lose_nothing(deployment, service_model):
    dep = deployment()
    dep.start_worker("a")
    o = faults.worker_kills(dep, service_model, kills=4, label="kills", rate=6)
    assert_nothing_lost(o)
    assert "4 kills" in o.notes and "1 worker processes alive" in o.notes


def test_worker_sigkills_with_two_workers_on_postgres_lose_nothing(deployment, service_model, pg_url):
    dep = deployment(database_url=pg_url)
    dep.start_worker("a")
    dep.start_worker("b")
    o = faults.worker_kills(dep, service_model, kills=4, label="kills", rate=6, seed=5)
    assert_nothing_lost(o)
    assert "2 worker processes alive" in o.notes


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_redis_restarts_lose_nothing_and_clients_hear_at_once(deployment, private_redis, service_model, sig):
    dep = deployment()
    dep.start_worker("a")
    o = faults.redis_restarts(dep, private_redis, service_model, restarts=2, outage_s=3, sig=sig, label="redis")
    assert_nothing_lost(o)
    assert "1 worker processes alive" in o.notes  # the worker survived, or its supervisor restarted it
    # While Redis was down, embed.delay refused at once with BrokerUnavailable: never a hang.
    assert o.refused > 0 and o.refuse_max_s < 5, o


def test_a_database_outage_makes_jobs_wait_not_fail(deployment, service_model, tmp_path):
    srv, url = faults.pg_database(tmp_path)
    box = {"srv": srv}
    try:
        dep = deployment(database_url=url)
        dep.start_worker("a")
        o = faults.database_outage(dep, lambda: box["srv"].cleanup(),
                                   lambda: box.update(srv=faults.pg_restart(tmp_path)), service_model,
                                   outage_s=30, label="db")
        assert_nothing_lost(o)
    finally:
        box["srv"].cleanup()


def test_a_worker_started_while_redis_is_down_waits_for_it_and_then_serves(deployment, private_redis, service_model):
    # A worker restarted during a broker outage (Celery exits on some broker restarts) must not take
    # the unreachable broker for a configuration error: its supervisor keeps it, and it serves later.
    private_redis.stop(signal.SIGKILL)
    dep = deployment()
    w = dep.start_worker("late", wait=False)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert w.proc.poll() is None, f"the supervisor gave up while Redis was down:\n{w.log()[-3000:]}"
        time.sleep(0.2)
    assert "cannot mark queues alive yet" in w.log() or "Cannot connect" in w.log(), w.log()[-3000:]
    private_redis.start()
    w.wait_ready(timeout=120)
    from worker.tasks import embed

    texts = ["served once the broker is back", "and a second text"]
    result = embed.delay(texts)
    assert result.get(timeout=90)["status"] == "done"
    import storage

    np.testing.assert_array_equal(storage.get_vectors(storage.connect(dep.database_url), result.id),
                                  service_model.embed(texts))
