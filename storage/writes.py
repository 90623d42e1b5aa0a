"""The write path: claim jobs, store their results exactly once, record why a job failed.

`claim_many` and `save_many` are the one implementation of claim and save; they take a list so
that the group writer (group_writer.py) can write many jobs in one transaction, and `claim` /
`save` run them for a single job. Everything here is safe to retry (storage.retry) and safe to run
twice for the same job id: that is what makes broker redelivery harmless. It is SQLAlchemy Core
rather than the ORM because it runs on every job: on a 2-core machine the ORM's per-object
bookkeeping cost more CPU than the statements (profiled: ~4 ms of interpreter time per job), and
that CPU is taken from the forward pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from .database import Database
from .models import JOB_DONE, JOB_FAILED, JOB_RUNNING, Chunk, Embedding, Job, JobMetrics, ModelFile, utcnow
from .pg_index import ensure_hnsw_index

JOBS = Job.__table__
EMBEDDINGS = Embedding.__table__
METRICS = JobMetrics.__table__
MODEL_FILES = ModelFile.__table__
CHUNKS = Chunk.__table__


@dataclass(frozen=True)
class Cached:
    """A stored vector found by its content hash, with what it was computed from."""

    vector: np.ndarray
    tokens: int | None
    truncated: bool | None


@dataclass(frozen=True)
class Claim:
    status: str          # JOB_RUNNING: go ahead; JOB_DONE / JOB_FAILED: already settled, don't recompute
    attempts: int
    cached: dict[str, Cached] = field(default_factory=dict)  # content hash -> stored vector


@dataclass(frozen=True)
class ModelFileInfo:
    content_hash: str
    name: str
    architecture: str
    weight_type: str
    pooling: str
    dim: int
    size: int
    path: str


@dataclass
class ClaimRequest:
    """Mark a job running (creating its row) unless an earlier delivery settled it; also look up
    the content-hash cache for `hashes` in the same transaction."""

    job_id: str
    model: str | None
    prompt_name: str | None
    dims: int | None
    normalize: bool
    count: int
    worker: str
    hashes: list[str] = field(default_factory=list)
    model_hash: str | None = None


@dataclass(frozen=True)
class ChunkRow:
    """One window of text `idx` of a job (models.Chunk says what each offset counts)."""

    idx: int
    chunk: int
    token_start: int
    token_end: int
    char_start: int
    char_end: int
    tokens: int
    vector: np.ndarray


@dataclass
class SaveRequest:
    """A finished job's vectors and metrics, stored and marked done in one transaction.

    `metrics` holds every JobMetrics field except persist_ms and total_ms, which the write itself
    measures just before the commit and adds to it: persist_ms from `submitted` (when the job handed
    its rows to storage), total_ms as queue_wait_ms plus the time since `started` (when its worker
    began the job).
    """

    job_id: str
    texts: list[str]
    hashes: list[str]
    vectors: np.ndarray
    model: str
    batch_ids: list[str]
    metrics: dict
    started: float                   # time.monotonic() when the worker started the job
    worker: str | None = None
    model_hash: str | None = None    # the model file (model_files.content_hash)
    tokens: list[int] | None = None  # per text: tokens it took in the forward pass
    truncated: list[bool] | None = None  # per text: cut at the model's maximum length
    chunks: list[ChunkRow] | None = None  # overflow="chunk": every text's windows
    submitted: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        n = len(self.texts)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n or len(self.hashes) != n:
            raise ValueError(f"job {self.job_id}: {n} texts, {len(self.hashes)} hashes, vectors {self.vectors.shape}")
        for name in ("tokens", "truncated"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"job {self.job_id}: {n} texts, {len(getattr(self, name))} {name}")
        for c in self.chunks or ():
            if not 0 <= c.idx < n or np.shape(c.vector) != (self.dim,):
                raise ValueError(f"job {self.job_id}: chunk {c.chunk} of text {c.idx} does not fit {n} texts "
                                 f"of dim {self.dim}")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def insert_ignore(conn: Connection, table=JOBS, key: str = "id"):
    """INSERT INTO table ... ON CONFLICT (key) DO NOTHING RETURNING key, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    # RETURNING tells whether this statement created the row (rowcount is unreliable here).
    return dialect_insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])


def claim_many(conn: Connection, claims: list[ClaimRequest]) -> list[Claim]:
    now = utcnow()
    rows = [dict(id=r.job_id, status=JOB_RUNNING, model=r.model, prompt_name=r.prompt_name, dims=r.dims,
                 normalize=r.normalize, count=r.count, worker=r.worker, attempts=1, batch_ids=[], created_at=now,
                 model_hash=r.model_hash) for r in claims]
    # Insert-or-nothing first: two deliveries racing on a new job id must not both create it.
    created = {row[0] for row in conn.execute(insert_ignore(conn), rows)}
    state = {job_id: (JOB_RUNNING, 1) for job_id in created}
    again = [r for r in claims if r.job_id not in created]
    if again:  # redeliveries: count the attempt unless an earlier one settled the job
        conn.execute(update(JOBS).where(JOBS.c.id == bindparam("b_id"), JOBS.c.status == JOB_RUNNING)
                     .values(attempts=JOBS.c.attempts + 1, worker=bindparam("b_worker")),
                     [dict(b_id=r.job_id, b_worker=r.worker) for r in again])
        state.update((row[0], (row[1], row[2])) for row in conn.execute(
            select(JOBS.c.id, JOBS.c.status, JOBS.c.attempts).where(JOBS.c.id.in_([r.job_id for r in again]))))
    cached = lookup(conn, [h for r in claims for h in r.hashes])
    out = []
    for r in claims:
        status, attempts = state[r.job_id]
        mine = {h: cached[h] for h in r.hashes if h in cached} if status == JOB_RUNNING else {}
        out.append(Claim(status, attempts, mine))
    return out


