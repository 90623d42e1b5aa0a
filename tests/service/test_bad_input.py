"""Bad jobs through the real service: each gets a clear error back, is stored as failed with that
reason, and the good jobs sent alongside are unaffected. Every test runs on Redis + SQLite and on
Redis + PostgreSQL (module_service_each_db)."""
from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

import storage
from schemas import InvalidJob

pytestmark = pytest.mark.service

SERVICE_SETTINGS = {"batch_wait_ms": 200, "threads": 2}

BAD = [
    (dict(texts=[]), "texts is empty"),
    (dict(texts="a bare string"), "texts must be a list of strings, got str"),
    (dict(texts=["fine", 42]), "texts[1] is int, not a string"),
    (dict(texts=["fine", {"text": "x"}]), "texts[1] is dict, not a string"),
    (dict(texts=["broken \ud83d surrogate"]), "texts[0] contains a lone surrogate U+D83D at character 7"),
    (dict(texts=["ok", "x" * (10 * 1024 * 1024)]), "texts[1] has 10485760 characters; the limit is 65536"),
    (dict(texts=["a"], dims=100), "dims=100 is not supported"),
    (dict(texts=["a"], prompt_name="query"), "unknown prompt_name 'query'"),
    (dict(texts=["a"], normalize="no"), "normalize must be true or false"),
]


@pytest.fixture(scope="module")
def worker(module_service_each_db):
    return module_service_each_db.start_worker("bad")


def test_bad_jobs_fail_clearly_and_alone(worker, module_service_each_db, service_model):
    from worker.tasks import embed

    good_texts = [[f"good job {i} sent among bad ones"] for i in range(6)]
    sent = []
    for i, (kwargs, phrase) in enumerate(BAD):
        sent.append(("bad", embed.apply_async(kwargs=kwargs), phrase))
        if i < len(good_texts):
            sent.append(("good", embed.delay(good_texts[i]), i))

    db = module_service_each_db.database_url
    good_batches = set()
    for kind, r, expect in sent:
        if kind == "good":
            s = r.get(timeout=120)
            np.testing.assert_array_equal(storage.get_vectors(storage.connect(db), s["job_id"]),
                                          service_model.embed(good_texts[expect]))
            good_batches.update(s["batch_ids"])
            continue
        with pytest.raises(InvalidJob) as e:
            r.get(timeout=120)
        assert expect in str(e.value)
        job = storage.get_job(storage.connect(db), r.id)
        assert job["status"] == "failed" and expect in job["error"]
        assert r.state == "FAILURE"
    # The good jobs still coalesced with each other while the bad ones were turned away.
    assert len(good_batches) < len(good_texts)
    assert storage.status_counts(storage.connect(db)) == {"done": len(good_texts), "failed": len(BAD)}


def test_a_redelivered_failed_job_stays_failed(worker, module_service_each_db):
    from worker.tasks import embed

    job_id = f"redelivered-{uuid.uuid4().hex}"
    with pytest.raises(InvalidJob):
        embed.apply_async(kwargs=dict(texts=[]), task_id=job_id).get(timeout=60)
    # The same job id again is what a redelivery looks like: the stored failure stands and
    # nothing is computed, even though these arguments would be valid. (Read from the worker's
    # log: the client-side result cache still holds the first outcome for this id.)
    mark = len(worker.log())
    embed.apply_async(kwargs=dict(texts=["now valid"]), task_id=job_id)
    worker.wait_for_log(f"embedq.embed[{job_id}] raised expected: JobFailed('texts is empty", timeout=60, after=mark)
    job = storage.get_job(storage.connect(module_service_each_db.database_url), job_id)
    assert job["status"] == "failed" and "texts is empty" in job["error"]


def test_messages_the_worker_refuses_become_failed_jobs(worker, module_service_each_db):
    # Sent past embed.delay: an argument the task does not take, a serializer the worker does not
    # accept, and a body that is not JSON. Each carries a job id, so each leaves a failed row, and
    # the client's result fails instead of waiting out its timeout.
    from worker.app import app

    db = storage.connect(module_service_each_db.database_url)
    unknown = app.send_task("embedq.embed", args=[["x"]], kwargs={"colour": "blue"},
                            queue=module_service_each_db.queue)
    with pytest.raises(InvalidJob, match="unknown argument 'colour'"):
        unknown.get(timeout=60)
    assert "unknown argument 'colour'" in storage.get_job(db, unknown.id)["error"]

    refused = {}
    with app.producer_or_acquire() as producer:
        for kind, body, content_type in (("pickle", b"\x80\x04\x95\x00", "application/x-python-serialize"),
                                         ("garbage", b"{not json", "application/json")):
            job_id = f"{kind}-{uuid.uuid4().hex}"
            producer.publish(body, routing_key=module_service_each_db.queue, serializer=None,
                             content_type=content_type,
                             content_encoding="binary" if kind == "pickle" else "utf-8",
                             headers={"id": job_id, "task": "embedq.embed", "lang": "py", "argsrepr": "",
                                      "kwargsrepr": "", "origin": "test"})
            refused[kind] = job_id
    for kind, job_id in refused.items():
        deadline = time.monotonic() + 60
        while True:
            try:
                job = storage.get_job(db, job_id)
                break
            except storage.JobNotFound:
                assert time.monotonic() < deadline, f"no row for the {kind} message"
                time.sleep(0.1)
        assert job["status"] == "failed" and job["error"].startswith("message "), job
        assert app.AsyncResult(job_id).state == "FAILURE"
