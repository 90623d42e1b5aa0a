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

Texts over the model's window (the job's `overflow`): "truncate" cuts them (counted in the
metrics' `truncated`), "reject" fails the job naming the first one and its token count, "chunk"
embeds every text in windows (worker/chunking.py) and stores each window with its offsets beside
the text's pooled vector; its metrics count the windows (`chunks`). A chunk job neither reads nor
feeds the truncating jobs' cache (its vectors differ for long texts): its content hashes carry the
overflow settings, and its texts are always computed.
"""
from __future__ import annotations

import logging
import time
import numpy as np

import storage
from schemas import InvalidJob, validate_job

from . import metrics
from .chunking import ChunkingError, pool
from .runtime import Runtime

log = logging.getLogger("embedq.worker")

ENQUEUED_HEADER = "embedq_enqueued_at"


class JobFailed(RuntimeError):
    """The job could not be completed; the message is the reason stored with it."""


def run_job(rt: Runtime, request, texts, model=None, prompt_name=None, dims=None, normalize=True,
            overflow="truncate", overflow_overlap=None) -> dict:
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

    req = validate_job(dict(texts=texts, model=model, prompt_name=prompt_name, dims=dims, normalize=normalize,
                            overflow=overflow, overflow_overlap=overflow_overlap),
                       limits=rt.limits, served=rt.served)
    chunked = req.overflow == "chunk"
    fingerprint = rt.fingerprint + (f"|chunk:{req.overflow_overlap}" if chunked else "")
    hashes = [storage.content_hash(fingerprint, req.prompt_name, req.dims, req.normalize, t) for t in req.texts]
    claim = retry(lambda: rt.writer.claim(storage.ClaimRequest(
        job_id, model=rt.served.name, prompt_name=req.prompt_name, dims=req.dims, normalize=req.normalize,
        count=len(req.texts), worker=worker, hashes=[] if chunked else hashes, model_hash=rt.served.content_hash)),
        what="claiming a job")
    if claim.status == "done":
        log.info("job %s was already done (redelivered); not recomputing", job_id)
        return summary(rt.db, job_id)
    if claim.status == "failed":
        raise JobFailed(storage.get_job(rt.db, job_id)["error"] or "failed earlier")

    cached = claim.cached
    if req.overflow == "reject":
        # A cut vector in the cache says only that its text was too long: the job must fail, with
        # the text's full count, so such a text is tokenized again.
        cached = {h: c for h, c in cached.items() if c.truncated is False}
    try:
        vectors, stats = (_compute_chunks if chunked else _compute)(rt, req, hashes, cached)
    except (InvalidJob, ChunkingError) as e:
        raise InvalidJob(str(e)) from None
    except Exception as e:
        log.exception("job %s could not be computed", job_id)
        raise JobFailed(f"{type(e).__name__}: {e}") from e
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        # A corrupt model can load and still compute NaN; such vectors are never stored as done.
        raise JobFailed(f"the model produced a non-finite vector for texts[{int(np.flatnonzero(bad)[0])}] "
                        f"({int(bad.sum())} of {len(bad)} texts); the model file may be corrupt")
    batch_ids, tokens, truncated = stats.pop("batch_ids"), stats.pop("per_text_tokens"), stats.pop("per_text_truncated")
    chunk_rows = stats.pop("chunk_rows", None)
    stats.update(queue_wait_ms=queue_wait_ms, worker=worker)
    save = storage.SaveRequest(job_id, texts=req.texts, hashes=hashes, vectors=vectors, model=rt.served.name,
                               batch_ids=batch_ids, metrics=stats, started=t0, worker=worker,
                               model_hash=rt.served.content_hash, tokens=tokens, truncated=truncated,
                               chunks=chunk_rows)
    if not retry(lambda: rt.writer.save(save), what="storing a job"):
        log.info("job %s was stored by another delivery first", job_id)
        return summary(rt.db, job_id)
    metrics.job_done(rt.served.name, save.metrics, len(req.texts))  # persist_ms and total_ms are in by now
    return dict(job_id=job_id, status="done", count=len(req.texts), dim=save.dim, model=rt.served.name,
                batch_ids=batch_ids, latency_ms=stats["total_ms"], cache_hits=stats["cache_hits"])


def _compute(rt: Runtime, req, hashes: list[str], cached: dict[str, storage.Cached]) -> tuple[np.ndarray, dict]:
    """Vectors for every text (cache hits copied, misses computed), the job's metrics so far, and
    each text's token count and truncation (per_text_*)."""
    n = len(hashes)
    misses = [i for i, h in enumerate(hashes) if h not in cached]
    stats = dict(tokenize_ms=0.0, batch_wait_ms=0.0, forward_ms=0.0, batch_size=0, batch_jobs=0, tokens=0,
                 truncated=0, cache_hits=n - len(misses), chunks=None, batch_ids=[], per_text_tokens=[None] * n,
                 per_text_truncated=[None] * n)
    vectors: np.ndarray | None = None
    if misses:
        encoded = rt.backend.encode([req.texts[i] for i in misses], req.prompt_name)
        if req.overflow == "reject" and encoded.n_truncated:
            first = int(np.flatnonzero(encoded.truncated)[0])
            i = misses[first]
            full = rt.backend.full_tokens(req.texts[i], req.prompt_name)
            raise InvalidJob(f"texts[{i}] has {full} tokens (with the prompt and special tokens); {rt.served.name} "
                             f"takes at most {rt.served.max_tokens} (overflow='reject'; {encoded.n_truncated} of "
                             f"the job's texts are too long)")
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


def _compute_chunks(rt: Runtime, req, hashes: list[str], cached) -> tuple[np.ndarray, dict]:
    """overflow="chunk": every text's windows embedded, each text's vector pooled from its windows."""
    n = len(req.texts)
    encoded, wins = rt.backend.encode_chunks(req.texts, req.prompt_name, req.overflow_overlap)
    ticket = rt.coalescer.submit(encoded, req.dims, req.normalize)
    chunk_vectors = ticket.wait(timeout=rt.settings.visibility_timeout_s)
    per_text = [0] * n
    for w in wins:
        per_text[w.idx] += w.tokens
    rows = [storage.ChunkRow(w.idx, w.chunk, w.token_start, w.token_end, w.char_start, w.char_end, w.tokens, v)
            for w, v in zip(wins, chunk_vectors)]
    stats = dict(tokenize_ms=encoded.tokenize_ms, batch_wait_ms=ticket.waited_ms, forward_ms=ticket.forward_ms,
                 batch_size=ticket.batch_size, batch_jobs=ticket.batch_jobs, tokens=encoded.tokens, truncated=0,
                 cache_hits=0, chunks=len(wins), batch_ids=list(ticket.batch_ids), per_text_tokens=per_text,
                 per_text_truncated=[False] * n, chunk_rows=rows)
    # A non-finite chunk makes its text's pooled vector non-finite, which the caller refuses by text.
    return pool(chunk_vectors, wins, n, req.normalize), stats


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