def save_many(conn: Connection, saves: list[SaveRequest]) -> list[bool]:
    """Store each job not yet done; True where this call stored it, False where another delivery
    got there first."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        for dim in {r.dim for r in saves}:
            ensure_hnsw_index(conn, dim)
    q = select(JOBS.c.id, JOBS.c.status).where(JOBS.c.id.in_([r.job_id for r in saves]))
    if pg:
        q = q.with_for_update()  # a concurrent duplicate in another process waits, then finds them done
    existing = dict(conn.execute(q).all())
    todo = [r for r in saves if existing.get(r.job_id) != JOB_DONE]
    if todo:
        now = utcnow()

        def done(r: SaveRequest) -> dict:
            return dict(status=JOB_DONE, error=None, dim=r.dim, count=len(r.texts), batch_ids=list(r.batch_ids),
                        finished_at=now, worker=r.worker, model_hash=r.model_hash)

        present = [r for r in todo if r.job_id in existing]
        if present:
            conn.execute(update(JOBS).where(JOBS.c.id == bindparam("b_id"))
                         .values({k: bindparam(f"b_{k}") for k in done(present[0])}),
                         [{"b_id": r.job_id, **{f"b_{k}": v for k, v in done(r).items()}} for r in present])
        missing = [r for r in todo if r.job_id not in existing]
        if missing:  # claim rows deleted meanwhile; write them anyway
            conn.execute(insert(JOBS), [dict(id=r.job_id, model=r.model, normalize=True, attempts=1,
                                             created_at=now, **done(r)) for r in missing])
        conn.execute(insert(EMBEDDINGS), [
            dict(job_id=r.job_id, idx=i, text=t, content_hash=h, model=r.model, dim=r.dim, vector=v,
                 model_hash=r.model_hash, tokens=_at(r.tokens, i, int), truncated=_at(r.truncated, i, bool))
            for r in todo for i, (t, h, v) in enumerate(zip(r.texts, r.hashes, r.vectors))])
        chunk_rows = [dict(job_id=r.job_id, model=r.model, model_hash=r.model_hash, dim=r.dim,
                           **{k: getattr(c, k) for k in ("idx", "chunk", "token_start", "token_end", "char_start",
                                                         "char_end", "tokens")},
                           vector=np.asarray(c.vector, dtype=np.float32))
                      for r in todo for c in (r.chunks or ())]
        if chunk_rows:
            conn.execute(insert(CHUNKS), chunk_rows)
        # Timed last, just before the commit, so persist_ms covers the writing. The request keeps
        # them, so its caller can report what was stored.
        t = time.monotonic()
        for r in todo:
            r.metrics.update(persist_ms=(t - r.submitted) * 1000.0,
                             total_ms=r.metrics["queue_wait_ms"] + (t - r.started) * 1000.0)
        conn.execute(insert(METRICS), [dict(job_id=r.job_id, created_at=now, **r.metrics) for r in todo])
    written = {id(r) for r in todo}
    return [id(r) in written for r in saves]


def _at(values, i: int, kind):
    """values[i] as `kind`, or None where there is no list or no value (vectors stored before
    provenance was recorded, cached from such rows)."""
    v = None if values is None else values[i]
    return None if v is None else kind(v)


def claim(db: Database, request: ClaimRequest) -> Claim:
    with db.write() as conn:
        return claim_many(conn, [request])[0]


def save(db: Database, request: SaveRequest) -> bool:
    try:
        with db.write() as conn:
            return save_many(conn, [request])[0]
    except IntegrityError:
        # A concurrent delivery may have committed the same (job_id, idx) rows first; then the job
        # is done and this one stored nothing. Any other integrity error is this request's own.
        with db.read() as conn:
            if conn.execute(select(JOBS.c.status).where(JOBS.c.id == request.job_id)).scalar() == JOB_DONE:
                return False
        raise


def mark_failed(db: Database, job_id: str, reason: str, *, worker: str | None = None, model: str | None = None,
                count: int | None = None) -> bool:
    """Record why a job failed. A job that is already done stays done (returns False)."""
    with db.write() as conn:
        now = utcnow()
        created = conn.execute(insert_ignore(conn).values(
            id=job_id, status=JOB_FAILED, model=model, count=count or 0, worker=worker, attempts=1, error=reason,
            normalize=True, batch_ids=[], created_at=now, finished_at=now)).first() is not None
        if created:
            return True
        values = dict(status=JOB_FAILED, error=reason, finished_at=now)
        if worker:
            values["worker"] = worker
        return conn.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status != JOB_DONE)
                            .values(**values).returning(JOBS.c.id)).first() is not None


def cached_vectors(db: Database, hashes: list[str]) -> dict[str, Cached]:
    """Vectors already stored under these content hashes (any one row per hash)."""
    with db.read() as conn:
        return lookup(conn, hashes)


def lookup(conn: Connection, hashes: list[str]) -> dict[str, Cached]:
    wanted = sorted(set(hashes))
    found: dict[str, Cached] = {}
    e = EMBEDDINGS.c
    # Chunked: SQLite caps bound parameters per statement.
    for i in range(0, len(wanted), 500):
        for h, v, tokens, truncated in conn.execute(select(e.content_hash, e.vector, e.tokens, e.truncated)
                                                    .where(e.content_hash.in_(wanted[i:i + 500]))):
            found.setdefault(h, Cached(v, tokens, truncated))
    return found


def register_model_file(db: Database, info: ModelFileInfo) -> None:
    """Record a model file that is about to compute vectors (once per content hash)."""
    with db.write() as conn:
        conn.execute(insert_ignore(conn, MODEL_FILES, "content_hash"), [dict(vars(info), first_seen=utcnow())])
