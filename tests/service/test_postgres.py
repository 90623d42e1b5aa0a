"""The same service on PostgreSQL + pgvector: jobs through Redis land in PostgreSQL, nearest()
goes through the HNSW index, and a database outage in the middle is retried with backoff instead
of failing the job."""
from __future__ import annotations

import shutil
import time
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import storage

pytestmark = pytest.mark.service


@pytest.fixture
def own_pg():
    """A PostgreSQL server of this test's own, which the test may stop and start again."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver
        data = Path(tempfile.mkdtemp(prefix="embedq-pgr-"))
        state = {"srv": pgserver.get_server(data, cleanup_mode="stop")}

    def restart():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            state["srv"] = pgserver.get_server(data, cleanup_mode="stop")

    state["srv"].psql("CREATE EXTENSION IF NOT EXISTS vector;")
    url = state["srv"].get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    yield url, (lambda: state["srv"].cleanup()), restart
    storage.dispose_all()
    state["srv"].cleanup()
    shutil.rmtree(data, ignore_errors=True)


def test_worker_on_postgres_rides_out_a_database_restart(make_service, own_pg, service_model):
    url, stop_db, start_db = own_pg
    svc = make_service(database_url=url, threads=2, db_retry_base_ms=200)
    worker = svc.start_worker("pg")
    from worker.tasks import embed

    before = embed.delay(["stored before the outage", "a second sentence"]).get(timeout=120)
    assert before["status"] == "done"

    stop_db()
    mark = len(worker.log())
    during = embed.delay(["sent while the database is down", "and another text"])
    # Wait for the worker to hit the outage and start backing off, then bring the database back.
    worker.wait_for_log("failed (OperationalError", after=mark, timeout=120)
    start_db()
    summary = during.get(timeout=180)
    assert summary["status"] == "done"
    np.testing.assert_array_equal(storage.get_vectors(storage.connect(url), summary["job_id"]),
                                  service_model.embed(["sent while the database is down", "and another text"]))
    assert "retry 1 in" in worker.log()[mark:]

    hits = storage.nearest(storage.connect(url), service_model.embed(["while the database was down"])[0],
                           Path(svc.env["EMBEDQ_MODEL"]).stem, k=1)
    assert hits[0][:3] == (summary["job_id"], 0, "sent while the database is down")
    assert storage.status_counts(storage.connect(url)) == {"done": 2}


def test_an_outage_past_its_tolerance_fails_the_job_and_the_row_comes_when_the_database_does(
        make_service, own_pg):
    # EMBEDQ_DB_OUTAGE_S is 3 s here: the job gives up waiting, but its failure cannot be written
    # while the database is down. It goes back to the broker until it can be: never a failure without
    # its row.
    url, stop_db, start_db = own_pg
    svc = make_service(database_url=url, db_outage_s=3, db_retry_base_ms=100)
    worker = svc.start_worker("patient")
    from worker.tasks import embed

    assert embed.delay(["before"]).get(timeout=120)["status"] == "done"
    stop_db()
    mark = len(worker.log())
    doomed = embed.delay(["sent into a long outage"])
    worker.wait_for_log(f"could not record the failure of job {doomed.id} yet", after=mark, timeout=120)
    time.sleep(3)  # it keeps coming back while the database stays down
    start_db()
    deadline = time.monotonic() + 120
    while True:
        try:
            job = storage.get_job(storage.connect(url), doomed.id)
            if job["status"] == "failed":
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "the failure was never recorded"
        time.sleep(0.5)
    assert "database unavailable for more than 3 s" in job["error"]
