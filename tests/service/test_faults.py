"""Faults injected for real into a running service (bench/faults.py, bench/faults_edge.py): worker
processes SIGKILLed at random moments or stopped and then killed with a job on its way to them, Redis
stopped and restarted (with and without persistence), the database taken away, bad messages and bad
model files. Every submitted job must end done with the right vectors (0 lost, 0 duplicated, 0
failed) unless its scenario loses or fails it by design, and then exactly those. (The long variants,
20 kills and 20 restarts per scenario and a 5-minute database outage, are `embedq bench faults`.)"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from bench import faults, faults_edge

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


# -- the exact sequences (bench/faults_edge.py) --------------------------------------------------------
def test_a_job_sent_to_a_stopped_worker_that_is_then_killed_completes(deployment, service_model):
    dep = deployment(delivery_stale_s=4)
    dep.start_worker("a")
    o = faults_edge.stop_then_kill(dep, service_model, reps=2, label="stopkill")
    assert_nothing_lost(o)
    assert o.ok() and "2 of 2 jobs were in no queue and no unacked hash" in o.notes, o


def test_redis_without_persistence_loses_exactly_the_jobs_waiting_in_it(tmp_path, minilm_gguf, service_model):
    # What the README says a restart without persistence loses, counted: every job waiting in Redis
    # and every stored result; not the jobs a worker had already taken, nor the rows of done jobs.
    redis = faults.RedisServer(tmp_path, aof=False).start()
    dep = faults.deployment(tmp_path, redis.url, f"sqlite:///{tmp_path / 'np.sqlite'}", minilm_gguf, slots=2,
                            batch_wait_ms=2000)
    try:
        o = faults_edge.restart_without_persistence(dep, redis, service_model, "np", done_first=2, queued=4,
                                                    after=2, stall_s=5)
    finally:
        dep.close()
        redis.stop(signal.SIGKILL)
    assert o.ok(), o
    assert (o.submitted, o.done, o.failed, o.lost, o.expect_lost, o.duplicated, o.wrong) == (10, 6, 0, 4, 4, 0, 0)
    assert o.notes.startswith("at the restart: 2 of 2 results of done jobs gone from the backend (their rows kept); "
                              "2 of 2 jobs the worker held done; 0 of 4 jobs waiting in Redis done; after it: "
                              "2 of 2 new jobs done"), o.notes


def test_bad_messages_and_bad_model_files_fail_with_a_row_and_lose_nothing(tmp_path, private_redis, minilm_gguf,
                                                                          service_model):
    rows = []
    for kind in ("messages", "nan_epsilon", "overflow"):
        path = minilm_gguf
        if kind == "overflow":
            path = faults_edge.patched_copy(minilm_gguf, tmp_path / "overflow.gguf", "overflow")
        dep = faults.deployment(tmp_path / kind, private_redis.url, f"sqlite:///{tmp_path / (kind + '.sqlite')}",
                                path, slots=16, batch_wait_ms=20)
        try:
            if kind == "messages":
                dep.start_worker("w")
                rows.append(faults_edge.bad_messages(dep, service_model, kind))
            elif kind == "nan_epsilon":
                bad = faults_edge.patched_copy(minilm_gguf, tmp_path / "nan.gguf", "nan_epsilon")
                rows.append(faults_edge.refused_model(dep, service_model, bad, kind, jobs=3))
            else:
                rows.append(faults_edge.overflowing_model(dep, service_model, kind, jobs=3))
        finally:
            dep.close()
    messages, nan, overflow = rows
    for o in rows:
        assert o.ok() and o.lost == 0 and o.recover_s == o.recover_s, o
    assert (messages.submitted, messages.failed, messages.done) == (18, 12, 6)
    assert (nan.done, nan.failed) == (3, 0)
    assert nan.notes.startswith("worker exit 2: cannot start the worker: GGUFError: GGUF metadata key "
                                "'bert.attention.layer_norm_epsilon' is nan"), nan.notes
    assert (overflow.done, overflow.failed) == (0, 3)
    assert "3 jobs failed: GGUFError: the model computed a non-finite vector for texts[0]" in overflow.notes
