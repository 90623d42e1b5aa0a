"""Coalescing: many small jobs become few forward passes.

Jobs arrive as token ids (native.Encoded: each job's texts were tokenized once, in its own task
thread, before it got here); batches are cut by token count and run as ids. No string passes
through this module.

Why our own buffer rather than celery-batches: celery-batches pins celery<5.7 (we run 5.7), and it
collects requests in the consumer and acknowledges them itself, which fights the acks_late
guarantee that a job's message is acknowledged only after its vectors are committed. Here each job
stays an ordinary Celery task (its own ack, retry, failure state and Flower event); the tasks run
on the worker's thread pool, hand their texts to this process-wide buffer and block until their
vectors are back. One compute thread drains the buffer:

* a batch is flushed when the next buffered chunk would exceed the token budget, or when the
  oldest buffered chunk has waited `batch_wait_ms`, whichever comes first;
* while a batch computes, new jobs accumulate, so under load batches fill up by themselves and the
  wait only matters when the queue is nearly empty;
* a job with more tokens than the budget is split into chunks that ride in successive batches and
  are reassembled in input order; each job records the ids of all batches it was in;
* one batch only mixes jobs with the same (dims, normalize), since the runtime takes those per
  call (a prompt is already part of the ids); identical id sequences within a batch are computed
  once;
* if a batch raises, its chunks are retried one by one, so a bad job fails alone.

The runtime releases the GIL during tokenization and the forward pass, so task threads keep
receiving, validating, tokenizing and persisting jobs while a batch computes.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from native import Encoded

from . import metrics
from .backend import EmbeddingBackend

log = logging.getLogger("embedq.batch")

BatchKey = tuple  # (dims, normalize)


class Ticket:
    """A job's claim on the buffer: filled in by batches, waited on by the job's task thread."""

    def __init__(self, n: int, key: BatchKey, chunks: int):
        self.n = n
        self.key = key
        self.vectors: np.ndarray | None = None
        self.batch_ids: list[str] = []
        self.forward_ms = 0.0
        self.batch_size = 0
        self.batch_jobs = 0
        self.error: BaseException | None = None
        self.submitted = time.monotonic()
        self.done_at: float | None = None
        self._remaining = chunks
        self._event = threading.Event()

    @property
    def waited_ms(self) -> float:
        """Time in the buffer that was not this job's own batches computing."""
        end = self.done_at if self.done_at is not None else time.monotonic()
        return max(0.0, (end - self.submitted) * 1000.0 - self.forward_ms)

    def wait(self, timeout: float | None = None) -> np.ndarray:
        if not self._event.wait(timeout):
            raise TimeoutError(f"no batch finished this job within {timeout:.0f}s")
        if self.error is not None:
            raise self.error
        return self.vectors

    def _chunk_done(self, start: int, vectors: np.ndarray | None, batch_id: str | None, stats: dict | None,
                    batch_size: int, batch_jobs: int, error: BaseException | None = None) -> None:
        if error is not None:
            self.error = self.error or error
        else:
            if self.vectors is None:
                self.vectors = np.empty((self.n, vectors.shape[1]), dtype=np.float32)
            self.vectors[start:start + len(vectors)] = vectors
            if batch_id not in self.batch_ids:
                self.batch_ids.append(batch_id)
                self.forward_ms += float(stats["forward_ms"])
            self.batch_size = max(self.batch_size, batch_size)
            self.batch_jobs = max(self.batch_jobs, batch_jobs)
        self._remaining -= 1
        if self._remaining == 0:
            self.done_at = time.monotonic()
            self._event.set()


@dataclass(frozen=True)
class BatchRecord:
    """What one forward pass contained (kept for the last few hundred batches, for inspection)."""

    batch_id: str
    texts: int       # distinct id sequences computed
    tokens: int
    jobs: int
    key: BatchKey
    forward_ms: float


@dataclass
class _Chunk:
    ticket: Ticket
    start: int
    encoded: Encoded
    tokens: int
    arrived: float = field(default_factory=time.monotonic)
    done: bool = False


def split(token_counts: Sequence[int], budget: int) -> list[tuple[int, int, int]]:
    """Cut a job into consecutive (start, stop, tokens) runs of at most `budget` tokens; a single
    text above the budget becomes a run of its own."""
    runs, start, acc = [], 0, 0
    for i, t in enumerate(token_counts):
        if i > start and acc + t > budget:
            runs.append((start, i, acc))
            start, acc = i, 0
        acc += t
    if len(token_counts) > start:
        runs.append((start, len(token_counts), acc))
    return runs


