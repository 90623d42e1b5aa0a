"""Which database a call talks to, migrated before first use in this process."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from schemas.settings import get_settings

from .engine import get_engine, is_sqlite
from .migrate import upgrade

_write_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def resolve_url(url: str | None = None) -> str:
    url = url or get_settings().database()
    upgrade(url)
    return url


def read_session(url: str | None = None) -> Session:
    return Session(get_engine(resolve_url(url)))


@contextmanager
def read_connection(url: str | None = None) -> Iterator[Connection]:
    with get_engine(resolve_url(url)).connect() as conn:
        yield conn


@contextmanager
def write_connection(url: str | None = None) -> Iterator[Connection]:
    """One write transaction (committed when the block ends, rolled back if it raises).

    On SQLite the writers of this process also queue on a lock here, in Python: SQLite admits one
    writer at a time, and a writer that finds the database locked backs off in sleeps of 1, 2,
    5, 10... ms, so dozens of task threads contending for it spend most of their time asleep
    (measured: 400 one-text jobs took 7 s, with each job's wait dominated by this). Handing the
    lock over in-process is immediate; other processes still meet SQLite's own locking.
    """
    url = resolve_url(url)
    lock = None
    if is_sqlite(url):
        with _locks_guard:
            lock = _write_locks.setdefault(url, threading.Lock())
    engine = get_engine(url, write=True)
    if lock is None:
        with engine.begin() as conn:
            yield conn
    else:
        with lock, engine.begin() as conn:
            yield conn
