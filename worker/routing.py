"""Jobs are routed by model: each name a model can be asked by has a queue of its own.

A worker consumes the queue of every alias of the model it serves (its name, the name without a
":q8_0"-style variant, the file's stem, name and path), and the plain queue `EMBEDQ_QUEUE` too when it
serves the deployment's default model (a job that names no model goes there). So
`embed.delay(texts, model="embeddinggemma-300m")` lands where that model is served, whichever of its
names the client uses, and several models share one broker and one database.

On Redis each worker also keeps its queues marked alive (a sorted set per queue: worker name ->
expiry), so a client asking for a model nobody serves is told at once (ModelNotServed) instead of
its job waiting forever; `embed.apply_async(..., wait_for_worker=True)` enqueues it anyway, for a
worker that is about to start. The embedded broker has no such marks (one machine, one model).
"""
from __future__ import annotations

import re
import threading
import time

ALIVE_TTL_S = 20.0


class ModelNotServed(LookupError):
    """No running worker serves the model a job asks for."""


def alias_queue(base: str, alias: str) -> str:
    """The queue of one name of a model (queue names keep to a safe alphabet; a path becomes one)."""
    return f"{base}@{re.sub(r'[^A-Za-z0-9._-]+', '_', alias).strip('_')[:200]}"


def queue_for(base: str, model: str | None) -> str:
    return base if model is None else alias_queue(base, str(model))


def worker_queues(base: str, aliases, serves_default: bool) -> list[str]:
    queues = sorted({alias_queue(base, a) for a in aliases})
    return ([base] if serves_default else []) + queues


def alive_key(queue: str) -> str:
    return f"embedq:alive:{queue}"


def mark_alive(client, queues: list[str], worker: str, ttl_s: float = ALIVE_TTL_S) -> None:
    expiry = time.time() + ttl_s
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.zadd(alive_key(q), {worker: expiry})
        pipe.zremrangebyscore(alive_key(q), "-inf", time.time())
    pipe.execute()


def mark_gone(client, queues: list[str], worker: str) -> None:
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.zrem(alive_key(q), worker)
    pipe.execute()


class Liveness:
    """The client's view: is anyone serving this queue? A yes is remembered for a moment, so a stream
    of jobs costs one Redis call every `memo_s`, not one per job."""

    def __init__(self, client, memo_s: float = 2.0):
        self.client = client
        self.memo_s = memo_s
        self._memo: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def served(self, queue: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hit = self._memo.get(queue)
            if hit is not None and now - hit[0] < self.memo_s:
                return hit[1]
        alive = self.client.zcount(alive_key(queue), time.time(), "+inf") > 0
        if alive:  # only a yes is remembered: a worker that has just started is found at once
            with self._lock:
                self._memo[queue] = (now, alive)
        return alive
