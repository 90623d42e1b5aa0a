"""One embed job from message to committed rows.

Order matters for the guarantees: validate (a bad job fails alone, recorded), claim the job id (a
redelivered job that already finished is answered from the database, not recomputed), look up the
content-hash cache, tokenize only the misses (once: the coalescer and the runtime carry their ids
from here on), run them through the coalescer, then commit vectors + metrics in one transaction.
The task returns only after that commit, and acks_late acknowledges the message only then.

Latency parts, all in milliseconds and disjoint, so total >= their sum:
  queue_wait: client's enqueue (message header) to the task starting on a worker (wall clocks of
              two machines: clamped at 0 if they disagree);
  tokenize:   turning the job's texts into token ids, in the job's own thread;
  batch_wait: time in the coalescing buffer that was not this job's own batches computing;
  forward:    of the batches the job rode in (summed if it was split);
  persist:    handing the rows to the database writer, up to the commit (timed by storage);
  total:      enqueue to the commit. Whatever is left (validation, claim and cache lookup) is in
              total only.
"""
from __future__ import annotations

import logging
import time
import numpy as np

import storage
from schemas import InvalidJob, validate_job

from .runtime import Runtime

log = logging.getLogger("embedq.worker")

ENQUEUED_HEADER = "embedq_enqueued_at"


class JobFailed(RuntimeError):
    """The job could not be completed; the message is the reason stored with it."""


def run_job(rt: Runtime, request, texts, model=None, prompt_name=None, dims=None, normalize=True) -> dict:
    """Run the job carried by Celery `request` (its id is the job id); returns the job summary.

    Raises InvalidJob or JobFailed for a job that cannot succeed (the caller records it with
    `record_failure`), and a transient database error for one that may succeed later.
    """
    t0 = time.monotonic()
    job_id = request.id
    worker = getattr(request, "hostname", None) or rt.name
    enqueued = getattr(request, ENQUEUED_HEADER, None) or (request.headers or {}).get(ENQUEUED_HEADER)
    queue_wait_ms = max(0.0, (time.time() - float(enqueued)) * 1000.0) if enqueued else 0.0
    # A database outage makes the job wait, up to EMBEDQ_DB_OUTAGE_S from its start in all.
    deadline = t0 + rt.settings.db_outage_s

    def retry(fn, what):
        return storage.with_retry(fn, patience_s=max(0.0, deadline - time.monotonic()),
                                  base_ms=rt.settings.db_retry_base_ms, what=what)

    req = validate_job(dict(texts=texts, model=model, prompt_name=prompt_name, dims=dims, normalize=normalize),
                       limits=rt.limits, served=rt.served)
    hashes = [storage.content_hash(rt.fingerprint, req.prompt_name, req.dims, req.normalize, t) for t in req.texts]
    claim = retry(lambda: rt.writer.claim(storage.ClaimRequest(
        job_id, model=rt.served.name, prompt_name=req.prompt_name, dims=req.dims, normalize=req.normalize,
        count=len(req.texts), worker=worker, hashes=hashes, model_hash=rt.served.content_hash)),
        what="claiming a job")
    if claim.status == "done":
        log.info("job %s was already done (redelivered); not recomputing", job_id)
        return summary(rt.db, job_id)
    if claim.status == "failed":
        raise JobFailed(storage.get_job(rt.db, job_id)["error"] or "failed earlier")

    try:
        vectors, stats = _compute(rt, req, hashes, claim.cached)
    except Exception as e:
        log.exception("job %s could not be computed", job_id)
        raise JobFailed(f"{type(e).__name__}: {e}") from e
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        # A corrupt model can load and still compute NaN; such vectors are never stored as done.
        raise JobFailed(f"the model produced a non-finite vector for texts[{int(np.flatnonzero(bad)[0])}] "
                        f"({int(bad.sum())} of {len(bad)} texts); the model file may be corrupt")
    batch_ids, tokens, truncated = stats.pop("batch_ids"), stats.pop("per_text_tokens"), stats.pop("per_text_truncated")
    stats.update(queue_wait_ms=queue_wait_ms, worker=worker)
    save = storage.SaveRequest(job_id, texts=req.texts, hashes=hashes, vectors=vectors, model=rt.served.name,
                               batch_ids=batch_ids, metrics=stats, started=t0, worker=worker,
                               model_hash=rt.served.content_hash, tokens=tokens, truncated=truncated)
    if not retry(lambda: rt.writer.save(save), what="storing a job"):
        log.info("job %s was stored by another delivery first", job_id)
        return summary(rt.db, job_id)
    return dict(job_id=job_id, status="done", count=len(req.texts), dim=save.dim, model=rt.served.name,
                batch_ids=batch_ids, latency_ms=stats["total_ms"], cache_hits=stats["cache_hits"])


