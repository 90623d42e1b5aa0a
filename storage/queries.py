"""Reading jobs back: their vectors, metrics and state, and metrics over many jobs for `embedq stats`."""
from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from .database import Database
from .models import JOB_DONE, LATENCY_FIELDS, Chunk, Embedding, Job, JobMetrics


class JobNotFound(LookupError):
    pass


class JobNotDone(LookupError):
    """The job exists but has no vectors (still running, or failed: the message carries the reason)."""


def get_job(db: Database, job_id: str) -> dict:
    """A job's row: status, error, model, count, dim, batch_ids, attempts, worker, timestamps."""
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r} in the database")
        return {
            "job_id": job.id, "status": job.status, "error": job.error, "model": job.model,
            "prompt_name": job.prompt_name, "dims": job.dims, "normalize": job.normalize, "count": job.count,
            "dim": job.dim, "batch_ids": list(job.batch_ids or []), "attempts": job.attempts,
            "worker": job.worker, "created_at": job.created_at, "finished_at": job.finished_at,
        }


def _require_done(s, job_id: str) -> Job:
    job = s.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r} in the database")
    if job.status != JOB_DONE:
        why = f": {job.error}" if job.error else ""
        raise JobNotDone(f"job {job_id} is {job.status}{why}")
    return job


def get_vectors(db: Database, job_id: str) -> np.ndarray:
    """float32 array (count, dim), rows in the order the texts were given."""
    with db.session() as s:
        job = _require_done(s, job_id)
        rows = s.scalars(select(Embedding.vector).where(Embedding.job_id == job_id).order_by(Embedding.idx)).all()
        if len(rows) != job.count:
            raise JobNotDone(f"job {job_id} is done but has {len(rows)} of {job.count} vectors")
        return np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, job.dim or 0), np.float32)


def get_chunks(db: Database, job_id: str) -> list[dict]:
    """The chunks of a job run with overflow="chunk", in text then chunk order: dicts of idx, chunk,
    token_start, token_end, char_start, char_end, tokens, text (the slice of the text they cover) and
    vector (float32). Empty for a job run without chunking."""
    c, e = Chunk.__table__.c, Embedding.__table__.c
    with db.session() as s:
        _require_done(s, job_id)
        texts = dict(s.execute(select(e.idx, e.text).where(e.job_id == job_id)).all())
        rows = s.execute(select(c.idx, c.chunk, c.token_start, c.token_end, c.char_start, c.char_end, c.tokens,
                                c.vector).where(c.job_id == job_id).order_by(c.idx, c.chunk)).all()
    return [{**r._asdict(), "text": texts[r.idx][r.char_start:r.char_end],
             "vector": np.asarray(r.vector, dtype=np.float32)} for r in rows]


def get_texts(db: Database, job_id: str) -> list[str]:
    with db.session() as s:
        _require_done(s, job_id)
        return list(s.scalars(select(Embedding.text).where(Embedding.job_id == job_id).order_by(Embedding.idx)))


def get_metrics(db: Database, job_id: str) -> dict:
    """queue_wait_ms, batch_wait_ms, tokenize_ms, forward_ms, persist_ms, total_ms, batch_size, worker,
    and batch_jobs, tokens, truncated, cache_hits."""
    with db.session() as s:
        _require_done(s, job_id)
        m = s.get(JobMetrics, job_id)
        if m is None:
            raise JobNotDone(f"job {job_id} is done but has no metrics row")
        return m.as_dict()


def all_metrics(db: Database) -> list[dict]:
    """Metrics of every done job, with its job_id, count and batch_ids (for statistics)."""
    with db.session() as s:
        rows = s.execute(select(JobMetrics, Job.count, Job.batch_ids).join(Job, Job.id == JobMetrics.job_id)
                         .order_by(JobMetrics.created_at))
        return [{**m.as_dict(), "job_id": m.job_id, "count": count, "batch_ids": list(b or [])}
                for m, count, b in rows]


def status_counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())


def failed_jobs(db: Database, limit: int = 20) -> list[tuple[str, str]]:
    with db.session() as s:
        rows = s.execute(select(Job.id, Job.error).where(Job.status == "failed")
                         .order_by(Job.finished_at.desc()).limit(limit))
        return [(r[0], r[1] or "") for r in rows]


def get_output(db: Database, job_id: str) -> dict:
    """A done job's answer in one read: {"vectors": float32 (count, dim), "tokens": per-text token
    counts (None for rows stored before they were recorded), "metrics": as get_metrics}. For APIs
    that answer with a job's vectors (the HTTP gateway): one connection, no ORM objects."""
    jobs, emb, met = Job.__table__, Embedding.__table__, JobMetrics.__table__
    with db.read() as conn:
        job = conn.execute(select(jobs.c.status, jobs.c.error, jobs.c.count, jobs.c.dim)
                           .where(jobs.c.id == job_id)).first()
        if job is None:
            raise JobNotFound(f"no job {job_id!r} in the database")
        if job.status != JOB_DONE:
            why = f": {job.error}" if job.error else ""
            raise JobNotDone(f"job {job_id} is {job.status}{why}")
        rows = conn.execute(select(emb.c.vector, emb.c.tokens).where(emb.c.job_id == job_id)
                            .order_by(emb.c.idx)).all()
        m = conn.execute(select(met).where(met.c.job_id == job_id)).mappings().first()
    if len(rows) != job.count or m is None:
        raise JobNotDone(f"job {job_id} is done but has {len(rows)} of {job.count} vectors"
                         + ("" if m is not None else " and no metrics row"))
    vectors = (np.stack([r.vector for r in rows]).astype(np.float32, copy=False) if rows
               else np.zeros((0, job.dim or 0), np.float32))
    metrics = {k: m[k] for k in (*LATENCY_FIELDS, "batch_size", "batch_jobs", "tokens", "truncated", "cache_hits",
                                 "chunks", "worker")}
    return {"vectors": vectors, "tokens": [r.tokens for r in rows], "metrics": metrics}
