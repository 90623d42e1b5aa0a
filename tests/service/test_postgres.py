"""The same service on PostgreSQL + pgvector: jobs through Redis land in PostgreSQL, nearest()
goes through the HNSW index, and a database outage in the middle is retried with backoff instead
of failing the job."""
from __future__ import annotations

import shutil
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
        pgserver = pytest.importorskip("pgserver")
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
