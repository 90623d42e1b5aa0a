"""The client's side of delivery: the ledger it writes before publishing, and one clear error when
the broker cannot be reached."""
from __future__ import annotations

import threading

from schemas.settings import get_settings

from . import routing
from .delivery import Ledger


class BrokerUnavailable(ConnectionError):
    """The broker could not be reached to enqueue the job (nothing was enqueued)."""

    @classmethod
    def from_error(cls, e: BaseException) -> "BrokerUnavailable":
        s = get_settings()
        from kombu.utils.url import maybe_sanitize_url

        first = (str(e).splitlines() or [""])[0][:200]
        return cls(f"cannot enqueue: the broker at {maybe_sanitize_url(s.broker())} does not answer "
                   f"({type(e).__name__}: {first})")


def is_connection_error(e: BaseException) -> bool:
    import kombu.exceptions
    import redis.exceptions

    if isinstance(e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                      kombu.exceptions.OperationalError, ConnectionError, TimeoutError)):
        return True
    # Celery's result consumer gives up reconnecting with this one.
    return isinstance(e, RuntimeError) and "must be restarted" in str(e)


_clients: dict[str, object] = {}
_lock = threading.Lock()


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def redis_client(url: str):
    """One redis-py client per broker URL and process, with short timeouts (no hangs)."""
    with _lock:
        c = _clients.get(url)
        if c is None:
            import redis

            c = _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5,
                                                     health_check_interval=10)
        return c


def client_ledger() -> Ledger | None:
    """The ledger jobs are recorded in before publishing, or None for brokers without one."""
    s = get_settings()
    url = s.broker()
    if not is_redis(url):
        return None
    return Ledger(redis_client(url), s.queue)


_liveness: dict[str, routing.Liveness] = {}


def route(model: str | None, check: bool = True) -> str:
    """The queue for a job asking for `model`; on Redis, ModelNotServed at once if no live worker
    serves it (unless `check` is off: the caller waits for a worker to come)."""
    s = get_settings()
    queue = routing.queue_for(s.queue, model)
    url = s.broker()
    if model is None or not check or not is_redis(url):
        return queue
    client = redis_client(url)
    with _lock:
        live = _liveness.get(url)
        if live is None:
            live = _liveness[url] = routing.Liveness(client)
    if not live.served(queue):
        raise routing.ModelNotServed(
            f"no running worker serves model {model!r} (queue {queue}); start one with `embedq worker --model "
            f"{model}`, or pass wait_for_worker=True to apply_async to queue the job for a worker yet to come")
    return queue
