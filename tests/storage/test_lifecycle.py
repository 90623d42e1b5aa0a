"""Listing and deleting stored jobs (storage/lifecycle.py) on both backends: newest-first cursor
pages, filters, and deletion that takes a job's vectors and metrics with it (ON DELETE CASCADE,
enforced on SQLite too) while leaving running jobs and other jobs alone."""
from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import text, update

import storage
from storage import ClaimRequest, SaveRequest
from storage.models import Job, utcnow

pytestmark = pytest.mark.service


def store_done(db, job_id: str, texts: list[str], tokens: list[int] | None = None) -> None:
    hashes = [storage.content_hash("fp", None, None, True, f"{job_id}:{t}") for t in texts]
    storage.claim(db, ClaimRequest(job_id, model="m", prompt_name=None, dims=None, normalize=True,
                                   count=len(texts), worker="w@test", hashes=hashes))
    vectors = np.random.default_rng(len(job_id)).standard_normal((len(texts), 8)).astype(np.float32)
    metrics = dict(queue_wait_ms=1.0, batch_wait_ms=1.0, tokenize_ms=1.0, forward_ms=1.0, batch_size=len(texts),
                   batch_jobs=1, tokens=3 * len(texts), truncated=0, cache_hits=0, worker="w@test")
    assert storage.save(db, SaveRequest(job_id, texts=texts, hashes=hashes, vectors=vectors, model="m",
                                        batch_ids=["b"], metrics=metrics, started=time.monotonic(),
                                        **({"tokens": tokens} if tokens is not None else {})))


def store_running(db, job_id: str) -> None:
    storage.claim(db, ClaimRequest(job_id, model="m", prompt_name=None, dims=None, normalize=True, count=1,
                                   worker="w@test", hashes=[]))


def age(db, job_id: str, days: float) -> None:
    """Move a job's creation time `days` into the past."""
    with db.write() as conn:
        row = conn.execute(Job.__table__.select().where(Job.__table__.c.id == job_id)).first()
        conn.execute(update(Job.__table__).where(Job.__table__.c.id == job_id)
                     .values(created_at=row.created_at - timedelta(days=days)))


def counts(db) -> tuple[int, int, int]:
    with db.read() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in
                     ("jobs", "embeddings", "job_metrics"))


@pytest.fixture
def db(db_url) -> storage.Database:
    return storage.connect(db_url)


def test_list_pages_newest_first_with_a_cursor(db):
    for i in range(7):
        store_done(db, f"job-{i}", [f"text {i}"])
    storage.mark_failed(db, "job-bad", "texts is empty", worker="w@test")
    for i in range(7):
        age(db, f"job-{i}", days=7 - i)  # job-6 is the newest of them; job-bad newer still
    page1 = storage.list_jobs(db, limit=3)
    assert [j["job_id"] for j in page1] == ["job-bad", "job-6", "job-5"]
    page2 = storage.list_jobs(db, limit=3, after=page1[-1]["job_id"])
    page3 = storage.list_jobs(db, limit=3, after=page2[-1]["job_id"])
    assert [j["job_id"] for j in page2 + page3] == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    assert page1[0]["status"] == "failed" and page1[0]["error"] == "texts is empty"
    assert page1[1]["status"] == "done" and page1[1]["count"] == 1 and page1[1]["dim"] == 8
    assert page1[1]["created_at"].tzinfo is not None
    assert [j["job_id"] for j in storage.list_jobs(db, status="failed")] == ["job-bad"]
    assert [j["job_id"] for j in storage.list_jobs(db, older_than=timedelta(days=5, hours=12))] == ["job-1", "job-0"]
    assert storage.count_jobs(db) == 8 and storage.count_jobs(db, "done") == 7
    with pytest.raises(storage.JobNotFound):
        storage.list_jobs(db, after="no-such-job")
    with pytest.raises(ValueError):
        storage.list_jobs(db, limit=0)


def test_ties_in_creation_time_are_paged_by_id(db):
    for i in range(5):
        store_done(db, f"tie-{i}", ["same"])
    with db.write() as conn:  # all created at the same instant
        conn.execute(update(Job.__table__).values(created_at=utcnow().replace(microsecond=0)))
    ids = []
    after = None
    while True:
        page = storage.list_jobs(db, limit=2, after=after)
        if not page:
            break
        ids += [j["job_id"] for j in page]
        after = page[-1]["job_id"]
    assert ids == [f"tie-{i}" for i in reversed(range(5))]


def test_delete_by_id_takes_vectors_and_metrics_along(db):
    store_done(db, "keep", ["a", "b"])
    store_done(db, "drop", ["c", "d", "e"])
    assert counts(db) == (2, 5, 2)
    assert storage.delete_jobs(db, ids=["drop", "unknown"]) == ["drop"]
    assert counts(db) == (1, 2, 1)
    with pytest.raises(storage.JobNotFound):
        storage.get_job(db, "drop")
    np.testing.assert_array_equal(storage.get_vectors(db, "keep").shape, (2, 8))
    # The cascade is the database's own: a plain DELETE of the job row removes the rest too.
    with db.write() as conn:
        conn.execute(text("DELETE FROM jobs WHERE id = 'keep'"))
    assert counts(db) == (0, 0, 0)


def test_delete_older_than_spares_recent_and_running_jobs(db):
    store_done(db, "old-done", ["x"])
    storage.mark_failed(db, "old-failed", "boom", worker="w@test")
    store_running(db, "old-running")
    store_done(db, "new-done", ["y"])
    for j in ("old-done", "old-failed", "old-running"):
        age(db, j, days=10)
    assert sorted(storage.delete_jobs(db, older_than=timedelta(days=7))) == ["old-done", "old-failed"]
    assert {j["job_id"] for j in storage.list_jobs(db)} == {"old-running", "new-done"}
    # Running jobs go only when asked for by state.
    assert storage.delete_jobs(db, older_than=7 * 86400, statuses=None) == ["old-running"]
    assert counts(db) == (1, 1, 1)
    with pytest.raises(ValueError):
        storage.delete_jobs(db)


def test_get_output_reads_vectors_token_counts_and_metrics_at_once(db):
    store_done(db, "out", ["alpha", "beta", "gamma"], tokens=[3, 1, 4])
    out = storage.get_output(db, "out")
    np.testing.assert_array_equal(out["vectors"], storage.get_vectors(db, "out"))
    assert out["metrics"] == storage.get_metrics(db, "out")
    assert out["tokens"] == [3, 1, 4]
    store_done(db, "unrecorded", ["delta"])  # rows without per-text counts
    assert storage.get_output(db, "unrecorded")["tokens"] == [None]
    store_running(db, "busy")
    with pytest.raises(storage.JobNotDone):
        storage.get_output(db, "busy")
    with pytest.raises(storage.JobNotFound):
        storage.get_output(db, "nothing")


def test_parse_duration():
    assert storage.parse_duration("7d") == timedelta(days=7)
    assert storage.parse_duration("90s") == timedelta(seconds=90)
    assert storage.parse_duration("1.5h") == timedelta(minutes=90)
    assert storage.parse_duration("2w") == timedelta(weeks=2)
    assert storage.parse_duration("30") == timedelta(seconds=30)
    for bad in ("", "7x", "-1d", "d"):
        with pytest.raises(ValueError):
            storage.parse_duration(bad)
