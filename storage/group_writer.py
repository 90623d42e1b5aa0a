"""Group commit for a worker process: the claims and results of many jobs in one transaction.

A worker process has dozens of task threads, each needing two small write transactions per job
(claim, then store). Run one by one they queue on the database's write lock and pay statement
compilation and transaction overhead per job, and on a 2-core machine that interpreter time is
taken from the forward pass. Here task threads hand their request to one writer thread and wait;
the writer takes everything queued, executes each kind as a few multi-row statements in one
transaction, and hands each thread its own answer. Per-job semantics are unchanged: a job id is
still written once, a settled job is reported settled. If a group fails for a reason other than
a transient database error, its requests are replayed one by one (storage.writes), so one bad
request fails alone; a transient error is handed to every caller, whose retry policy applies.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .database import Database
from .retry import is_transient
from .writes import Claim, ClaimRequest, SaveRequest, claim, claim_many, save, save_many

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    request: ClaimRequest | SaveRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    @property
    def key(self) -> tuple[type, str]:
        return type(self.request), self.request.job_id


class GroupWriter:
    def __init__(self, db: Database, max_group: int = 512, linger_ms: float = 2.0):
        self.db = db
        self.max_group = max_group
        self.linger_s = max(0.0, linger_ms) / 1000.0
        self._gap = float("inf")  # seconds between the last two requests
        self._last_arrival = 0.0
        self._pending: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.groups = 0
        self._thread = threading.Thread(target=self._run, name="embedq-writer", daemon=True)
        self._thread.start()

    # -- the callers' side (same answers as storage.claim / storage.save) ------------------------
    def claim(self, request: ClaimRequest) -> Claim:
        return self._submit(request)

    def save(self, request: SaveRequest) -> bool:
        # persist_ms runs from here: waiting for the writer is part of persisting.
        request.submitted = time.monotonic()
        return self._submit(request)

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _submit(self, request: ClaimRequest | SaveRequest) -> Any:
        req = _Pending(request)
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
    def _take(self) -> list[_Pending] | None:
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
                (later if r.key in seen else group).append(r)
                seen.add(r.key)
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
                if is_transient(e):
                    for r in group:
                        r.error = e
                else:
                    log.warning("group of %d writes failed (%s); replaying them one by one", len(group), e)
                    for r in group:
                        self._replay(r)
            finally:
                for r in group:
                    r.done.set()

    def _replay(self, p: _Pending) -> None:
        try:
            r = p.request
            p.result = claim(self.db, r) if isinstance(r, ClaimRequest) else save(self.db, r)
        except BaseException as e:
            p.error = e

    def _write(self, group: list[_Pending]) -> None:
        claims = [p for p in group if isinstance(p.request, ClaimRequest)]
        saves = [p for p in group if isinstance(p.request, SaveRequest)]
        with self.db.write() as conn:
            claimed = claim_many(conn, [p.request for p in claims]) if claims else []
            saved = save_many(conn, [p.request for p in saves]) if saves else []
        self.groups += 1
        for p, result in zip(claims + saves, claimed + saved):
            p.result = result
