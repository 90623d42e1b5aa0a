"""Retry database work that failed for reasons that may pass (lost connection, locked database).

Integrity and programming errors are not retried: running the same statement again cannot fix
them. Transient ones are retried for as long as the caller's patience allows (the worker's is
EMBEDQ_DB_OUTAGE_S); the caller decides what giving up means.
"""
from __future__ import annotations

import itertools
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


def with_retry(fn: Callable[[], T], patience_s: float = 600.0, base_ms: float = 50.0, max_ms: float = 5000.0,
               what: str = "database operation") -> T:
    """Call fn(); on a transient error wait base*2^n ms (jittered, capped at max_ms) and try again,
    for as long as `patience_s` allows; then the last error is raised."""
    deadline = time.monotonic() + patience_s
    for attempt in itertools.count():
        try:
            return fn()
        except Exception as e:
            if not is_transient(e):
                raise
            delay = min(max_ms, base_ms * (2 ** min(attempt, 30))) * (0.5 + random.random() / 2) / 1000.0
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("%s failed (%s: %s); retry %d in %.2fs (gives up in %.0fs)", what, type(e).__name__,
                        str(e).splitlines()[0][:200], attempt + 1, min(delay, left), left)
            time.sleep(min(delay, left))
    raise AssertionError("unreachable")
