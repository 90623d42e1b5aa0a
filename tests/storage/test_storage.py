"""Storage on both backends (a fresh SQLite file and a fresh PostgreSQL+pgvector database per test):
migrations, exact round trips, write-once semantics under concurrency, the cache, failures, and
nearest-neighbour search against a brute-force reference."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

import storage
from storage import ClaimRequest, SaveRequest
from storage.search import SQLITE_QUERY, pg_query, vector_literal

SENTENCES = [
    "The cat sits on the mat.", "A dog runs in the park.", "Stock markets fell sharply today.",
    "The central bank raised interest rates.", "Pasta needs salted boiling water.",
    "Bake the bread at two hundred degrees.", "The football match ended in a draw.",
    "Our team won the championship.", "Rain is expected tomorrow afternoon.", "A storm hits the coast.",
    "Python is a programming language.", "Compilers translate source code.",
]


def metrics(**over) -> dict:
    """A job's metrics as the worker hands them to storage (persist_ms and total_ms are timed there)."""
    m = dict(queue_wait_ms=1.0, batch_wait_ms=2.0, tokenize_ms=0.5, forward_ms=3.0, batch_size=4, batch_jobs=2,
             tokens=20, truncated=0, cache_hits=0, chunks=None, worker="w@test")
    m.update(over)
    return m


def claim_request(job_id, texts=(), model="m", hashes=None, worker="w@test", count=None) -> ClaimRequest:
    return ClaimRequest(job_id, model=model, prompt_name=None, dims=None, normalize=True,
                        count=len(texts) if count is None else count, worker=worker, hashes=list(hashes or []))


def save_request(job_id, texts, hashes, vectors, model="m", batch_ids=("b1",), started=None, **kw) -> SaveRequest:
    return SaveRequest(job_id, texts=list(texts), hashes=list(hashes), vectors=vectors, model=model,
                       batch_ids=list(batch_ids), metrics=kw.pop("job_metrics", None) or metrics(),
                       started=time.monotonic() if started is None else started, **kw)


def store(db, job_id, texts, vectors, model="m", fingerprint="fp", batch_ids=("b1",)) -> bool:
    hashes = [storage.content_hash(fingerprint, None, None, True, t) for t in texts]
    claim = storage.claim(db, claim_request(job_id, texts, model=model, hashes=hashes))
    assert claim.status == "running"
    # Provenance as the worker records it: the model file, and each text's tokens and truncation.
    return storage.save(db, save_request(job_id, texts, hashes, vectors, model=model, batch_ids=batch_ids,
                                         model_hash=f"sha-of-{fingerprint}", tokens=[len(t) for t in texts],
                                         truncated=[len(t) > 10 for t in texts]))


@pytest.fixture
def db(db_url) -> storage.Database:
    return storage.connect(db_url)


def test_migrations_reach_head_with_the_vector_machinery(db):
    assert storage.current_revision(db) == storage.head_revision()
    eng = db.engine
    names = set(inspect(eng).get_table_names())
    assert {"jobs", "embeddings", "job_metrics", "alembic_version"} <= names
    with eng.connect() as c:
        if eng.dialect.name == "postgresql":
            assert c.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
            idx = set(c.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings'")).scalars())
            assert {"ix_embeddings_hnsw_384", "ix_embeddings_hnsw_768"} <= idx
            assert c.execute(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                                  "attrelid = 'embeddings'::regclass AND attname = 'vector'")).scalar() == "vector"
        else:
            assert c.execute(text("SELECT vec_version()")).scalar().startswith("v")
    storage.upgrade(db)  # a second run finds nothing to do
    again = storage.Database(db.url)  # nor does a second Database on the same URL
    assert storage.current_revision(again) == storage.head_revision()
    again.dispose()


