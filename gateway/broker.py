"""The gateway's side of the queue: enqueue `embed` jobs, wait for them, read the queue's depth, and
learn which models the running workers serve. Everything here blocks; the app calls it from
threads, never on the event loop.

Waiting: `AsyncResult.get` in a thread of the gateway's wait pool (EMBEDQ_HTTP_WAIT_THREADS), the
job submitted from that same thread (Celery's result backends are per thread). A job is the
`embed` task, sent exactly as `embed.delay` sends it, with a job id chosen here: before the message
is published the id is marked QUEUED in Celery's result backend, so GET /v1/jobs/ID can tell a job
still waiting in the queue (it has no database row until a worker claims it) from an unknown id.
The worker's own result overwrites the mark.

Queue depth: messages waiting in the broker queue, not yet taken by a worker (kombu's passive
queue_declare: LLEN on Redis, a COUNT on the embedded broker). Workers prefetch what their
buffers hold, so this is the backlog beyond them. Cached for DEPTH_TTL_S.

Workers: the `embedq_info` remote-control command on brokers that broadcast (Redis), answered by
every worker however long its queue; the `embedq.info` task through the queue on the embedded
broker (worker/info.py). Only workers consuming the gateway's queue count. Cached for
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
    architecture: str | None = None
    weight_type: str | None = None

    def served(self) -> ServedModel:
        return ServedModel(name=self.name, aliases=self.aliases, dim=self.dim, dims_allowed=self.dims_allowed,
                           prompts=self.prompts)

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
    """Worker answers (worker/info.py served_info) -> one entry per model, its workers listed."""
    by_name: dict[str, dict] = {}
    for i in infos:
        m = by_name.setdefault(i["model"], {**i, "workers": []})
        m["workers"].append(i["worker"])
    return [WorkerModel(name=m["model"], aliases=frozenset(m.get("aliases") or ()), dim=int(m["dim"]),
                        dims_allowed=tuple(m.get("dims_allowed") or (m["dim"],)), max_tokens=m.get("max_tokens"),
                        prompts=dict(m.get("prompts") or {}), workers=tuple(sorted(m["workers"])),
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
        self._depth: tuple[float, int] | None = None
        self._depth_lock = threading.Lock()
        self._snapshot = Snapshot()
        self._snapshot_lock = threading.Lock()
        self._refreshing = False
        self._ask_lock = threading.Lock()
        self._info_pending = None  # the embedded broker: the one embedq.info task in flight

    # -- jobs ---------------------------------------------------------------------------------------
    def submit(self, req: EmbedRequest, job_id: str | None = None):
        """Publish `req` as an embed job (the same message as embed.delay); returns its AsyncResult."""
        job_id = job_id or uuid()
        self.app.backend.store_result(job_id, {"queued_at": time.time()}, QUEUED)
        kwargs = dict(model=req.model, prompt_name=req.prompt_name, dims=req.dims, normalize=req.normalize)
        return self.embed.apply_async(args=[list(req.texts)], kwargs=kwargs, task_id=job_id)

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
    def queue_depth(self, max_age: float = DEPTH_TTL_S) -> int:
        now = time.monotonic()
        with self._depth_lock:
            if self._depth is not None and now - self._depth[0] < max_age:
                return self._depth[1]
        depth = self._read_depth()
        with self._depth_lock:
            self._depth = (time.monotonic(), depth)
        return depth

    def _read_depth(self) -> int:
        from kombu.exceptions import ChannelError

        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
            try:
                return int(conn.default_channel.queue_declare(queue=self.queue, passive=True).message_count)
            except ChannelError:  # Redis: no list yet, nothing ever queued
                return 0

    # -- workers ------------------------------------------------------------------------------------
    def snapshot(self, max_age: float | None = None) -> Snapshot:
        """The models served on our queue, at most `max_age` seconds old (default: the TTLs).

        A stale answer that found workers is returned at once while one thread refreshes it;
        otherwise the caller waits for a fresh one.
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
            return [i for i in infos if self.queue in i.get("queues", ())]
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
            return True, self.queue_depth(max_age=0), None
        except Exception as e:
            return False, None, f"{type(e).__name__}: {e}"
