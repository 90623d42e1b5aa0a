"""The worker's write path: claim a job, store its result exactly once, or record why it failed.

Every function here is one short transaction, safe to retry (storage.retry) and safe to run twice
for the same job id: that is what makes broker redelivery harmless. They run on every job, so they
are written in SQLAlchemy Core rather than through the ORM session: on a 2-core machine the
ORM's per-object bookkeeping cost more CPU than the statements themselves (profiled: the two
write transactions of a job took ~4 ms of interpreter time through the ORM), and that CPU is
taken from the forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from .database import read_connection, write_connection
from .models import JOB_DONE, JOB_FAILED, JOB_RUNNING, Embedding, Job, JobMetrics, utcnow
from .pg_index import ensure_hnsw_index

JOBS = Job.__table__
EMBEDDINGS = Embedding.__table__
METRICS = JobMetrics.__table__


@dataclass(frozen=True)
class Claim:
    status: str          # JOB_RUNNING: go ahead; JOB_DONE / JOB_FAILED: already settled, don't recompute
    attempts: int
    cached: dict[str, np.ndarray] = field(default_factory=dict)  # content hash -> stored vector


def _insert_ignore(conn: Connection):
    """INSERT INTO jobs ... ON CONFLICT DO NOTHING RETURNING id, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    # RETURNING tells whether this statement created the row (rowcount is unreliable here).
    return dialect_insert(JOBS).on_conflict_do_nothing(index_elements=["id"]).returning(JOBS.c.id)


def claim_job(job_id: str, *, model: str | None, prompt_name: str | None, dims: int | None,
              normalize: bool, count: int, worker: str, hashes: list[str] | None = None,
              url: str | None = None) -> Claim:
    """Mark a job running (creating its row), unless an earlier delivery already settled it.

    With `hashes`, the same transaction also looks up the content-hash cache (Claim.cached).
    """
    with write_connection(url) as conn:
        # Insert-or-nothing first: two deliveries racing on a new job id must not both create it.
        created = conn.execute(_insert_ignore(conn).values(
            id=job_id, status=JOB_RUNNING, model=model, prompt_name=prompt_name, dims=dims, normalize=normalize,
            count=count, worker=worker, attempts=1, batch_ids=[], created_at=utcnow())).first() is not None
        if created:
            attempts = 1
        else:
            row = conn.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status == JOB_RUNNING)
                               .values(attempts=JOBS.c.attempts + 1, worker=worker)
                               .returning(JOBS.c.attempts)).first()
            if row is None:  # settled by an earlier delivery
                status, attempts = conn.execute(select(JOBS.c.status, JOBS.c.attempts)
                                                .where(JOBS.c.id == job_id)).one()
                return Claim(status, attempts)
            attempts = row[0]
        cached = _lookup(conn, hashes) if hashes else {}
        return Claim(JOB_RUNNING, attempts, cached)


def cached_vectors(hashes: list[str], url: str | None = None) -> dict[str, np.ndarray]:
    """Vectors already stored under these content hashes (any one row per hash)."""
    with read_connection(url) as conn:
        return _lookup(conn, hashes)


def _lookup(conn: Connection, hashes: list[str]) -> dict[str, np.ndarray]:
    wanted = sorted(set(hashes))
    found: dict[str, np.ndarray] = {}
    # Chunked: SQLite caps bound parameters per statement.
    for i in range(0, len(wanted), 500):
        rows = conn.execute(select(EMBEDDINGS.c.content_hash, EMBEDDINGS.c.vector)
                            .where(EMBEDDINGS.c.content_hash.in_(wanted[i:i + 500])))
        for h, v in rows:
            found.setdefault(h, v)
    return found


class _AlreadyDone(Exception):
    pass


def save_result(job_id: str, *, texts: list[str], hashes: list[str], vectors: np.ndarray, model: str,
                batch_ids: list[str], metrics: Callable[[], dict], worker: str | None = None,
                url: str | None = None) -> bool:
    """Store a finished job's vectors and metrics and mark it done, all in one transaction.

    `metrics()` is called after the rows are written, just before the commit, so the times it
    reports cover the writing. Returns False (writing nothing) when another delivery of the same
    job got there first.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts) or len(hashes) != len(texts):
        raise ValueError(f"job {job_id}: {len(texts)} texts, {len(hashes)} hashes, vectors {vectors.shape}")
    dim = int(vectors.shape[1])
    try:
        with write_connection(url) as conn:
            if conn.dialect.name == "postgresql":
                ensure_hnsw_index(conn, dim)
            # Marking the job done first takes its row lock (PostgreSQL), so a concurrent duplicate
            # waits here and then finds it done; the WHERE keeps a settled job's rows untouched.
            done = dict(status=JOB_DONE, error=None, dim=dim, count=len(texts), batch_ids=list(batch_ids),
                        finished_at=utcnow())
            if worker:
                done["worker"] = worker
            marked = conn.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status != JOB_DONE)
                                  .values(**done).returning(JOBS.c.id)).first()
            if marked is None:
                if conn.execute(select(JOBS.c.id).where(JOBS.c.id == job_id)).first() is not None:
                    raise _AlreadyDone
                # The claim row can be missing only if someone deleted it meanwhile; write it anyway.
                conn.execute(insert(JOBS).values(id=job_id, model=model, normalize=True, attempts=1,
                                                 created_at=utcnow(), **done))
            conn.execute(insert(EMBEDDINGS), [
                dict(job_id=job_id, idx=i, text=t, content_hash=h, model=model, dim=dim, vector=v)
                for i, (t, h, v) in enumerate(zip(texts, hashes, vectors))])
            m = metrics()
            conn.execute(insert(METRICS).values(job_id=job_id, created_at=utcnow(), **m))
    except _AlreadyDone:
        return False
    except IntegrityError:
        # A concurrent delivery committed the same (job_id, idx) rows first: the job is done.
        return False
    return True


def mark_failed(job_id: str, reason: str, *, worker: str | None = None, model: str | None = None,
                count: int | None = None, url: str | None = None) -> bool:
    """Record why a job failed. A job that is already done stays done (returns False)."""
    with write_connection(url) as conn:
        now = utcnow()
        created = conn.execute(_insert_ignore(conn).values(
            id=job_id, status=JOB_FAILED, model=model, count=count or 0, worker=worker, attempts=1, error=reason,
            normalize=True, batch_ids=[], created_at=now, finished_at=now)).first() is not None
        if created:
            return True
        values = dict(status=JOB_FAILED, error=reason, finished_at=now)
        if worker:
            values["worker"] = worker
        return conn.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status != JOB_DONE)
                            .values(**values).returning(JOBS.c.id)).first() is not None
