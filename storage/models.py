"""Tables: a job, its vectors (one row per input text) and its latency metrics.

The job id is the Celery task id. Rows are written once per job: `(job_id, idx)` is unique and
`job_metrics.job_id` is the primary key, so a redelivered or duplicated message cannot add rows.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .vector_type import VectorType

JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"

# The disjoint latency parts of a job, in milliseconds (worker/job_runner.py says what each covers).
LATENCY_FIELDS = ("queue_wait_ms", "batch_wait_ms", "tokenize_ms", "forward_ms", "persist_ms", "total_ms")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str | None] = mapped_column(String(255))
    prompt_name: Mapped[str | None] = mapped_column(String(64))
    dims: Mapped[int | None] = mapped_column(Integer)
    normalize: Mapped[bool] = mapped_column(default=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    dim: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    batch_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    worker: Mapped[str | None] = mapped_column(String(255))
    model_hash: Mapped[str | None] = mapped_column(String(64))  # the model file's content (model_files)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    embeddings: Mapped[list["Embedding"]] = relationship(back_populates="job", order_by="Embedding.idx",
                                                         cascade="all, delete-orphan", passive_deletes=True)
    metrics: Mapped["JobMetrics | None"] = relationship(back_populates="job", cascade="all, delete-orphan",
                                                        passive_deletes=True)


class Embedding(Base):
    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("job_id", "idx", name="uq_embeddings_job_idx"),
        Index("ix_embeddings_model_dim", "model", "dim"),
        Index("ix_embeddings_model_hash_dim", "model_hash", "dim"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # sha256 over model fingerprint, prompt, dims, normalize and text: the cache key.
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(255))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[np.ndarray] = mapped_column(VectorType())
    # Provenance: which file computed it (with the job's prompt, dims and normalization, all that
    # shaped the numbers), how many tokens the text was, and whether it was cut at the model's limit.
    # Null only on rows stored before these columns existed.
    model_hash: Mapped[str | None] = mapped_column(String(64))
    tokens: Mapped[int | None] = mapped_column(Integer)
    truncated: Mapped[bool | None] = mapped_column()

    job: Mapped[Job] = relationship(back_populates="embeddings")


class Chunk(Base):
    """One window of a text embedded with overflow="chunk" (every text of such a job has at least
    one; a text that fits is one chunk). The text's own row in `embeddings` holds the vector pooled
    from its chunks. Offsets are into the text as given (without the prompt): tokens [token_start,
    token_end) of the tokenizer's ids for it (special tokens not counted), characters [char_start,
    char_end) of the str."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("job_id", "idx", "chunk", name="uq_chunks_job_idx_chunk"),
        Index("ix_chunks_model_hash_dim", "model_hash", "dim"),
        Index("ix_chunks_model_dim", "model", "dim"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)      # the text's index in its job
    chunk: Mapped[int] = mapped_column(Integer)    # the chunk's number within the text, from 0
    token_start: Mapped[int] = mapped_column(Integer)
    token_end: Mapped[int] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(Integer)   # in its forward pass: prompt and specials included
    model: Mapped[str] = mapped_column(String(255))
    model_hash: Mapped[str | None] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[np.ndarray] = mapped_column(VectorType())


class ModelFile(Base):
    """A model file that computed stored vectors, identified by the SHA-256 of its bytes: a
    re-converted or re-quantized file is another model, even under the same name."""

    __tablename__ = "model_files"

    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    architecture: Mapped[str] = mapped_column(String(64))
    weight_type: Mapped[str] = mapped_column(String(32))
    pooling: Mapped[str] = mapped_column(String(32))
    dim: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobMetrics(Base):
    __tablename__ = "job_metrics"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    queue_wait_ms: Mapped[float] = mapped_column(Float)
    batch_wait_ms: Mapped[float] = mapped_column(Float)
    tokenize_ms: Mapped[float] = mapped_column(Float)
    forward_ms: Mapped[float] = mapped_column(Float)
    persist_ms: Mapped[float] = mapped_column(Float)
    total_ms: Mapped[float] = mapped_column(Float)
    batch_size: Mapped[int] = mapped_column(Integer)   # texts in the (largest) batch the job rode in
    batch_jobs: Mapped[int] = mapped_column(Integer)   # jobs coalesced into that batch
    tokens: Mapped[int] = mapped_column(Integer)       # tokens of this job's computed texts
    truncated: Mapped[int] = mapped_column(Integer)    # of this job's texts, how many were cut at max_tokens
    cache_hits: Mapped[int] = mapped_column(Integer)   # texts served from the content-hash cache
    chunks: Mapped[int | None] = mapped_column(Integer)  # overflow="chunk": windows embedded; else null
    worker: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="metrics")

    def as_dict(self) -> dict:
        return {
            **{f: getattr(self, f) for f in LATENCY_FIELDS},
            "batch_size": self.batch_size, "batch_jobs": self.batch_jobs, "tokens": self.tokens,
            "truncated": self.truncated, "cache_hits": self.cache_hits, "chunks": self.chunks, "worker": self.worker,
        }
