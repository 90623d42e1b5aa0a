"""Chunk rows (overflow="chunk") on both backends: stored with their job in one transaction, read
back in order with the text they cover, searched by cosine against a brute-force reference, and
deleted with their job."""
from __future__ import annotations

import time

import numpy as np
import pytest

import storage
from storage import ChunkRow, ClaimRequest, SaveRequest

TEXTS = ["the first text has three windows in it", "a second one, in two", "short"]


@pytest.fixture
def db(db_url) -> storage.Database:
    return storage.connect(db_url)


def unit(rng, n, dim=16):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def store_chunked(db, job_id, rng):
    """A job whose texts are cut into windows at word boundaries (the offsets are the test's own)."""
    rows = []
    for i, text in enumerate(TEXTS):
        words = text.split(" ")
        per = 3
        starts = [sum(len(w) + 1 for w in words[:k]) for k in range(0, len(words), per)]
        for c, a in enumerate(starts):
            end_word = min(len(words), (c + 1) * per)
            b = sum(len(w) + 1 for w in words[:end_word]) - 1
            rows.append(ChunkRow(i, c, c * per, end_word, a, b, end_word - c * per + 2, unit(rng, 1)[0]))
    hashes = [f"h-{job_id}-{i}" for i in range(len(TEXTS))]
    storage.claim(db, ClaimRequest(job_id, model="m", prompt_name=None, dims=None, normalize=True,
                                   count=len(TEXTS), worker="w", hashes=[]))
    metrics = dict(queue_wait_ms=1.0, batch_wait_ms=1.0, tokenize_ms=1.0, forward_ms=1.0, batch_size=len(rows),
                   batch_jobs=1, tokens=sum(r.tokens for r in rows), truncated=0, cache_hits=0, chunks=len(rows),
                   worker="w")
    assert storage.save(db, SaveRequest(job_id, texts=TEXTS, hashes=hashes, vectors=unit(rng, len(TEXTS)), model="m",
                                        batch_ids=["b"], metrics=metrics, started=time.monotonic(),
                                        model_hash="file-sha", chunks=rows))
    return rows


def test_chunks_round_trip_in_order_with_their_text(db):
    rows = store_chunked(db, "job-a", np.random.default_rng(0))
    got = storage.get_chunks(db, "job-a")
    assert [(g["idx"], g["chunk"]) for g in got] == [(r.idx, r.chunk) for r in rows]
    for g, r in zip(got, rows):
        assert (g["token_start"], g["token_end"], g["char_start"], g["char_end"], g["tokens"]) == \
            (r.token_start, r.token_end, r.char_start, r.char_end, r.tokens)
        assert g["text"] == TEXTS[r.idx][r.char_start:r.char_end] and g["text"]
        np.testing.assert_array_equal(g["vector"], r.vector)
    assert [g["text"] for g in got if g["idx"] == 1] == ["a second one,", "in two"]
    assert storage.get_metrics(db, "job-a")["chunks"] == len(rows)
    assert storage.get_vectors(db, "job-a").shape == (len(TEXTS), 16)  # one (pooled) vector per text


def test_chunk_search_matches_brute_force(db):
    rng = np.random.default_rng(1)
    rows = store_chunked(db, "job-a", rng) + store_chunked(db, "job-b", rng)
    q = unit(rng, 1)[0]
    hits = storage.nearest(db, q, model_hash="file-sha", k=5, chunks=True)
    jobs = ["job-a"] * (len(rows) // 2) + ["job-b"] * (len(rows) // 2)
    scores = np.array([float(r.vector @ q) for r in rows])
    order = np.argsort(-scores)[:5]
    assert [(h[0], h[1], h[4]["chunk"]) for h in hits] == [(jobs[i], rows[i].idx, rows[i].chunk) for i in order]
    np.testing.assert_allclose([h[3] for h in hits], scores[order], atol=1e-5)
    for h in hits:
        assert h[2] == TEXTS[h[1]][h[4]["char_start"]:h[4]["char_end"]]
    # By model name too, and the plain search still returns whole texts (4-tuples).
    assert len(storage.nearest(db, q, model="m", k=3, chunks=True)) == 3
    assert all(len(h) == 4 for h in storage.nearest(db, q, model="m", k=3))


def test_chunks_are_deleted_with_their_job(db):
    store_chunked(db, "job-a", np.random.default_rng(2))
    assert storage.delete_jobs(db, ids=["job-a"]) == ["job-a"]
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM chunks").scalar() == 0