def test_vectors_round_trip_exactly_in_order(db):
    rng = np.random.default_rng(1)
    v = rng.standard_normal((5, 384)).astype(np.float32)
    v[0, 0] = np.float32(1e-30)  # extremes survive too
    v[1, 1] = np.float32(3.4e38)
    before = time.monotonic()
    assert store(db, "job-a", [f"t{i}" for i in range(5)], v)
    got = storage.get_vectors(db, "job-a")
    assert got.dtype == np.float32 and got.shape == (5, 384)
    np.testing.assert_array_equal(got, v)
    assert storage.get_texts(db, "job-a") == [f"t{i}" for i in range(5)]
    job = storage.get_job(db, "job-a")
    assert (job["status"], job["count"], job["dim"], job["batch_ids"], job["attempts"]) == ("done", 5, 384, ["b1"], 1)
    stored = storage.get_metrics(db, "job-a")
    persist, total = stored.pop("persist_ms"), stored.pop("total_ms")
    assert stored == metrics()
    # Storage times the write itself: persist from hand-over to commit, total from the job's start.
    elapsed_ms = (time.monotonic() - before) * 1000.0
    assert 0 < persist <= elapsed_ms and metrics()["queue_wait_ms"] + persist <= total <= 1.0 + elapsed_ms


def test_a_job_is_written_once_even_when_delivered_concurrently(db):
    rng = np.random.default_rng(2)
    texts = ["alpha", "beta", "gamma"]
    hashes = [storage.content_hash("fp", None, None, True, t) for t in texts]
    copies = [rng.standard_normal((3, 64)).astype(np.float32) for _ in range(6)]
    results, errors = [], []
    barrier = threading.Barrier(len(copies))

    def deliver(v):
        try:
            barrier.wait()
            storage.claim(db, claim_request("dup", texts, worker="w"))
            results.append((storage.save(db, save_request("dup", texts, hashes, v, batch_ids=["b"])), v))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=deliver, args=(v,)) for v in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    winners = [v for ok, v in results if ok]
    assert len(results) == len(copies) and len(winners) == 1
    np.testing.assert_array_equal(storage.get_vectors(db, "dup"), winners[0])
    with db.read() as c:
        assert c.execute(text("SELECT count(*) FROM embeddings WHERE job_id = 'dup'")).scalar() == 3
        assert c.execute(text("SELECT count(*) FROM job_metrics WHERE job_id = 'dup'")).scalar() == 1
    # A later redelivery is told the job is settled, and does not count as a new attempt.
    assert storage.claim(db, claim_request("dup", texts, worker="w")).status == "done"


def test_claims_count_attempts_until_the_job_settles(db):
    assert storage.claim(db, claim_request("j", count=1, worker="a")).attempts == 1
    assert storage.claim(db, claim_request("j", count=1, worker="b")).attempts == 2
    assert storage.get_job(db, "j")["status"] == "running"
    with pytest.raises(storage.JobNotDone, match="is running"):
        storage.get_vectors(db, "j")


def test_failed_jobs_keep_their_reason_and_done_jobs_stay_done(db):
    assert storage.mark_failed(db, "bad", "texts is empty; a job needs at least one text", worker="w")
    job = storage.get_job(db, "bad")
    assert job["status"] == "failed" and "texts is empty" in job["error"]
    with pytest.raises(storage.JobNotDone, match="failed: texts is empty"):
        storage.get_vectors(db, "bad")
    store(db, "good", ["x"], np.ones((1, 8), np.float32))
    assert not storage.mark_failed(db, "good", "late failure from a duplicate delivery")
    assert storage.get_job(db, "good")["status"] == "done"
    with pytest.raises(storage.JobNotFound):
        storage.get_metrics(db, "nope")
    assert storage.status_counts(db) == {"failed": 1, "done": 1}


def test_content_hash_cache_finds_stored_vectors(db):
    v = np.arange(16, dtype=np.float32).reshape(2, 8)
    store(db, "c1", ["same text", "other"], v, fingerprint="model-A")
    hit = storage.content_hash("model-A", None, None, True, "same text")
    miss_model = storage.content_hash("model-B", None, None, True, "same text")
    miss_dims = storage.content_hash("model-A", None, 4, True, "same text")
    found = storage.cached_vectors(db, [hit, miss_model, miss_dims])
    assert list(found) == [hit]
    np.testing.assert_array_equal(found[hit].vector, v[0])
    assert (found[hit].tokens, found[hit].truncated) == (len("same text"), False)
    with db.read() as c:
        rows = c.execute(text("SELECT idx, model_hash, tokens, truncated FROM embeddings WHERE job_id = 'c1' "
                              "ORDER BY idx")).all()
    assert [tuple(r) for r in rows] == [(0, "sha-of-model-A", 9, False), (1, "sha-of-model-A", 5, False)]
    assert len({hit, miss_model, miss_dims, storage.content_hash("model-A", None, None, False, "same text")}) == 4


