"""Several worker processes on one broker: they share the load without losing or duplicating a
job, and a worker killed with SIGKILL in the middle of a batch has its jobs redelivered and
finished exactly once by another."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

import storage

pytestmark = pytest.mark.service


def table_count(url: str, sql: str) -> int:
    with storage.connect(url).read() as c:
        return c.execute(text(sql)).scalar()


def test_two_workers_share_the_load_and_nothing_is_lost_or_duplicated(make_service, service_model):
    svc = make_service(slots=16, threads=1, batch_wait_ms=10, visibility_timeout_s=60)
    w1, w2 = svc.start_worker("share1", wait=False), svc.start_worker("share2", wait=False)
    w1.wait_ready()
    w2.wait_ready()
    from worker.tasks import embed

    jobs = [[f"shared load job {i} text {j}" for j in range(2)] for i in range(120)]
    results = [None] * len(jobs)

    def client(k):
        for i in range(k, len(jobs), 6):
            results[i] = embed.delay(jobs[i])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summaries = [r.get(timeout=180) for r in results]

    db = svc.database_url
    ids = [s["job_id"] for s in summaries]
    assert len(set(ids)) == len(jobs)
    by_worker: dict[str, set[str]] = {}
    for s in summaries:
        m = storage.get_metrics(storage.connect(db), s["job_id"])
        by_worker.setdefault(m["worker"], set()).update(s["batch_ids"])
        assert storage.get_job(storage.connect(db), s["job_id"])["attempts"] == 1
    assert set(by_worker) == {w1.hostname, w2.hostname}, "both workers must have taken jobs"
    assert by_worker[w1.hostname].isdisjoint(by_worker[w2.hostname])
    assert table_count(db, "SELECT count(*) FROM jobs WHERE status = 'done'") == len(jobs)
    assert table_count(db, "SELECT count(*) FROM embeddings") == 2 * len(jobs)
    assert table_count(db, "SELECT count(*) FROM job_metrics") == len(jobs)
    reference = service_model.embed([t for texts in jobs for t in texts])
    for i, s in enumerate(summaries):
        np.testing.assert_array_equal(storage.get_vectors(storage.connect(db), s["job_id"]), reference[2 * i:2 * i + 2])


def test_jobs_of_a_worker_killed_mid_batch_finish_exactly_once(make_service, service_model):
    # The visibility timeout is what hands an unacknowledged job to another worker; it is short
    # here so the test does not wait the production default, and still longer than any batch.
    svc = make_service(slots=8, threads=2, batch_tokens=8192, batch_wait_ms=500, visibility_timeout_s=8)
    victim = svc.start_worker("victim")
    from worker.tasks import embed

    body = "a long passage that keeps the forward pass busy while the worker is killed " * 5
    jobs = [[f"job {i} part {j}: {body}" for j in range(16)] for i in range(4)]
    results = [embed.delay(texts) for texts in jobs]

    start = victim.wait_for_log("batch ", timeout=120)
    line = victim.log()[start:].splitlines()[0]
    batch_id = re.match(r"batch (\w+) start: \d+ texts, \d+ tokens, (\d+) jobs", line)
    assert batch_id, line
    victim.kill()
    log = victim.log()
    assert f"batch {batch_id.group(1)} done" not in log, "the kill must land while the batch computes"
    assert all(f"embedq.embed[{r.id}] received" in log for r in results)
    db = svc.database_url
    assert table_count(db, "SELECT count(*) FROM embeddings") == 0
    assert table_count(db, "SELECT count(*) FROM jobs WHERE status = 'running'") == len(jobs)

    rescuer = svc.start_worker("rescuer")
    summaries = [r.get(timeout=120) for r in results]
    for texts, s in zip(jobs, summaries):
        assert s["status"] == "done"
        job = storage.get_job(storage.connect(db), s["job_id"])
        assert job["attempts"] == 2 and job["worker"] == rescuer.hostname
        np.testing.assert_array_equal(storage.get_vectors(storage.connect(db), s["job_id"]), service_model.embed(texts))
    assert table_count(db, "SELECT count(*) FROM embeddings") == sum(len(t) for t in jobs)
    assert table_count(db, "SELECT count(*) FROM job_metrics") == len(jobs)


def test_worker_concurrency_runs_several_processes(make_service):
    svc = make_service(slots=8, batch_wait_ms=10)
    sup = svc.start_worker("multi", wait=False, args=["--concurrency", "2"])
    sup.wait_for_log("multi-0@test ready.", timeout=120)
    sup.wait_for_log("multi-1@test ready.", timeout=120)
    from worker.tasks import embed

    results = [embed.delay([f"concurrency job {i}"]) for i in range(40)]
    workers = {storage.get_metrics(storage.connect(svc.database_url), r.get(timeout=120)["job_id"])["worker"] for r in results}
    assert workers == {"multi-0@test", "multi-1@test"}
    assert sup.stop() == 0
    assert sup.log().count("Warm shutdown") == 2


def test_a_worker_outlives_the_thread_that_started_it_but_not_its_process(make_service, tmp_path):
    # EMBEDQ_EXIT_WITH_PARENT follows the parent process: a worker started from a short-lived thread
    # of a live process keeps running, and stops by itself when that process dies.
    svc = make_service()
    script = tmp_path / "parent.py"
    script.write_text(f"""
import os, sys, threading, time
os.environ.update({svc.env!r})
from worker.processes import WorkerProcess
box = []
t = threading.Thread(target=lambda: box.append(WorkerProcess("orphan@test", {str(tmp_path / 'orphan.log')!r}).start()))
t.start(); t.join()
w = box[0].wait_ready(120)
time.sleep(2)  # the starting thread is long gone
print("ALIVE" if w.proc.poll() is None else "DEAD", w.pid, flush=True)
os._exit(0)  # the parent dies without stopping its worker
""")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    state, pid = out.stdout.split()
    assert state == "ALIVE", out.stderr[-2000:]
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower():
        assert time.monotonic() < deadline, "the orphaned worker did not stop"
        time.sleep(0.2)
