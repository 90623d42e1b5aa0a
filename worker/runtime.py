"""Per-process state of a worker: the model (loaded once, memory-mapped), the coalescer and the
database writer."""
from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field

import storage
from schemas import JobLimits, ServedModel
from schemas.settings import Settings, get_settings

from . import routing
from .backend import EmbeddingBackend, NativeBackend
from .coalescer import Coalescer
from .delivery import Guard, Ledger
from .delivery_client import is_redis, redis_client

log = logging.getLogger("embedq.worker")


@dataclass
class Runtime:
    settings: Settings
    db: storage.Database
    backend: EmbeddingBackend
    served: ServedModel
    fingerprint: str
    coalescer: Coalescer
    writer: storage.GroupWriter
    limits: JobLimits
    name: str
    guard: Guard | None = None  # the delivery ledger's worker side (Redis brokers)
    queues: list[str] = field(default_factory=list)  # what this worker consumes (worker/routing.py)

    def close(self) -> None:
        if self.guard is not None:
            self.guard.close()
        self.coalescer.close()
        self.writer.close()


_runtime: Runtime | None = None
_lock = threading.Lock()


def start_runtime(settings: Settings | None = None, backend: EmbeddingBackend | None = None,
                  name: str | None = None) -> Runtime:
    """Load the model, migrate the database and start the coalescer for this process.

    `backend` lets a caller supply the runtime (the default wraps native.Model on EMBEDQ_MODEL).
    """
    global _runtime
    s = settings or get_settings()
    with _lock:
        if _runtime is not None:
            return _runtime
        if backend is None:
            log.info("loading model %s (threads=%s, activations=%s)", s.model, s.threads or "all", s.activations)
            backend = NativeBackend(s.model, threads=s.threads, activations=s.activations)
        db = storage.connect(s.database())
        served = backend.served()
        storage.with_retry(lambda: storage.register_model_file(db, backend.model_file()),
                           patience_s=s.db_outage_s, what="recording the model file")
        _runtime = Runtime(
            settings=s, db=db, backend=backend, served=served, fingerprint=backend.fingerprint,
            coalescer=Coalescer(backend, s.batch_tokens, s.batch_wait_ms, label=served.name),
            writer=storage.GroupWriter(db),
            limits=s.job_limits(),
            name=name or f"{socket.gethostname()}",
        )
        _runtime.queues = routing.worker_queues(s.queue, served.aliases, s.serves_default)
        if is_redis(s.broker()):
            ledger = Ledger(redis_client(s.broker()), s.queue)
            _runtime.guard = Guard(ledger, republish=_republish, name=_runtime.name, queues=_runtime.queues,
                                   interval_s=min(5.0, s.delivery_stale_s / 4), stale_s=s.delivery_stale_s).start()
        log.info("serving %s (dim %d) from %s; batches of <= %d tokens, wait <= %.1f ms",
                 served.name, served.dim, getattr(backend, "path", "?"), s.batch_tokens, s.batch_wait_ms)
        return _runtime


def get_runtime() -> Runtime:
    return _runtime or start_runtime()


def current_runtime() -> Runtime | None:
    """The runtime if this process started one (the worker), else None (a client)."""
    return _runtime


def _republish(job_id: str, entry: dict) -> None:
    from .tasks import embed

    embed.apply_async(entry["args"], entry["kwargs"], task_id=job_id, headers=entry["headers"],
                      queue=entry.get("queue"), wait_for_worker=True)


def stop_runtime() -> None:
    global _runtime
    with _lock:
        rt, _runtime = _runtime, None
    if rt is not None:
        rt.close()
