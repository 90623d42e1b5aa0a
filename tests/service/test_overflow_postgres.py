"""overflow="chunk" with a real worker on PostgreSQL+pgvector: the chunk rows, the pooled vectors
and chunk search (pgvector's <=> over the chunks table) as on SQLite."""
from __future__ import annotations

import numpy as np
import pytest

import storage

pytestmark = pytest.mark.service

LONG = " ".join(f"Chapter {i}: the lighthouse keeper logs the tide at {i} o'clock." for i in range(70))


def test_chunk_job_and_chunk_search_on_postgres(make_service, pg_url, service_model):
    svc = make_service(database_url=pg_url, threads=1, batch_wait_ms=2)
    svc.start_worker("pgchunk")
    from worker.tasks import embed

    r = embed.delay(["a short one", LONG], overflow="chunk", overflow_overlap=0)
    assert r.get(timeout=120)["status"] == "done"
    db = storage.connect(pg_url)
    chunks = storage.get_chunks(db, r.id)
    long_chunks = [c for c in chunks if c["idx"] == 1]
    # No overlap: the windows tile the text's tokens exactly.
    assert len(long_chunks) > 2 and long_chunks[0]["token_start"] == 0
    assert all(a["token_end"] == b["token_start"] for a, b in zip(long_chunks, long_chunks[1:]))
    assert long_chunks[-1]["token_end"] == len(service_model.token_offsets(LONG)[0])
    vectors = storage.get_vectors(db, r.id)
    np.testing.assert_array_equal(vectors[0], service_model.embed(["a short one"])[0])
    assert abs(float(np.linalg.norm(vectors[1])) - 1.0) < 1e-5
    target = long_chunks[1]
    hits = storage.nearest(db, target["vector"], model=storage.get_job(db, r.id)["model"], k=2, chunks=True)
    assert (hits[0][0], hits[0][1], hits[0][4]["chunk"]) == (r.id, 1, 1) and hits[0][3] > 0.9999
    assert hits[0][2] == target["text"] == LONG[target["char_start"]:target["char_end"]]