def test_nearest_matches_brute_force_cosine(db, service_model):
    vectors = service_model.embed(SENTENCES)
    for j in range(0, len(SENTENCES), 3):
        store(db, f"n{j}", SENTENCES[j:j + 3], vectors[j:j + 3], model="all-MiniLM-L6-v2")
    # Vectors of another model or size never show up.
    store(db, "other-model", ["The cat sits on the mat."], vectors[:1], model="another-model")
    store(db, "other-dim", ["The cat sits on the mat."], vectors[:1, :128].copy(), model="all-MiniLM-L6-v2")

    q = service_model.embed(["Where is the cat sitting?"])[0]
    hits = storage.nearest(db, q, "all-MiniLM-L6-v2", k=4)
    sims = vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    want = np.argsort(-sims)[:4]
    assert [h[2] for h in hits] == [SENTENCES[i] for i in want]
    np.testing.assert_allclose([h[3] for h in hits], sims[want], atol=1e-5)
    job_id, idx, text_, _ = hits[0]
    assert SENTENCES[int(job_id[1:]) + idx] == text_
    assert all(h[0] not in ("other-model", "other-dim") for h in hits)
    assert storage.nearest(db, np.ones(999, np.float32), "all-MiniLM-L6-v2", k=3) == []
    with pytest.raises(ValueError, match="k must be a positive integer"):
        storage.nearest(db, q, "all-MiniLM-L6-v2", k=0)
    with pytest.raises(ValueError, match="non-zero"):
        storage.nearest(db, np.zeros(384, np.float32), "all-MiniLM-L6-v2")


def test_nearest_returns_k_rows_past_the_hnsw_candidate_list(db):
    # pgvector's HNSW scan returns at most hnsw.ef_search rows (default 40) unless it is raised.
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((150, 16)).astype(np.float32)
    store(db, "many", [f"t{i}" for i in range(150)], vectors)
    hits = storage.nearest(db, vectors[0], "m", k=100)
    assert len(hits) == 100 and hits[0][:2] == ("many", 0)
    assert [h[3] for h in hits] == sorted((h[3] for h in hits), reverse=True)


def test_storage_loads_no_model():
    # Storage knows tables, not models: importing it (and searching by vector) never imports the runtime.
    import subprocess
    import sys

    code = "import sys, storage; assert 'native' not in sys.modules, sorted(m for m in sys.modules if 'native' in m)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_postgres_nearest_query_uses_the_hnsw_index(pg_url):
    with storage.connect(pg_url).engine.begin() as c:
        c.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(c.execute(text("EXPLAIN " + pg_query(384)),
                                   {"q": vector_literal(np.ones(384, np.float32)), "m": "m", "k": 5}).scalars())
    assert "ix_embeddings_hnsw_384" in plan


