"""The Celery app, configured from the settings object (schemas/settings.py).

Reliability choices, all here so they are visible in one place:
* acks_late: a job's message is acknowledged after the task returns, i.e. after its vectors are
  committed; a worker that dies before that leaves the message unacknowledged.
* reject_on_worker_lost: if a pool process is killed, its job goes back to the queue instead of
  being marked failed.
* visibility_timeout: how long Redis waits for an acknowledgement before handing the message to
  another worker (this is what recovers jobs from a worker killed with SIGKILL). It must exceed
  the longest batch; the restore sweep runs often enough that a low timeout is honoured.
* the thread pool with `slots` threads: every in-flight job is a blocked thread feeding the
  coalescer; prefetch of one message per thread keeps the broker from handing one worker more
  jobs than it can buffer.
* task events only while Flower is watching (worker/events.py): they cost every job three
  publishes. Clients never send task-sent events: they would cost every enqueue a second publish
  for a PENDING state Flower can do without.
"""
from __future__ import annotations

import threading

from celery import Celery

from schemas.settings import Settings, get_settings

app = Celery("embedq", include=["worker.tasks"])

SHORT_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1.0}


def celery_config(s: Settings) -> dict:
    broker = s.broker()
    transport: dict = {"visibility_timeout": s.visibility_timeout_s}
    if broker.startswith(("redis://", "rediss://")):
        sweep = max(1, min(10, int(s.visibility_timeout_s // 4)))
        # The restore sweep runs under a Redis mutex that expires after 5 minutes by default: a
        # worker SIGKILLed while holding it stopped every other worker from restoring its jobs for
        # that long. A sweep takes milliseconds, so the mutex may expire soon.
        transport.update(unacked_restore_interval=sweep, unacked_restore_throttle=1, unacked_mutex_expire=10,
                         # A broker that is down or gone answers within seconds, never hangs a call.
                         socket_connect_timeout=2, socket_timeout=10, health_check_interval=5)
    transport_class = None  # kombu picks it from the URL's scheme
    if broker.startswith("sqla+"):
        # The embedded broker (worker/embedded_broker.py): kombu's SQLAlchemy transport, polled
        # faster. That transport hands every option to create_engine(), which rejects them, and it
        # has no visibility timeout anyway (unacked messages are restored when a worker shuts
        # down). Naming the transport class takes the URL without its "sqla+" prefix.
        transport = {}
        broker = broker.removeprefix("sqla+")
        transport_class = "worker.embedded_broker:Transport"
    return dict(
        # Always set, also to None: configure() may switch a process from the embedded broker.
        broker_transport=transport_class,
        broker_url=broker,
        result_backend=s.results(),
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue=s.queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_send_task_events=False,  # Flower turns them on while it watches (worker/events.py)
        worker_pool="threads",
        worker_concurrency=s.slots,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Messages the worker refuses become failed jobs with their reason (worker/consumer.py).
        worker_consumer="worker.consumer:Consumer",
        result_expires=7 * 24 * 3600,
        # An unreachable broker: a publish gives up after about 2 s (BrokerUnavailable), and so does
        # the result consumer's reconnect (Celery's default waits 20 s, then wants a restart).
        broker_connection_timeout=2,
        task_publish_retry_policy=SHORT_RETRY,
        result_backend_transport_options={"retry_policy": SHORT_RETRY},
        redis_socket_connect_timeout=2,
        redis_socket_timeout=10,
    )


def configure(settings: Settings | None = None) -> Celery:
    """(Re)apply settings to the app, dropping connections made under the old ones."""
    s = settings or get_settings()
    app.conf.update(celery_config(s))
    # Celery caches broker pools and result backends on first use and has no public way to drop
    # them; without this a client that reconfigures (tests, the benchmark) keeps the old URLs.
    # (The old pool is not closed: kombu's global pool registry hands the same object back for
    # an unchanged URL.)
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    app._backend_cache = None
    app._local = threading.local()
    return app


configure()
