"""Bring a database to the latest schema with Alembic, from code (workers and clients call this)."""
from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .engine import get_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_done: set[str] = set()
_lock = threading.Lock()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would eat a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str) -> None:
    """Migrate `url` to head, once per process. Safe when several processes start together: the
    upgrade runs in one write transaction (BEGIN IMMEDIATE on SQLite, an advisory lock on
    PostgreSQL), so the others wait and then find nothing to do."""
    with _lock:
        if url in _done:
            return
        if current_revision(url) != head_revision():
            cfg = alembic_config(url)
            with get_engine(url, write=True).begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        _done.add(url)


def forget(url: str | None = None) -> None:
    """Let the next upgrade() check again (tests that recreate a database)."""
    with _lock:
        if url is None:
            _done.clear()
        else:
            _done.discard(url)
