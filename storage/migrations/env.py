"""Alembic environment. storage.migrate passes an open connection; the alembic CLI passes a URL."""
from __future__ import annotations

from alembic import context
from sqlalchemy import text

from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # storage.migrate sets the URL; from the alembic CLI it is the configured database.
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from schemas.settings import get_settings

    return get_settings().database()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    if connection.dialect.name == "postgresql":
        # Several workers may start at once; the first one migrates, the rest wait and find head.
        connection.execute(text("SELECT pg_advisory_xact_lock(7140231)"))
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
    else:
        from storage.engine import create

        with create(_url(), write=True).begin() as c:
            _run(c)