def _compute(rt: Runtime, req, hashes: list[str], cached: dict[str, storage.Cached]) -> tuple[np.ndarray, dict]:
    """Vectors for every text (cache hits copied, misses computed), the job's metrics so far, and
    each text's token count and truncation (per_text_*)."""
    n = len(hashes)
    misses = [i for i, h in enumerate(hashes) if h not in cached]
    stats = dict(tokenize_ms=0.0, batch_wait_ms=0.0, forward_ms=0.0, batch_size=0, batch_jobs=0, tokens=0,
                 truncated=0, cache_hits=n - len(misses), batch_ids=[], per_text_tokens=[None] * n,
                 per_text_truncated=[None] * n)
    vectors: np.ndarray | None = None
    if misses:
        encoded = rt.backend.encode([req.texts[i] for i in misses], req.prompt_name)
        ticket = rt.coalescer.submit(encoded, req.dims, req.normalize)
        computed = ticket.wait(timeout=rt.settings.visibility_timeout_s)
        vectors = np.empty((n, computed.shape[1]), dtype=np.float32)
        vectors[misses] = computed
        stats.update(tokenize_ms=encoded.tokenize_ms, batch_wait_ms=ticket.waited_ms, forward_ms=ticket.forward_ms,
                     batch_size=ticket.batch_size, batch_jobs=ticket.batch_jobs, tokens=encoded.tokens,
                     truncated=encoded.n_truncated, batch_ids=list(ticket.batch_ids))
        for i, t, cut in zip(misses, encoded.lengths.tolist(), encoded.truncated.tolist()):
            stats["per_text_tokens"][i], stats["per_text_truncated"][i] = t, cut
    for i, h in enumerate(hashes):
        if h in cached:
            hit = cached[h]
            if vectors is None:
                vectors = np.empty((n, hit.vector.shape[0]), dtype=np.float32)
            vectors[i] = hit.vector
            stats["per_text_tokens"][i], stats["per_text_truncated"][i] = hit.tokens, hit.truncated
    return vectors, stats


def record_failure(rt: Runtime, job_id: str, error: BaseException, texts=None, model=None) -> bool:
    """Store a job as failed with the reason `error` gives. False when the database could not be
    reached (the caller keeps the failure and tries again later)."""
    reason = str(error)[:2000]
    log.info("job %s failed: %s", job_id, reason)
    count = len(texts) if isinstance(texts, (list, tuple)) else 0
    try:
        storage.with_retry(lambda: storage.mark_failed(rt.db, job_id, reason, worker=rt.name, count=count,
                                                       model=None if model is None else str(model)[:255]),
                           patience_s=10.0, base_ms=rt.settings.db_retry_base_ms, what="recording a failed job")
        return True
    except Exception as e:
        if not storage.is_transient(e):
            raise
        log.warning("could not record the failure of job %s yet: %s", job_id, e)
        return False


def summary(db: storage.Database, job_id: str) -> dict:
    job = storage.get_job(db, job_id)
    out = dict(job_id=job_id, status=job["status"], count=job["count"], dim=job["dim"], model=job["model"],
               batch_ids=job["batch_ids"], latency_ms=None, cache_hits=None)
    if job["status"] == "done":
        m = storage.get_metrics(db, job_id)
        out.update(latency_ms=m["total_ms"], cache_hits=m["cache_hits"])
    return out


__all__ = ["run_job", "record_failure", "summary", "JobFailed", "InvalidJob", "ENQUEUED_HEADER"]
