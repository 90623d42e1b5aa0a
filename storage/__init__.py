"""Persistence for jobs, vectors and latency metrics (SQLAlchemy 2.0; SQLite or PostgreSQL+pgvector).

Public API: get_vectors, get_metrics, get_job, nearest. The database is `EMBEDQ_DATABASE_URL`
unless a `url=` is given; it is migrated to the latest schema on first use in a process.
"""
from .content_hash import content_hash
from .engine import StorageError, dispose_all, get_engine
from .group_writer import GroupWriter
from .jobs import Claim, cached_vectors, claim_job, mark_failed, save_result
from .migrate import upgrade
from .queries import (
                      JobNotDone,
                      JobNotFound,
                      all_metrics,
                      failed_jobs,
                      get_job,
                      get_metrics,
                      get_texts,
                      get_vectors,
                      status_counts,
)
from .retry import with_retry
from .search import nearest

__all__ = [
    "get_vectors", "get_metrics", "get_job", "get_texts", "nearest", "all_metrics", "status_counts", "failed_jobs",
    "JobNotFound", "JobNotDone", "StorageError", "claim_job", "cached_vectors", "save_result",
    "mark_failed", "Claim", "GroupWriter", "content_hash", "with_retry", "upgrade", "get_engine", "dispose_all",
]