class Coalescer:
    def __init__(self, backend: EmbeddingBackend, batch_tokens: int, batch_wait_ms: float, label: str = ""):
        if batch_tokens < 1:
            raise ValueError("batch_tokens must be >= 1")
        self.backend = backend
        self.label = label  # the served model's name, for the worker metrics
        self.batch_tokens = int(batch_tokens)
        self.batch_wait = max(0.0, float(batch_wait_ms)) / 1000.0
        self._pending: deque[_Chunk] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.batches = 0
        self.history: deque[BatchRecord] = deque(maxlen=512)
        self._thread = threading.Thread(target=self._run, name="embedq-coalescer", daemon=True)
        self._thread.start()

    def submit(self, encoded: Encoded, dims: int | None = None, normalize: bool = True) -> Ticket:
        """Queue a job's encoded texts; the returned ticket's wait() gives their vectors in order."""
        if not len(encoded):
            raise ValueError("submit needs at least one text")
        key = (dims, bool(normalize))
        runs = split(encoded.lengths.tolist(), self.batch_tokens)
        ticket = Ticket(len(encoded), key, len(runs))
        chunks = [_Chunk(ticket, start, encoded if len(runs) == 1 else encoded.select(range(start, stop)), tokens)
                  for start, stop, tokens in runs]
        with self._cond:
            if self._closing:
                raise RuntimeError("the coalescer is shut down")
            self._pending.extend(chunks)
            self._cond.notify()
        return ticket

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish what is buffered, then stop the compute thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- compute thread -------------------------------------------------------------------------
    def _next_batch(self) -> list[_Chunk] | None:
        with self._cond:
            while True:
                if not self._pending:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                oldest = self._pending[0]
                batch, tokens, full = [], 0, False
                for c in self._pending:
                    if c.ticket.key != oldest.ticket.key:
                        continue
                    if batch and tokens + c.tokens > self.batch_tokens:
                        full = True
                        break
                    batch.append(c)
                    tokens += c.tokens
                full = full or tokens >= self.batch_tokens
                remaining = oldest.arrived + self.batch_wait - time.monotonic()
                if full or remaining <= 0 or self._closing:
                    for c in batch:
                        self._pending.remove(c)
                    return batch
                self._cond.wait(remaining)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._compute(batch)
            except BaseException as e:  # never let the compute thread die with tickets waiting
                log.exception("batch failed unexpectedly")
                for c in batch:
                    if not c.done:
                        c.done = True
                        c.ticket._chunk_done(c.start, None, None, None, 0, 0, error=e)

    def _compute(self, batch: list[_Chunk]) -> None:
        dims, normalize = batch[0].ticket.key
        unique: dict[bytes, int] = {}   # id sequence -> row of the batch
        picks: list[list[int]] = []     # per chunk: its texts that are first of their kind
        rows: list[list[int]] = []      # per chunk: the batch row of each of its texts
        for c in batch:
            e = c.encoded
            offsets = e.offsets.tolist()
            mine, new = [], []
            for i in range(len(e)):
                key = e.ids[offsets[i]:offsets[i + 1]].tobytes()
                if key not in unique:
                    unique[key] = len(unique)
                    new.append(i)
                mine.append(unique[key])
            picks.append(new)
            rows.append(mine)
        todo = Encoded.concat([c.encoded.select(p) for c, p in zip(batch, picks) if p])
        batch_id = uuid.uuid4().hex[:16]
        jobs = len({id(c.ticket) for c in batch})
        log.info("batch %s start: %d texts, %d tokens, %d jobs", batch_id, len(todo), todo.tokens, jobs)
        try:
            vectors, stats = self.backend.embed_encoded(todo, dims, normalize)
        except Exception as e:
            if len(batch) == 1:
                log.warning("batch %s failed: %s", batch_id, e)
                batch[0].done = True
                batch[0].ticket._chunk_done(batch[0].start, None, None, None, 0, 0, error=e)
                return
            log.warning("batch %s failed (%s); retrying its %d chunks one by one", batch_id, e, len(batch))
            for c in batch:
                self._compute([c])
            return
        self.batches += 1
        self.history.append(BatchRecord(batch_id, len(todo), todo.tokens, jobs, batch[0].ticket.key,
                                        float(stats["forward_ms"])))
        log.info("batch %s done: forward %.1f ms", batch_id, stats["forward_ms"])
        metrics.batch_done(self.label, len(todo), todo.tokens, jobs, float(stats["forward_ms"]))
        for c, r in zip(batch, rows):
            c.done = True
            c.ticket._chunk_done(c.start, vectors[r], batch_id, stats, len(todo), jobs)
