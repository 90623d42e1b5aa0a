"""Group commit for a worker process: the claims and results of many jobs in one transaction.

A worker process has dozens of task threads, each needing two small write transactions per job
(claim, then store). Run one by one they queue on the database's write lock and pay statement
compilation and transaction overhead per job, and on a 2-core machine that interpreter time is
taken from the forward pass. Here task threads hand their request to one writer thread and wait;
the writer takes everything queued, executes each kind as a few multi-row statements in one
transaction, and hands each thread its own answer. Per-job semantics are unchanged: a job id is
still written once, a settled job is reported settled. If a group fails for a reason other than
a transient database error, its requests are replayed one by one (storage.jobs), so one bad
request fails alone; a transient error is handed to every caller, whose retry policy applies.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sqlalchemy import Connection, bindparam, insert, select, update

from . import jobs
from .database import write_connection
from .jobs import EMBEDDINGS, JOBS, METRICS, Claim, _insert_ignore, _lookup
from .models import JOB_DONE, JOB_RUNNING, utcnow
from .pg_index import ensure_hnsw_index
from .retry import is_transient

log = logging.getLogger(__name__)


@dataclass
class _Request:
    kind: str                       # "claim" or "save"
    kw: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    @property
    def job_id(self) -> str:
        return self.kw["job_id"]


class GroupWriter:
    def __init__(self, url: str, max_group: int = 512, linger_ms: float = 2.0):
        self.url = url
        self.max_group = max_group
        self.linger_s = max(0.0, linger_ms) / 1000.0
        self._gap = float("inf")  # seconds between the last two requests
        self._last_arrival = 0.0
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.groups = 0
        self._thread = threading.Thread(target=self._run, name="embedq-writer", daemon=True)
        self._thread.start()

    # -- the callers' side (same arguments and answers as storage.jobs) --------------------------
    def claim(self, job_id: str, *, model: str | None, prompt_name: str | None, dims: int | None,
              normalize: bool, count: int, worker: str, hashes: list[str] | None = None) -> Claim:
        return self._submit("claim", dict(job_id=job_id, model=model, prompt_name=prompt_name, dims=dims,
                                          normalize=normalize, count=count, worker=worker, hashes=hashes or []))

    def save(self, job_id: str, *, texts: list[str], hashes: list[str], vectors: np.ndarray, model: str,
             batch_ids: list[str], metrics: Callable[[], dict], worker: str | None = None) -> bool:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or len(hashes) != len(texts):
            raise ValueError(f"job {job_id}: {len(texts)} texts, {len(hashes)} hashes, vectors {vectors.shape}")
        return self._submit("save", dict(job_id=job_id, texts=texts, hashes=hashes, vectors=vectors, model=model,
                                         batch_ids=list(batch_ids), metrics=metrics, worker=worker))

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _submit(self, kind: str, kw: dict) -> Any:
        req = _Request(kind, kw)
        with self._cond:
            if self._closing:
                raise RuntimeError("the database writer is shut down")
            now = time.monotonic()
            self._gap, self._last_arrival = now - self._last_arrival, now
            self._pending.append(req)
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result

    # -- the writer thread -----------------------------------------------------------------------
    def _take(self) -> list[_Request] | None:
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            if self._gap < self.linger_s:
                # Requests are arriving less than a linger apart: wait that long for more, so the
                # group is bigger. Each transaction costs a commit and a few statements of
                # interpreter time whatever its size, and that time is taken from the forward
                # pass. At low load (requests further apart) nobody waits.
                deadline = time.monotonic() + self.linger_s
                while len(self._pending) < self.max_group and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            group, seen, later = [], set(), []
            while self._pending and len(group) < self.max_group:
                r = self._pending.popleft()
                # Two requests for one job id in a group would see each other's rows half-written;
                # the second waits for the next group.
                (later if (r.kind, r.job_id) in seen else group).append(r)
                seen.add((r.kind, r.job_id))
            self._pending.extendleft(reversed(later))
            return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            try:
                self._write(group)
            except BaseException as e:
                if is_transient(e) or len(group) == 1:
                    for r in group:
                        r.error = e
                else:
                    log.warning("group of %d writes failed (%s); replaying them one by one", len(group), e)
                    for r in group:
                        self._replay(r)
            finally:
                for r in group:
                    r.done.set()

    def _replay(self, r: _Request) -> None:
        try:
            kw = dict(r.kw)
            job_id = kw.pop("job_id")
            fn = jobs.claim_job if r.kind == "claim" else jobs.save_result
            r.result = fn(job_id, url=self.url, **kw)
        except BaseException as e:
            r.error = e

    def _write(self, group: list[_Request]) -> None:
        claims = [r for r in group if r.kind == "claim"]
        saves = [r for r in group if r.kind == "save"]
        results: dict[int, Any] = {}
        with write_connection(self.url) as conn:
            if claims:
                results.update(_claim_many(conn, claims))
            if saves:
                results.update(_save_many(conn, saves))
        self.groups += 1
        for r in group:
            r.result = results[id(r)]


def _claim_many(conn: Connection, claims: list[_Request]) -> dict[int, Claim]:
    now = utcnow()
    rows = [dict(id=r.job_id, status=JOB_RUNNING, model=r.kw["model"], prompt_name=r.kw["prompt_name"],
                 dims=r.kw["dims"], normalize=r.kw["normalize"], count=r.kw["count"], worker=r.kw["worker"],
                 attempts=1, batch_ids=[], created_at=now) for r in claims]
    created = {row[0] for row in conn.execute(_insert_ignore(conn), rows)}
    state = {job_id: (JOB_RUNNING, 1) for job_id in created}
    again = [r for r in claims if r.job_id not in created]
    if again:  # redeliveries: count the attempt unless an earlier one settled the job
        conn.execute(update(JOBS).where(JOBS.c.id == bindparam("b_id"), JOBS.c.status == JOB_RUNNING)
                     .values(attempts=JOBS.c.attempts + 1, worker=bindparam("b_worker")),
                     [dict(b_id=r.job_id, b_worker=r.kw["worker"]) for r in again])
        state.update((row[0], (row[1], row[2])) for row in conn.execute(
            select(JOBS.c.id, JOBS.c.status, JOBS.c.attempts).where(JOBS.c.id.in_([r.job_id for r in again]))))
    cached = _lookup(conn, [h for r in claims for h in r.kw["hashes"]])
    out = {}
    for r in claims:
        status, attempts = state[r.job_id]
        mine = {h: cached[h] for h in r.kw["hashes"] if h in cached} if status == JOB_RUNNING else {}
        out[id(r)] = Claim(status, attempts, mine)
    return out


def _save_many(conn: Connection, saves: list[_Request]) -> dict[int, bool]:
    pg = conn.dialect.name == "postgresql"
    if pg:
        for dim in {int(r.kw["vectors"].shape[1]) for r in saves}:
            ensure_hnsw_index(conn, dim)
    q = select(JOBS.c.id, JOBS.c.status).where(JOBS.c.id.in_([r.job_id for r in saves]))
    if pg:
        q = q.with_for_update()  # a concurrent duplicate in another process waits, then finds them done
    existing = dict(conn.execute(q).all())
    todo = [r for r in saves if existing.get(r.job_id) != JOB_DONE]
    if todo:
        now = utcnow()

        def done(r: _Request) -> dict:
            return dict(status=JOB_DONE, error=None, dim=int(r.kw["vectors"].shape[1]), count=len(r.kw["texts"]),
                        batch_ids=r.kw["batch_ids"], finished_at=now, worker=r.kw["worker"])

        present = [r for r in todo if r.job_id in existing]
        if present:
            conn.execute(update(JOBS).where(JOBS.c.id == bindparam("b_id"))
                         .values({k: bindparam(f"b_{k}") for k in done(present[0])}),
                         [{"b_id": r.job_id, **{f"b_{k}": v for k, v in done(r).items()}} for r in present])
        missing = [r for r in todo if r.job_id not in existing]
        if missing:  # claim rows deleted meanwhile; write them anyway
            conn.execute(insert(JOBS), [dict(id=r.job_id, model=r.kw["model"], normalize=True, attempts=1,
                                             created_at=now, **done(r)) for r in missing])
        conn.execute(insert(EMBEDDINGS), [
            dict(job_id=r.job_id, idx=i, text=t, content_hash=h, model=r.kw["model"], dim=int(r.kw["vectors"].shape[1]),
                 vector=v)
            for r in todo for i, (t, h, v) in enumerate(zip(r.kw["texts"], r.kw["hashes"], r.kw["vectors"]))])
        # Timings are taken last, just before the commit, so they cover the writing.
        conn.execute(insert(METRICS), [dict(job_id=r.job_id, created_at=now, **r.kw["metrics"]()) for r in todo])
    written = {id(r) for r in todo}
    return {id(r): id(r) in written for r in saves}
