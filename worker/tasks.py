"""The client-facing task: `from worker.tasks import embed; embed.delay(texts)`.

embed(texts, model=None, prompt_name=None, dims=None, normalize=True) -> summary dict
    {job_id, status, count, dim, model, batch_ids, latency_ms, cache_hits}
The job id is the Celery task id; vectors and metrics are read with storage.get_vectors/get_metrics.
A job rejected by validation raises schemas.InvalidJob (and is stored as failed with the reason).
"""
from __future__ import annotations

import time

from celery import Task

from schemas import InvalidJob
from storage.retry import is_transient

from .app import app
from .job_runner import ENQUEUED_HEADER, JobFailed, run_job


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
    try:
        return run_job(self.request, texts, model=model, prompt_name=prompt_name, dims=dims, normalize=normalize)
    except Exception as e:
        if not is_transient(e):
            raise
        if self.request.retries >= self.max_retries:
            import storage
            from schemas.settings import get_settings

            reason = f"database unavailable after {self.max_retries} retries: {type(e).__name__}: {e}"
            try:
                storage.mark_failed(self.request.id, reason[:2000], url=get_settings().database())
            except Exception:
                pass  # the database is what is failing; Celery's own FAILURE state still records it
            raise JobFailed(reason) from e
        raise self.retry(exc=e, countdown=min(60, 2 ** (self.request.retries + 1))) from e


@app.task(bind=True, name="embedq.ping", acks_late=True)
def ping(self, payload=None):
    """A job that computes and stores nothing: the broker, worker, event and result round trip alone,
    with the same settings as `embed`. `embedq bench service` measures Celery's own per-job cost
    with it; it also serves as a health check (`ping.delay().get(timeout=5)`)."""
    return dict(job_id=self.request.id, status="pong", worker=self.request.hostname, payload=payload)
