"""Persistence for jobs, vectors and latency metrics (SQLAlchemy 2.0; SQLite or PostgreSQL+pgvector).

Tables only: storage knows no model and calls back into no caller. Open a database once and pass it:

    db = storage.connect()                  # EMBEDQ_DATABASE_URL (or connect(url)); migrated once
    storage.get_vectors(db, job_id)         # also get_job, get_metrics, get_texts, get_chunks
    storage.nearest(db, vector, model, k=5) # a text query is embedded by the service: worker.search
"""
from .content_hash import content_hash
from .database import Database, connect, dispose_all
from .engine import StorageError
from .group_writer import GroupWriter
from .migrate import current_revision, head_revision, upgrade
from .lifecycle import count_jobs, delete_jobs, list_jobs, parse_duration
from .models import LATENCY_FIELDS
from .queries import (
                      JobNotDone,
                      JobNotFound,
                      all_metrics,
                      failed_jobs,
                      get_job,
                      get_chunks,
                      get_metrics,
                      get_output,
                      get_texts,
                      get_vectors,
                      status_counts,
)
from .retry import is_transient, with_retry
from .search import nearest
from .writes import (
                     Cached,
                     Claim,
                     ClaimRequest,
                     ModelFileInfo,
                     ChunkRow,
                     SaveRequest,
                     cached_vectors,
                     claim,
                     mark_failed,
                     register_model_file,
                     save,
)

__all__ = [
    "Database", "connect", "dispose_all", "StorageError", "upgrade", "current_revision", "head_revision",
    "get_vectors", "get_chunks", "get_metrics", "get_output", "get_job", "get_texts", "nearest", "all_metrics", "status_counts",
    "failed_jobs",
    "JobNotFound", "JobNotDone", "LATENCY_FIELDS",
    "Claim", "ClaimRequest", "SaveRequest", "ChunkRow", "claim", "save", "mark_failed", "cached_vectors", "GroupWriter",
    "Cached", "ModelFileInfo", "register_model_file",
    "content_hash", "with_retry", "is_transient",
    "list_jobs", "delete_jobs", "count_jobs", "parse_duration",
]
