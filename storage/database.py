"""A database: its engines, its schema brought to head once, and its in-process write lock.

Create one per process and URL with `connect()` and pass it to every storage call; nothing in
storage looks the database up by itself.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from . import engine as engines
from .migrate import upgrade


class Database:
    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.is_sqlite = engines.is_sqlite(url)
        self.engine = engines.create(url)
        # SQLite gets a second engine whose transactions take the write lock up front (engine.py).
        self.write_engine = engines.create(url, write=True) if self.is_sqlite else self.engine
        # On SQLite the writers of this process also queue on a lock here, in Python: SQLite admits
        # one writer at a time, and a writer that finds the database locked backs off in sleeps of
        # 1, 2, 5, 10... ms, so dozens of task threads contending for it spend most of their time
        # asleep (measured: 400 one-text jobs took 7 s, each job's wait dominated by this). Handing
        # the lock over in-process is immediate; other processes still meet SQLite's own locking.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if migrate:
            upgrade(self)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        """An ORM session for reading."""
        return Session(self.engine)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction, committed when the block ends, rolled back if it raises."""
        if self._write_lock is None:
            with self.write_engine.begin() as conn:
                yield conn
        else:
            with self._write_lock, self.write_engine.begin() as conn:
                yield conn

    def dispose(self) -> None:
        """Close every pooled connection (tests, and forked processes that must not share sockets)."""
        self.engine.dispose()
        self.write_engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"


_open: dict[str, Database] = {}
_open_lock = threading.Lock()


def connect(url: str | None = None) -> Database:
    """The process's Database for `url` (default: EMBEDQ_DATABASE_URL), opened and migrated once."""
    if url is None:
        from schemas.settings import get_settings

        url = get_settings().database()
    with _open_lock:
        db = _open.get(url)
        if db is None:
            db = _open[url] = Database(url)
        return db


def dispose_all() -> None:
    """Close and forget every Database that connect() opened (tests; after a fork)."""
    with _open_lock:
        for db in _open.values():
            db.dispose()
        _open.clear()
