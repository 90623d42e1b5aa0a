"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled 20 times a second.

kombu's virtual transports sleep `polling_interval` (1 s by default) whenever a queue is empty, so
on the embedded default a job enqueued into an idle worker waited up to a second before the
worker saw it. The SQLAlchemy channel hands every transport option to `create_engine()`, which
rejects unknown keywords, so the interval cannot be passed as the usual `polling_interval`
option; this subclass sets it instead. A poll is one indexed SELECT on a local file.
"""
from __future__ import annotations

from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

POLLING_INTERVAL_S = 0.05


class Transport(SQLAlchemyTransport):
    polling_interval = POLLING_INTERVAL_S
