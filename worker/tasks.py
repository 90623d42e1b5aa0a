"""The client-facing task: `from worker.tasks import embed; embed.delay(texts)`.

embed(texts, model=None, prompt_name=None, dims=None, normalize=True, overflow="truncate",
      overflow_overlap=None) -> summary dict
    {job_id, status, count, dim, model, batch_ids, latency_ms, cache_hits}
The job id is the Celery task id; vectors and metrics are read with storage.get_vectors/get_metrics.
A job rejected by validation raises schemas.InvalidJob, one that cannot be computed JobFailed; both
are stored as failed with the reason. `embed.delay` raises BrokerUnavailable within seconds when the
broker cannot be reached (it never hangs), and ModelNotServed at once when no running worker serves
the model asked for (worker/routing.py; `apply_async(..., wait_for_worker=True)` queues it anyway).
"""
from __future__ import annotations

import contextlib
import time

from celery import Task
from celery.signals import task_received
from celery.utils import uuid

from schemas import InvalidJob
from storage import is_transient

from . import metrics as _metrics
from .app import app
from .delivery_client import BrokerUnavailable, client_ledger, is_connection_error, route
from .job_runner import ENQUEUED_HEADER, JobFailed, record_failure, run_job
from .routing import ModelNotServed  # noqa: F401  (raised by embed.delay; importable from here)
from .runtime import current_runtime, get_runtime

# A job whose failure could not be recorded (the database was down past EMBEDQ_DB_OUTAGE_S) goes
# back to the broker with its reason under this keyword; its next delivery only records it.
FAILURE_KWARG = "_embedq_failed"


def _model_of(args, kwargs) -> str | None:
    model = (kwargs or {}).get("model")
    if model is None and args is not None and len(args) > 1:
        model = args[1]
    return model if isinstance(model, str) else None  # a malformed one fails validation in the worker


def _shown(texts):
    return f"<{len(texts)} texts>" if isinstance(texts, (list, tuple)) else f"<{type(texts).__name__}>"


class EmbedTask(Task):
    def apply_async(self, args=None, kwargs=None, **options):
        # The enqueue time travels in a header (not an argument) so the task signature stays the
        # user's; it is what queue_wait_ms is measured from. The job goes into the delivery
        # ledger (worker/delivery.py) before its message is published.
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault(ENQUEUED_HEADER, time.time())
        task_id = options.setdefault("task_id", uuid())
        wait_for_worker = options.pop("wait_for_worker", False)
        # What Flower and logs show of the arguments: never the users' texts, only how many.
        options.setdefault("argsrepr", repr([_shown(a) if i == 0 else a for i, a in enumerate(args or ())]))
        options.setdefault("kwargsrepr", repr({k: _shown(v) if k == "texts" else v for k, v in (kwargs or {}).items()}))
        ledger = client_ledger()
        try:
            if "queue" not in options:
                options["queue"] = route(_model_of(args, kwargs), check=not wait_for_worker)
            if ledger is not None:
                ledger.record(task_id, list(args or ()), dict(kwargs or {}), headers, queue=options["queue"])
            try:
                return super().apply_async(args, kwargs, headers=headers, **options)
            except BaseException:
                if ledger is not None:
                    with contextlib.suppress(Exception):  # best effort: the broker may be what failed
                        ledger.settle(task_id)  # never published: nothing to deliver again
                raise
        except Exception as e:
            if is_connection_error(e):
                raise BrokerUnavailable.from_error(e) from None
            raise


@app.task(bind=True, base=EmbedTask, name="embedq.embed", acks_late=True, reject_on_worker_lost=True,
          throws=(InvalidJob, JobFailed))
def embed(self, texts=None, model=None, prompt_name=None, dims=None, normalize=True, overflow="truncate",
          overflow_overlap=None, *extra, **unknown):
    rt = get_runtime()
    failed = unknown.pop(FAILURE_KWARG, None)
    settled = False
    try:
        if failed is not None:
            error = JobFailed(failed)
        elif extra or unknown:
            # Caught here rather than by Python's call: a TypeError there would leave no row.
            what = [f"{len(extra)} extra positional argument(s)"] if extra else []
            what += [f"unknown argument {k!r}" for k in sorted(unknown)]
            error = InvalidJob("; ".join(what) + "; embed takes texts, model, prompt_name, dims, normalize, "
                                                 "overflow, overflow_overlap")
        else:
            try:
                summary = run_job(rt, self.request, texts, model=model, prompt_name=prompt_name, dims=dims,
                                  normalize=normalize, overflow=overflow, overflow_overlap=overflow_overlap)
                settled = True
                return summary
            except Exception as exc:
                # The one place that decides what a job's error means: a database that stays
                # unreachable past its patience fails the job; anything else fails it at once.
                error = exc
                if is_transient(exc):
                    error = JobFailed(f"database unavailable for more than {rt.settings.db_outage_s:g} s: "
                                      f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                elif not isinstance(exc, (InvalidJob, JobFailed)):
                    error = JobFailed(f"{type(exc).__name__}: {exc}")
        if not record_failure(rt, self.request.id, error, texts=texts, model=model):
            # No row yet: the failure goes back to the broker and is recorded when the database
            # answers again, so a failed job is never without its row.
            kwargs = {**self.request.kwargs, FAILURE_KWARG: str(error)}
            raise self.retry(kwargs=kwargs, countdown=5, max_retries=None)
        _metrics.job_settled(rt.served.name, "invalid" if isinstance(error, InvalidJob) else "failed")
        settled = True
        raise error
    finally:
        if rt.guard is not None:
            rt.guard.release(self.request.id, settled)


@task_received.connect
def _hold(request=None, **_):
    # From the moment the worker has the message, its delivery guard vouches for the job.
    rt = current_runtime()
    if rt is not None and rt.guard is not None and request is not None and request.name == embed.name:
        rt.guard.hold(request.id)


@app.task(bind=True, name="embedq.ping", acks_late=True)
def ping(self, payload=None):
    """A job that computes and stores nothing: the broker, worker, event and result round trip alone,
    with the same settings as `embed`. `embedq bench service` measures Celery's own per-job cost
    with it; it also serves as a health check (`ping.delay().get(timeout=5)`)."""
    return dict(job_id=self.request.id, status="pong", worker=self.request.hostname, payload=payload)


# What the worker serves, for the HTTP gateway (the embedq.info task and the embedq_info control command).
from . import info as _info  # noqa: E402,F401
