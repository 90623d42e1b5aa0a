"""The worker's message consumer: Celery's, except that an embed message it refuses (a content type
it does not accept, a body it cannot decode, a malformed task message) becomes a failed job with its
reason, where the message carries a job id, instead of only a log line. The client's result is
marked failed too, so it does not wait out its own timeout."""
from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer

from schemas import InvalidJob

from .job_runner import record_failure
from .runtime import current_runtime

log = logging.getLogger("embedq.worker")

EMBED_TASK = "embedq.embed"


class Consumer(CeleryConsumer):
    def on_invalid_task(self, body, message, exc):
        self._record(message, f"message refused: {type(exc).__name__}: {exc}")
        return super().on_invalid_task(body, message, exc)

    def on_decode_error(self, message, exc):
        self._record(message, f"message could not be decoded: {type(exc).__name__}: {exc}")
        return super().on_decode_error(message, exc)

    def _record(self, message, reason: str) -> None:
        headers = message.headers or {}
        job_id, task = headers.get("id"), headers.get("task")
        if not job_id or task != EMBED_TASK:
            return
        error = InvalidJob(reason[:2000])
        try:
            # The client's result first: once the row is there, so is the outcome it waits for.
            self.app.backend.mark_as_failure(job_id, error)
            rt = current_runtime()
            if rt is not None and record_failure(rt, job_id, error) and rt.guard is not None:
                rt.guard.release(job_id, settled=True)
        except Exception:  # never let bookkeeping take the consumer down
            log.exception("could not record the refused message of job %s", job_id)
