"""Stored jobs over time: list them, delete them (`embedq jobs list|delete`, GET/DELETE /v1/jobs).

Deleting a job deletes its row; its vectors and metrics go with it through the foreign keys'
ON DELETE CASCADE (SQLite enforces them: engine.py turns foreign_keys on for every connection).
Only settled jobs (done or failed) are deleted unless asked otherwise: a running job's worker would
write its row again when it finishes (writes.save_many stores a job whose claim row is gone).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, func, or_, select

from .database import Database
from .models import JOB_DONE, JOB_FAILED, Job
from .queries import JobNotFound

JOBS = Job.__table__
SETTLED = (JOB_DONE, JOB_FAILED)
_CHUNK = 500  # ids per statement (SQLite caps bound parameters)


def _row(r) -> dict:
    return {
        "job_id": r.id, "status": r.status, "error": r.error, "model": r.model, "prompt_name": r.prompt_name,
        "dims": r.dims, "normalize": r.normalize, "count": r.count, "dim": r.dim,
        "batch_ids": list(r.batch_ids or []), "attempts": r.attempts, "worker": r.worker,
        "created_at": _aware(r.created_at), "finished_at": _aware(r.finished_at),
    }


def _aware(t: datetime | None) -> datetime | None:
    # SQLite hands DateTime(timezone=True) back naive; every timestamp stored here is UTC.
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _cutoff(older_than: timedelta | float | int) -> datetime:
    if isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        older_than = timedelta(seconds=older_than)
    if not isinstance(older_than, timedelta):
        raise TypeError(f"older_than must be a timedelta or seconds, got {type(older_than).__name__}")
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    return datetime.now(timezone.utc) - older_than


def list_jobs(db: Database, *, status: str | None = None, limit: int = 100, after: str | None = None,
              older_than: timedelta | float | None = None) -> list[dict]:
    """Jobs newest first (created_at, then id), as get_job's dicts.

    `after` is a job id: the page starts right after that job in this order (cursor pagination:
    pass the last id of one page to get the next). `status` keeps one status; `older_than` keeps
    jobs created at least that long ago. Raises JobNotFound for an unknown `after`.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    q = select(JOBS)
    with db.read() as conn:
        if after is not None:
            ref = conn.execute(select(JOBS.c.created_at, JOBS.c.id).where(JOBS.c.id == after)).first()
            if ref is None:
                raise JobNotFound(f"no job {after!r} in the database")
            # Row-value comparison spelled out (both backends): older, or as old with a smaller id.
            q = q.where(or_(JOBS.c.created_at < ref.created_at,
                            and_(JOBS.c.created_at == ref.created_at, JOBS.c.id < ref.id)))
        if status is not None:
            q = q.where(JOBS.c.status == status)
        if older_than is not None:
            q = q.where(JOBS.c.created_at < _cutoff(older_than))
        rows = conn.execute(q.order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc()).limit(limit)).all()
    return [_row(r) for r in rows]


def count_jobs(db: Database, status: str | None = None) -> int:
    q = select(func.count()).select_from(JOBS)
    if status is not None:
        q = q.where(JOBS.c.status == status)
    with db.read() as conn:
        return int(conn.execute(q).scalar_one())


def delete_jobs(db: Database, ids: list[str] | None = None, older_than: timedelta | float | None = None,
                statuses: tuple[str, ...] | None = SETTLED) -> list[str]:
    """Delete jobs (rows, vectors, metrics) and return the ids deleted.

    `ids` picks jobs by id, `older_than` (a timedelta or seconds) those created at least that long
    ago; both given: jobs matching both. One of them is required (nothing deletes every job by
    default). `statuses` limits deletion to jobs in those states (default: done and failed; None:
    any state, running included). Ids that are unknown or not in `statuses` are left out.
    """
    if ids is None and older_than is None:
        raise ValueError("delete_jobs needs ids or older_than")
    conds = []
    if older_than is not None:
        conds.append(JOBS.c.created_at < _cutoff(older_than))
    if statuses is not None:
        conds.append(JOBS.c.status.in_(list(statuses)))
    deleted: list[str] = []
    with db.write() as conn:
        if ids is None:
            chunks = [None]
        else:
            wanted = list(dict.fromkeys(ids))
            chunks = [wanted[i:i + _CHUNK] for i in range(0, len(wanted), _CHUNK)]
        for chunk in chunks:
            where = list(conds) + ([JOBS.c.id.in_(chunk)] if chunk is not None else [])
            found = list(conn.execute(select(JOBS.c.id).where(*where)).scalars())
            for i in range(0, len(found), _CHUNK):
                part = found[i:i + _CHUNK]
                conn.execute(delete(JOBS).where(JOBS.c.id.in_(part)))
            deleted += found
    return deleted


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '12h', '7d', '2w' (or a plain number of seconds) -> timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = str(text).strip().lower()
    try:
        if t and t[-1] in units:
            value = float(t[:-1]) * units[t[-1]]
        else:
            value = float(t)
    except ValueError:
        raise ValueError(f"duration {text!r}: a number with s, m, h, d or w (e.g. 7d, 12h, 30m)") from None
    if value < 0 or value != value:
        raise ValueError(f"duration {text!r} must not be negative")
    return timedelta(seconds=value)
