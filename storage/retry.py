"""Retry database work that failed for reasons that may pass (lost connection, locked database).

Integrity and programming errors are not retried: running the same statement again cannot fix
them. The caller decides what "gave up" means (the worker re-queues the job, then fails it).
"""
from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

T = TypeVar("T")
log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (IntegrityError, ProgrammingError)):
        return False
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def with_retry(fn: Callable[[], T], retries: int = 5, base_ms: float = 50.0, max_ms: float = 5000.0,
               what: str = "database operation") -> T:
    """Call fn(); on a transient error wait base*2^n ms (jittered, capped) and try again."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as e:
            if attempt >= retries or not is_transient(e):
                raise
            delay = min(max_ms, base_ms * (2 ** attempt)) * (0.5 + random.random() / 2) / 1000.0
            log.warning("%s failed (%s: %s); retry %d/%d in %.2fs", what, type(e).__name__,
                        str(e).splitlines()[0][:200], attempt + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
