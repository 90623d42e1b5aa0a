"""One embed job from message to committed rows.

Order matters for the guarantees: validate (a bad job fails alone, recorded), claim the job id (a
redelivered job that already finished is answered from the database, not recomputed), look up the
content-hash cache, send only the misses through the coalescer, then commit vectors + metrics in
one transaction. The task returns only after that commit, and acks_late acknowledges the message
only then.

Latency parts, all in milliseconds and disjoint, so total >= their sum:
  queue_wait: client's enqueue (message header) to the task starting on a worker (wall clocks of
              two machines: clamped at 0 if they disagree);
  batch_wait: time in the coalescing buffer that was not this job's own batches computing;
  tokenize, forward: of the batches the job rode in (summed if it was split);
  persist: writing the job's rows, up to the commit;
  total: enqueue to the commit. Whatever is left (validation, claim and cache lookup) is in total
         only.
"""
from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np

import storage
from schemas import InvalidJob, validate_job
from storage.retry import is_transient

from .runtime import get_runtime

log = logging.getLogger("embedq.worker")

ENQUEUED_HEADER = "embedq_enqueued_at"


class JobFailed(RuntimeError):
    """The job could not be completed; the message is the reason stored with it."""


def run_job(request, texts, model=None, prompt_name=None, dims=None, normalize=True) -> dict:
    """Run the job carried by Celery `request` (its id is the job id); returns the job summary."""
    t0 = time.monotonic()
    rt = get_runtime()
    s = rt.settings
    db = s.database()
    job_id = request.id
    worker = getattr(request, "hostname", None) or rt.name
    enqueued = getattr(request, ENQUEUED_HEADER, None) or (request.headers or {}).get(ENQUEUED_HEADER)
    queue_wait_ms = max(0.0, (time.time() - float(enqueued)) * 1000.0) if enqueued else 0.0
    retry = partial(storage.with_retry, retries=s.db_retries, base_ms=s.db_retry_base_ms)

    try:
        req = validate_job(dict(texts=texts, model=model, prompt_name=prompt_name, dims=dims, normalize=normalize),
                           limits=rt.limits, served=rt.served)
    except InvalidJob as e:
        reason, n = str(e), len(texts) if isinstance(texts, (list, tuple)) else 0
        retry(lambda: storage.mark_failed(job_id, reason, worker=worker, model=_short(model), count=n, url=db),
              what="recording a failed job")
        log.info("job %s rejected: %s", job_id, reason)
        raise

    hashes = [storage.content_hash(rt.fingerprint, req.prompt_name, req.dims, req.normalize, t) for t in req.texts]
    claim = retry(lambda: rt.writer.claim(job_id, model=rt.served.name, prompt_name=req.prompt_name,
                                          dims=req.dims, normalize=req.normalize, count=len(req.texts),
                                          worker=worker, hashes=hashes), what="claiming a job")
    if claim.status == "done":
        log.info("job %s was already done (redelivered); not recomputing", job_id)
        return summary(job_id, db)
    if claim.status == "failed":
        raise JobFailed(storage.get_job(job_id, url=db)["error"] or "failed earlier")

    try:
        return _compute_and_store(rt, req, hashes, claim.cached, job_id, worker, db, retry, t0, queue_wait_ms)
    except Exception as e:
        if is_transient(e):
            raise  # the task re-queues it (see tasks.embed); recorded as failed only when retries run out
        reason = f"{type(e).__name__}: {e}"
        log.exception("job %s failed", job_id)
        try:
            retry(lambda: storage.mark_failed(job_id, reason, worker=worker, url=db), what="recording a failed job")
        except Exception:
            log.exception("could not record the failure of job %s", job_id)
        raise JobFailed(reason) from e


def _compute_and_store(rt, req, hashes, cached, job_id, worker, db, retry, t0, queue_wait_ms) -> dict:
    texts = req.texts
    backend = rt.backend
    misses = [i for i, h in enumerate(hashes) if h not in cached]

    vectors: np.ndarray | None = None
    stats = dict(batch_wait_ms=0.0, tokenize_ms=0.0, forward_ms=0.0, batch_size=0, batch_jobs=0,
                 tokens=0, truncated=0)
    batch_ids: list[str] = []
    if misses:
        miss_texts = [texts[i] for i in misses]
        counts = backend.token_counts(miss_texts, req.prompt_name)
        limit = getattr(backend, "max_tokens", None) or backend.info.get("max_tokens")
        truncated = 0
        if limit:
            # token_counts are after truncation; only texts at the limit can have been cut.
            truncated = sum(1 for t, c in zip(miss_texts, counts)
                            if c >= limit and backend.untruncated_length(t, req.prompt_name) > limit)
        ticket = rt.coalescer.submit(miss_texts, counts, req.prompt_name, req.dims, req.normalize)
        computed = ticket.wait(timeout=rt.settings.visibility_timeout_s)
        vectors = np.empty((len(texts), computed.shape[1]), dtype=np.float32)
        vectors[misses] = computed
        batch_ids = list(ticket.batch_ids)
        stats.update(batch_wait_ms=ticket.waited_ms, tokenize_ms=ticket.tokenize_ms, forward_ms=ticket.forward_ms,
                     batch_size=ticket.batch_size, batch_jobs=ticket.batch_jobs, tokens=int(sum(counts)),
                     truncated=truncated)
    for i, h in enumerate(hashes):
        if h in cached:
            if vectors is None:
                vectors = np.empty((len(texts), cached[h].shape[0]), dtype=np.float32)
            vectors[i] = cached[h]

    timing: dict = {}

    def metrics() -> dict:
        # Called inside the write transaction once the rows are written: persist_ms covers waiting
        # for the group writer and writing; only the COMMIT itself falls outside it (a retried
        # attempt restarts the clock).
        now = time.monotonic()
        timing["total_ms"] = queue_wait_ms + (now - t0) * 1000.0
        return dict(queue_wait_ms=queue_wait_ms, **stats, cache_hits=len(texts) - len(misses), worker=worker,
                    persist_ms=(now - timing["persist_start"]) * 1000.0, total_ms=timing["total_ms"])

    def save() -> bool:
        timing["persist_start"] = time.monotonic()
        return rt.writer.save(job_id, texts=texts, hashes=hashes, vectors=vectors, model=rt.served.name,
                              batch_ids=batch_ids, metrics=metrics, worker=worker)

    if not retry(save, what="storing a job"):
        log.info("job %s was stored by another delivery first", job_id)
        return summary(job_id, db)
    return dict(job_id=job_id, status="done", count=len(texts), dim=int(vectors.shape[1]), model=rt.served.name,
                batch_ids=batch_ids, latency_ms=timing["total_ms"], cache_hits=len(texts) - len(misses))


def summary(job_id: str, db: str) -> dict:
    job = storage.get_job(job_id, url=db)
    out = dict(job_id=job_id, status=job["status"], count=job["count"], dim=job["dim"], model=job["model"],
               batch_ids=job["batch_ids"], latency_ms=None, cache_hits=None)
    if job["status"] == "done":
        m = storage.get_metrics(job_id, url=db)
        out.update(latency_ms=m["total_ms"], cache_hits=m["cache_hits"])
    return out


def _short(v) -> str | None:
    return None if v is None else str(v)[:255]
