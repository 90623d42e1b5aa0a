"""Engines for a database URL, set up for many concurrent writers.

SQLite: WAL so readers never wait for the writer, a busy timeout instead of instant "database is
locked" errors, and BEGIN IMMEDIATE on the write engine so a transaction takes the write lock up
front (a deferred one that reads first can fail at lock upgrade, which the busy timeout does not
cover). Reads use a second engine with ordinary deferred transactions so they don't queue behind
writers. Every SQLite connection loads sqlite-vec for nearest-neighbour search; Python builds
without extension loading (pyenv's default) fall back to the pysqlite3 wheel, which has it.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, QueuePool

class StorageError(RuntimeError):
    """The database cannot be used as configured."""


def _sqlite_module():
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        import pysqlite3.dbapi2 as mod  # type: ignore[import-not-found]
    except ImportError:
        raise StorageError(
            "this Python's sqlite3 cannot load extensions (sqlite-vec); install pysqlite3-binary "
            "or use a Python built with --enable-loadable-sqlite-extensions") from None
    return mod


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def create(url: str, write: bool = False) -> Engine:
    """A new engine for `url`; `write` gives SQLite's BEGIN IMMEDIATE engine (see above)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u, write)
    if u.get_backend_name() == "postgresql":
        # pre_ping: a worker outlives database restarts; a dead pooled connection is replaced
        # instead of failing the next job.
        return create_engine(u, pool_pre_ping=True, pool_size=8, max_overflow=16)
    return create_engine(u, pool_pre_ping=True)


def _sqlite_engine(u, write: bool) -> Engine:
    mod = _sqlite_module()
    db = u.database or ""
    memory = db in ("", ":memory:") or "mode=memory" in db
    if not memory:
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # Pooled, not opened per transaction: closing the last connection to a WAL database
    # checkpoints and fsyncs (~20 ms here, 600x a small write transaction). Connections move
    # between task threads but are never used by two at once.
    eng = create_engine(u, module=mod, poolclass=NullPool if memory else QueuePool, pool_size=8, max_overflow=64,
                        connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn, _record):
        import sqlite_vec

        dbapi_conn.enable_load_extension(True)
        sqlite_vec.load(dbapi_conn)
        dbapi_conn.enable_load_extension(False)
        # Driver-level transaction handling off: SQLAlchemy's "begin" hook below emits BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(eng, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return eng
