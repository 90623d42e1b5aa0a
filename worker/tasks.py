"""The client-facing task: `from worker.tasks import embed; embed.delay(texts)`.

embed(texts, model=None, prompt_name=None, dims=None, normalize=True) -> summary dict
    {job_id, status, count, dim, model, batch_ids, latency_ms, cache_hits}
The job id is the Celery task id; vectors and metrics are read with storage.get_vectors/get_metrics.
A job rejected by validation raises schemas.InvalidJob, one that cannot be computed JobFailed; both
are stored as failed with the reason.
"""
from __future__ import annotations

import time

from celery import Task

from schemas import InvalidJob
from storage import is_transient

from .app import app
from .job_runner import ENQUEUED_HEADER, JobFailed, record_failure, run_job
from .runtime import get_runtime


class EmbedTask(Task):
    # Database outages are retried in-process first (storage.with_retry); these broker-level
    # retries cover longer ones before the job is given up as failed.
    max_retries = 3

    def apply_async(self, args=None, kwargs=None, **options):
        # The enqueue time travels in a header (not an argument) so the task signature stays the
        # user's; it is what queue_wait_ms is measured from.
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault(ENQUEUED_HEADER, time.time())
        return super().apply_async(args, kwargs, headers=headers, **options)


@app.task(bind=True, base=EmbedTask, name="embedq.embed", acks_late=True, reject_on_worker_lost=True,
          throws=(InvalidJob, JobFailed))
def embed(self, texts, model=None, prompt_name=None, dims=None, normalize=True):
    rt = get_runtime()
    try:
        return run_job(rt, self.request, texts, model=model, prompt_name=prompt_name, dims=dims, normalize=normalize)
    except Exception as exc:
        # The one place that decides what a job's error means: a transient database error is
        # retried through the broker until max_retries; anything else fails the job, recorded.
        error = exc
        if is_transient(exc):
            if self.request.retries < self.max_retries:
                raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
            error = JobFailed(f"database unavailable after {self.max_retries} retries: {type(exc).__name__}: {exc}")
        elif not isinstance(exc, (InvalidJob, JobFailed)):
            error = JobFailed(f"{type(exc).__name__}: {exc}")
        record_failure(rt, self.request.id, error, texts=texts, model=model)
        if error is exc:
            raise
        raise error from exc


@app.task(bind=True, name="embedq.ping", acks_late=True)
def ping(self, payload=None):
    """A job that computes and stores nothing: the broker, worker, event and result round trip alone,
    with the same settings as `embed`. `embedq bench service` measures Celery's own per-job cost
    with it; it also serves as a health check (`ping.delay().get(timeout=5)`)."""
    return dict(job_id=self.request.id, status="pong", worker=self.request.hostname, payload=payload)


# What the worker serves, for the HTTP gateway (the embedq.info task and the embedq_info control command).
from . import info as _info  # noqa: E402,F401
