"""The gateway's side of the queue: enqueue `embed` jobs, wait for them, read the queue's depth, and
learn which models the running workers serve. Everything here blocks; the app calls it from
threads, never on the event loop.

Waiting: `AsyncResult.get` in a thread of the gateway's wait pool (EMBEDQ_HTTP_WAIT_THREADS), the
job submitted from that same thread (Celery's result backends are per thread). A job is the
`embed` task, sent exactly as `embed.delay` sends it, with a job id chosen here. A job submitted
with POST /v1/jobs is marked QUEUED in Celery's result backend before its message is published
(one submitted with POST /v1/embeddings only when its wait runs out), so GET /v1/jobs/ID can tell
a job still waiting in the queue (it has no database row until a worker claims it) from an
unknown id. The worker's own result overwrites the mark.

Queue depth: messages waiting in the broker queues a model's workers consume, not yet taken by a
worker (kombu's passive queue_declare: LLEN on Redis, a COUNT on the embedded broker), summed:
EMBEDQ_QUEUE and, where jobs are routed by model, its QUEUE@NAME queues. Workers prefetch what
their buffers hold, so this is the backlog beyond them. Cached for DEPTH_TTL_S.

Workers: the `embedq_info` remote-control command on brokers that broadcast (Redis), answered by
every worker however long its queue; the `embedq.info` task through the queue on the embedded
broker (worker/info.py). Only workers consuming the gateway's queues (EMBEDQ_QUEUE or QUEUE@NAME)
count. Cached for
WORKERS_TTL_S (NO_WORKERS_TTL_S when none answered), refreshed in the background while a stale
answer is still served.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.utils import uuid

from schemas import EmbedRequest, ServedModel
from schemas.settings import Settings

log = logging.getLogger("embedq.gateway")

QUEUED = "QUEUED"           # our mark in the result backend for a job published but not yet taken
DEPTH_TTL_S = 0.25
WORKERS_TTL_S = 5.0
NO_WORKERS_TTL_S = 1.0
BROADCAST_TIMEOUT_S = 0.5   # replies to embedq_info are collected for this long
INFO_TASK_TIMEOUT_S = 2.0   # the embedded broker: how long one embedq.info task is waited for
POLL_INTERVAL_S = 0.05      # result backends that are polled (the embedded SQLite one)


def broadcasts(broker_url: str) -> bool:
    """Whether this broker carries remote-control broadcasts between processes (the embedded
    SQLite broker does not)."""
    return broker_url.startswith(("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://"))


@dataclass(frozen=True)
class WorkerModel:
    """A model as the workers consuming our queue serve it."""

    name: str
    aliases: frozenset[str]
    dim: int
    dims_allowed: tuple[int, ...]
    max_tokens: int | None
    prompts: dict
    workers: tuple[str, ...]
    queues: tuple[str, ...] = ()   # the broker queues its workers consume (ours only)
    architecture: str | None = None
    weight_type: str | None = None

    def served(self) -> ServedModel:
        return ServedModel(name=self.name, aliases=self.aliases, dim=self.dim, dims_allowed=self.dims_allowed,
                           prompts=self.prompts, max_tokens=self.max_tokens)

    def accepts(self, model: str) -> bool:
        return model == self.name or model in self.aliases


@dataclass
class Snapshot:
    models: list[WorkerModel] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    at: float = 0.0
    error: str | None = None

    def find(self, model: str | None) -> WorkerModel | None:
        if model is None:
            return self.models[0] if len(self.models) == 1 else None
        return next((m for m in self.models if m.accepts(model)), None)


def group_models(infos: list[dict]) -> list[WorkerModel]:
    """Worker answers (worker/info.py served_info) -> one entry per model, its workers and queues listed."""
    by_name: dict[str, dict] = {}
    for i in infos:
        m = by_name.setdefault(i["model"], {**i, "workers": [], "queues": set()})
        m["workers"].append(i["worker"])
        m["queues"].update(i.get("queues") or ())
    return [WorkerModel(name=m["model"], aliases=frozenset(m.get("aliases") or ()), dim=int(m["dim"]),
                        dims_allowed=tuple(m.get("dims_allowed") or (m["dim"],)), max_tokens=m.get("max_tokens"),
                        prompts=dict(m.get("prompts") or {}), workers=tuple(sorted(m["workers"])),
                        queues=tuple(sorted(m["queues"])),
                        architecture=m.get("architecture"), weight_type=m.get("weight_type"))
            for m in sorted(by_name.values(), key=lambda m: m["model"])]


class JobTimeout(Exception):
    """The job did not finish within the wait; it goes on and can be fetched later."""


class Broker:
    """Queue operations for one gateway (one queue, one Celery app configured from `settings`)."""

    def __init__(self, settings: Settings):
        from worker.app import app
        from worker.tasks import embed

        self.settings = settings
        self.app = app
        self.embed = embed
        self.queue = settings.queue
        self.broadcasts = broadcasts(settings.broker())
        self._depth: dict[tuple[str, ...], tuple[float, int]] = {}
        self._depth_lock = threading.Lock()
        self._snapshot = Snapshot()
        self._snapshot_lock = threading.Lock()
        self._refreshing = False
        self._ask_lock = threading.Lock()
        self._info_pending = None  # the embedded broker: the one embedq.info task in flight

    # -- jobs ---------------------------------------------------------------------------------------
    def submit(self, req: EmbedRequest, job_id: str | None = None, mark: bool = True):
        """Publish `req` as an embed job (the same message as embed.delay); returns its AsyncResult.
        `mark`: mark it QUEUED first (a caller that waits for the job marks it only if it gives up)."""
        job_id = job_id or uuid()
        if mark:
            self.mark_queued(job_id)
        kwargs = dict(model=req.model, prompt_name=req.prompt_name, dims=req.dims, normalize=req.normalize)
        if req.overflow != "truncate":  # the default stays out, so such a message is what it always was
            kwargs.update(overflow=req.overflow, overflow_overlap=req.overflow_overlap)
        return self.embed.apply_async(args=[list(req.texts)], kwargs=kwargs, task_id=job_id)

    def mark_queued(self, job_id: str) -> None:
        """Mark a published job QUEUED unless its result is in already (KV backends such as Redis
        never overwrite a success anyway)."""
        from celery import states

        if self.app.AsyncResult(job_id).state not in states.READY_STATES:
            self.app.backend.store_result(job_id, {"queued_at": time.time()}, QUEUED)

    def wait(self, result, timeout: float) -> dict:
        """The job's summary; raises JobTimeout past `timeout`, or the task's own error."""
        try:
            return result.get(timeout=max(0.001, timeout), interval=POLL_INTERVAL_S, propagate=True)
        except CeleryTimeout:
            # Stop listening for it (Redis: unsubscribe); the job itself goes on.
            with contextlib.suppress(Exception):
                result.backend.remove_pending_result(result)
            raise JobTimeout(result.id) from None

    def state(self, job_id: str) -> tuple[str, object]:
        """Celery's state of a job id and its result: QUEUED (our mark), PENDING (unknown to the
        backend), SUCCESS, FAILURE, ..."""
        r = self.app.AsyncResult(job_id)
        return r.state, r.result

    # -- queue depth --------------------------------------------------------------------------------
    def ours(self, queue: str) -> bool:
        """EMBEDQ_QUEUE itself, or one of its per-model queues QUEUE@NAME (worker/routing.py)."""
        return queue == self.queue or queue.startswith(self.queue + "@")

    def queue_depth(self, queues: tuple[str, ...] | None = None, max_age: float = DEPTH_TTL_S,
                    blocking: bool = True) -> int | None:
        """Messages waiting in `queues` (default: EMBEDQ_QUEUE), at most `max_age` old; None
        instead of asking the broker when not `blocking` (the event loop's fast path)."""
        key = tuple(sorted(queues or (self.queue,)))
        now = time.monotonic()
        with self._depth_lock:
            hit = self._depth.get(key)
            if hit is not None and now - hit[0] < max_age:
                return hit[1]
        if not blocking:
            return None
        depth = sum(self.depths(key).values())
        with self._depth_lock:
            self._depth[key] = (time.monotonic(), depth)
        return depth

    def depths(self, queues: tuple[str, ...]) -> dict[str, int]:
        """Messages waiting in each queue, read now."""
        from kombu.exceptions import ChannelError

        out = {}
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
            for q in queues:
                try:
                    out[q] = int(conn.default_channel.queue_declare(queue=q, passive=True).message_count)
                except ChannelError:  # Redis: no list yet, nothing ever queued
                    out[q] = 0
        return out

    def all_queues(self) -> tuple[str, ...]:
        """EMBEDQ_QUEUE and every queue of ours the answering workers consume."""
        snap = self._snapshot
        return tuple(sorted({self.queue, *(q for m in snap.models for q in m.queues)}))

    # -- workers ------------------------------------------------------------------------------------
    def snapshot(self, max_age: float | None = None, blocking: bool = True) -> Snapshot | None:
        """The models served on our queue, at most `max_age` seconds old (default: the TTLs).

        A stale answer that found workers is returned at once while one thread refreshes it;
        otherwise the caller waits for a fresh one (or gets None when not `blocking`).
        """
        with self._snapshot_lock:
            snap = self._snapshot
            ttl = max_age if max_age is not None else (WORKERS_TTL_S if snap.models else NO_WORKERS_TTL_S)
            age = time.monotonic() - snap.at
            if snap.at and age < ttl:
                return snap
            if snap.models and age < 3 * WORKERS_TTL_S and max_age is None:
                if not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self._refresh, name="embedq-gateway-workers", daemon=True).start()
                return snap
        if not blocking:
            return None
        asked = time.monotonic()
        with self._ask_lock:  # one question at a time; those who waited take its answer
            if self._snapshot.at >= asked:
                return self._snapshot
            return self._ask()

    def _refresh(self) -> None:
        with self._ask_lock:
            self._ask()

    def _ask(self) -> Snapshot:
        try:
            infos = self._ask_workers()
            snap = Snapshot(group_models(infos), sorted({i["worker"] for i in infos}), time.monotonic())
        except Exception as e:
            log.warning("asking the workers what they serve failed: %s: %s", type(e).__name__, e)
            snap = Snapshot(at=time.monotonic(), error=f"{type(e).__name__}: {e}")
        with self._snapshot_lock:
            self._snapshot = snap
            self._refreshing = False
        return snap

    def _ask_workers(self) -> list[dict]:
        if self.broadcasts:
            replies = self.app.control.broadcast("embedq_info", reply=True, timeout=BROADCAST_TIMEOUT_S)
            infos = [r for reply in replies or () for r in reply.values() if isinstance(r, dict) and r.get("ready")]
            infos = [{**i, "queues": [q for q in i.get("queues", ()) if self.ours(q)]} for i in infos]
            return [i for i in infos if i["queues"]]
        # The embedded broker: one embedq.info task at a time (a slow worker is not sent a second).
        pending = self._info_pending
        if pending is None:
            pending = self._info_pending = self.app.send_task(
                "embedq.info", queue=self.queue, expires=60, ignore_result=False)
        try:
            info = pending.get(timeout=INFO_TASK_TIMEOUT_S, interval=POLL_INTERVAL_S, propagate=True)
        except CeleryTimeout:
            return []
        except Exception:
            self._info_pending = None
            raise
        self._info_pending = None
        with contextlib.suppress(Exception):
            pending.forget()
        return [info] if info.get("ready") else []

    def broker_ok(self) -> tuple[bool, int | None, str | None]:
        try:
            return True, self.queue_depth(self.all_queues(), max_age=0), None
        except Exception as e:
            return False, None, f"{type(e).__name__}: {e}"
