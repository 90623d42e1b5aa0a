"""Delivery guarantee on a Redis broker: a ledger of unsettled jobs that a sweeper re-publishes.

Why: kombu's Redis transport pops a message (BRPOP) before it records it as unacknowledged, so a
message on its way to a worker that dies (in its socket buffer, or popped and not yet recorded)
exists nowhere: no queue, no `unacked` hash, no visibility timeout brings it back. And a job that
*was* recorded as unacknowledged by a killed worker waits out the whole visibility timeout (10
minutes by default, which must exceed the longest batch) before anyone retries it.

How: the client writes each job into a ledger (a hash of job id -> what is needed to publish it
again, and a sorted set of job id -> last sign of life) in the same round trip before it
publishes the message. A worker touches the jobs it holds (received, buffered or computing) every
few seconds, and removes a job from the ledger once it is settled (done or failed, committed). A
sweeper, run by one worker at a time, re-publishes every job whose last sign of life is older
than `stale_s` and that is not waiting in the queue. Job ids make a second delivery harmless: a
job already stored is answered from the database, never written twice. So a job is lost only if
Redis itself loses the ledger (run it with AOF; README says what a restart without it loses).

The queue check reads the queue (bounded); while the queue is longer than that bound, the sweep
waits for it to drain rather than risk publishing copies of jobs that are merely queued.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Iterable

from . import routing

log = logging.getLogger("embedq.delivery")

QUEUE_SCAN_LIMIT = 2000   # messages read to tell a queued job from a lost one


def ledger_keys(queue: str) -> tuple[str, str]:
    return f"embedq:ledger:{queue}", f"embedq:ledger-seen:{queue}"


class Ledger:
    """The ledger of one queue on one Redis server (`client` is a redis.Redis)."""

    def __init__(self, client, queue: str):
        self.client = client
        self.queue = queue
        self.jobs_key, self.seen_key = ledger_keys(queue)

    def record(self, job_id: str, args: list, kwargs: dict, headers: dict, queue: str | None = None) -> None:
        entry = json.dumps({"args": args, "kwargs": kwargs, "headers": headers, "queue": queue or self.queue})
        self.client.pipeline(transaction=False).hset(self.jobs_key, job_id, entry) \
            .zadd(self.seen_key, {job_id: time.time()}).execute()

    def touch(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            # XX: only jobs still in the ledger; a job settled meanwhile must not come back.
            self.client.zadd(self.seen_key, {i: time.time() for i in ids}, xx=True)

    def settle(self, *job_ids: str) -> None:
        if job_ids:
            self.client.pipeline(transaction=False).hdel(self.jobs_key, *job_ids) \
                .zrem(self.seen_key, *job_ids).execute()

    def stale(self, older_than_s: float, limit: int = 500) -> list[str]:
        cutoff = time.time() - older_than_s
        return [i.decode() if isinstance(i, bytes) else i
                for i in self.client.zrangebyscore(self.seen_key, "-inf", cutoff, start=0, num=limit)]

    def entry(self, job_id: str) -> dict | None:
        raw = self.client.hget(self.jobs_key, job_id)
        return None if raw is None else json.loads(raw)

    def queued_ids(self, queues: Iterable[str]) -> set[str] | None:
        """Ids of the jobs waiting in these queues, or None when they are too long to read."""
        queues = sorted(set(queues))
        if sum(self.client.llen(q) for q in queues) > QUEUE_SCAN_LIMIT:
            return None
        ids = set()
        for q in queues:
            for raw in self.client.lrange(q, 0, QUEUE_SCAN_LIMIT):
                try:
                    ids.add(json.loads(raw)["headers"]["id"])
                except (ValueError, KeyError, TypeError):
                    continue
        return ids

    def __len__(self) -> int:
        return int(self.client.hlen(self.jobs_key))


class Guard:
    """A worker's part: vouch for the jobs it holds, remove settled ones from the ledger, and (one
    worker at a time) sweep the ledger.

    Its Redis work runs on its own thread, in batches once per `flush_s`, so it costs a job no round
    trip of its own: a job settled but not yet removed when the worker dies is published again and
    answered from the database; a job received but not yet vouched for was touched by the sweeper
    while it was queued (see sweep), so it looks alive for at least `stale_s - interval_s` more.
    """

    def __init__(self, ledger: Ledger, republish: Callable[[str, dict], None], name: str,
                 interval_s: float = 5.0, stale_s: float = 30.0, flush_s: float = 0.5, queues: list[str] = ()):
        self.ledger = ledger
        self.queues = list(queues)  # marked alive (worker/routing.py) with every heartbeat
        self.republish = republish
        self.name = name
        self.interval_s = interval_s
        self.stale_s = stale_s
        self.flush_s = flush_s
        self.held: set[str] = set()
        self._fresh: list[str] = []
        self._settled: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.republished = 0
        self._thread = threading.Thread(target=self._run, name="embedq-delivery", daemon=True)

    def start(self) -> "Guard":
        if self.queues:  # at once: a client may ask for this model as soon as the worker is up
            try:
                routing.mark_alive(self.ledger.client, self.queues, self.name,
                                   ttl_s=max(routing.ALIVE_TTL_S, 3 * self.interval_s))
            except Exception as e:  # the broker is down: the first beat after it is back marks them
                log.warning("delivery guard: cannot mark queues alive yet: %s: %s", type(e).__name__, str(e)[:200])
        self._thread.start()
        return self

    def hold(self, job_id: str) -> None:
        with self._lock:
            self.held.add(job_id)
            self._fresh.append(job_id)

    def release(self, job_id: str, settled: bool) -> None:
        with self._lock:
            self.held.discard(job_id)
            if settled:
                self._settled.append(job_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            self._flush(touch_all=False)
        except Exception as e:  # broker down at shutdown: the sweeper republishes what it must
            log.warning("delivery guard: final flush failed: %s: %s", type(e).__name__, str(e)[:200])
        if self.queues:
            try:
                routing.mark_gone(self.ledger.client, self.queues, self.name)
            except Exception:  # the marks expire by themselves (ALIVE_TTL_S)
                pass

    def _flush(self, touch_all: bool) -> None:
        with self._lock:
            fresh, settled = self._fresh, self._settled
            self._fresh, self._settled = [], []
            held = list(self.held) if touch_all else []
        try:
            self.ledger.touch(set(held) | {i for i in fresh if i in self.held})
            self.ledger.settle(*settled)
        except Exception:
            with self._lock:  # the broker may be down: keep them for the next flush
                self._fresh.extend(fresh)
                self._settled.extend(settled)
            raise

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.wait(self.flush_s):
            try:
                beat = time.monotonic() >= next_beat
                self._flush(touch_all=beat)
                if not beat:
                    continue
                next_beat = time.monotonic() + self.interval_s
                if self.queues:
                    routing.mark_alive(self.ledger.client, self.queues, self.name,
                                       ttl_s=max(routing.ALIVE_TTL_S, 3 * self.interval_s))
                # One sweeper per interval across all workers: the lock expires by itself, so a
                # sweeper that dies holding it blocks nobody for long.
                if self.ledger.client.set(f"{self.ledger.seen_key}:sweeper", self.name, nx=True,
                                          px=int(self.interval_s * 900)):
                    self.sweep()
            except Exception as e:  # the broker may be down; try again next time
                log.warning("delivery guard: %s: %s", type(e).__name__, str(e)[:200])

    def sweep(self) -> int:
        """Publish again the jobs that look lost; returns how many."""
        stale = self.ledger.stale(self.stale_s)
        if not stale:
            return 0
        entries = {i: self.ledger.entry(i) for i in stale}
        queued = self.ledger.queued_ids(e.get("queue", self.ledger.queue) for e in entries.values() if e)
        if queued is None:
            return 0
        # Queued jobs are alive, only waiting: touching them here keeps every queued job's last
        # sign of life within one interval, so a job a worker has just taken never looks lost.
        self.ledger.touch([i for i in stale if i in queued])
        lost = [i for i in stale if i not in queued]
        for job_id in lost:
            entry = entries[job_id] and self.ledger.entry(job_id)
            if entry is None:  # settled since we looked
                continue
            log.warning("job %s: no sign of life for %.0f s and not queued; publishing it again",
                        job_id, self.stale_s)
            self.ledger.touch([job_id])
            self.republish(job_id, entry)
            self.republished += 1
        return len(lost)