def test_sqlite_nearest_goes_through_sqlite_vec(tmp_path):
    db = storage.Database(f"sqlite:///{tmp_path / 'v.sqlite'}")
    store(db, "j", ["a", "b"], np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    with db.read() as c:
        rows = c.execute(text(SQLITE_QUERY), {"q": np.array([1, 0.1, 0], "<f4").tobytes(), "dim": 3, "m": "m",
                                              "k": 2}).all()
    db.dispose()
    assert [r[2] for r in rows] == ["a", "b"] and rows[0][3] < rows[1][3]


def test_retry_recovers_from_transient_errors_only_within_its_patience():
    calls = []
    real = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise real
        return "ok"

    assert storage.with_retry(flaky, patience_s=5, base_ms=1) == "ok" and len(calls) == 3
    calls.clear()
    t = time.monotonic()
    with pytest.raises(OperationalError):
        storage.with_retry(lambda: (calls.append(1), (_ for _ in ()).throw(real)), patience_s=0.3, base_ms=10,
                           max_ms=50)
    # It kept trying until its patience ran out, then gave up with the error itself.
    assert 0.3 <= time.monotonic() - t < 1.5 and len(calls) >= 5
    calls.clear()

    def integrity():
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        storage.with_retry(integrity, patience_s=5, base_ms=1)
    assert len(calls) == 1


def test_group_writer_writes_each_job_once_under_concurrent_deliveries(db):
    writer = storage.GroupWriter(db)
    rng = np.random.default_rng(3)
    jobs = {f"g{i}": ([f"text {i}.{j}" for j in range(1 + i % 3)]) for i in range(30)}
    vectors = {k: rng.standard_normal((len(t), 16)).astype(np.float32) for k, t in jobs.items()}
    outcomes: dict[str, list[bool]] = {k: [] for k in jobs}
    errors = []
    # Every job is delivered twice at once, as after a redelivery race.
    deliveries = [k for k in jobs for _ in range(2)]
    barrier = threading.Barrier(len(deliveries))

    def deliver(job_id):
        try:
            texts = jobs[job_id]
            hashes = [storage.content_hash("fp", None, None, True, t) for t in texts]
            barrier.wait()
            claim = writer.claim(claim_request(job_id, texts, hashes=hashes, worker="w"))
            if claim.status == "done":
                outcomes[job_id].append(False)
                return
            outcomes[job_id].append(writer.save(save_request(job_id, texts, hashes, vectors[job_id], batch_ids=["b"],
                                                             worker="w")))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=deliver, args=(k,)) for k in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    writer.close()
    assert not errors, errors
    assert all(sorted(v) == [False, True] for v in outcomes.values()), outcomes
    for job_id in jobs:
        np.testing.assert_array_equal(storage.get_vectors(db, job_id), vectors[job_id])
        assert storage.get_job(db, job_id)["attempts"] in (1, 2)
    total = sum(len(t) for t in jobs.values())
    with db.read() as c:
        assert c.execute(text("SELECT count(*) FROM embeddings")).scalar() == total
        assert c.execute(text("SELECT count(*) FROM job_metrics")).scalar() == len(jobs)
    assert writer.groups <= 2 * len(deliveries)


def test_group_writer_replays_a_failing_request_alone(db):
    writer = storage.GroupWriter(db)
    results, errors = {}, {}
    barrier = threading.Barrier(6)

    def save(job_id):
        # "bad" lacks a value its metrics row requires: its insert fails, and only its own.
        bad = metrics(tokens=None) if job_id == "bad" else None
        barrier.wait()
        try:
            results[job_id] = writer.save(save_request(job_id, ["t"], [f"h-{job_id}"], np.ones((1, 4), np.float32),
                                                       batch_ids=[], job_metrics=bad))
        except Exception as e:
            errors[job_id] = e

    threads = [threading.Thread(target=save, args=(k,)) for k in ("a", "b", "bad", "c", "d", "e")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    writer.close()
    assert set(errors) == {"bad"} and "tokens" in str(errors["bad"])
    assert results == {k: True for k in ("a", "b", "c", "d", "e")}
    with pytest.raises(storage.JobNotFound):
        storage.get_job(db, "bad")
    with pytest.raises(RuntimeError, match="shut down"):
        writer.claim(claim_request("late", count=1))


def test_group_writer_lingers_only_while_requests_arrive_close_together(db):
    writer = storage.GroupWriter(db, linger_ms=300)

    def save(job_id):
        return writer.save(save_request(job_id, ["t"], [f"h-{job_id}"], np.ones((1, 4), np.float32), batch_ids=[]))

    assert save("lone")  # no earlier request: written at once, in a group of its own
    assert writer.groups == 1
    time.sleep(0.35)
    # Ten requests 10 ms apart: after the first, each arrives within the linger of the one before,
    # so the writer waits for company instead of committing them one by one.
    threads = []
    for i in range(10):
        threads.append(threading.Thread(target=save, args=(f"burst{i}",)))
        threads[-1].start()
        time.sleep(0.01)
    for t in threads:
        t.join(60)
    writer.close()
    assert 2 <= writer.groups <= 4, writer.groups
    assert storage.get_job(db, "burst9")["status"] == "done"


def test_migrations_and_models_describe_the_same_schema(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    with db.read() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    # The per-dimension HNSW indexes are created by the migration (and on demand), not declared on
    # the model: an expression index on a cast has no ORM spelling.
    diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name.startswith("ix_embeddings_hnsw_"))]
    assert diff == []
