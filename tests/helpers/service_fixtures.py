"""Fixtures for the service and storage tests: real Redis, real PostgreSQL (pgserver, with
pgvector), SQLite, and worker processes that the tests start and always stop.

A pytest plugin of tests/conftest.py (pytest_plugins). Needs the `minilm_gguf`
fixture from conftest.py.

Redis: EMBEDQ_TEST_REDIS (default redis://127.0.0.1:6379), database number 11 only; it is flushed
at the start and end of the session and nothing else is touched. A service test whose server is not
there fails (it never skips): scripts/test.sh starts the servers first.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

import pytest

REDIS_BASE = os.environ.get("EMBEDQ_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
REDIS_DB = 11
REDIS_URL = f"{REDIS_BASE}/{REDIS_DB}"


def _unavailable(what: str) -> None:
    pytest.fail(f"{what} is required by the service tests (scripts/services.sh starts it)")


# -- Redis ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the dedicated test database on the real Redis server; flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        _unavailable(f"Redis at {REDIS_BASE}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


# -- PostgreSQL + pgvector (pgserver) ---------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL 16 server with pgvector, from the pgserver wheel; stopped at the end."""
    # The unix socket lives in this directory; keep its path short (108-byte socket path limit).
    data = Path(tempfile.mkdtemp(prefix="embedq-pg-"))
    with warnings.catch_warnings():
        # platformdirs (used by pgserver) warns when XDG_RUNTIME_DIR is unset, as in CI containers.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            import pgserver
        except ImportError:
            _unavailable("pgserver (pip install pgserver)")
        srv = pgserver.get_server(data, cleanup_mode="stop")
    srv.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    yield srv
    srv.cleanup()
    shutil.rmtree(data, ignore_errors=True)


def _pg_database(srv) -> tuple[str, str]:
    name = "t_" + uuid.uuid4().hex[:12]
    srv.psql(f"CREATE DATABASE {name};")
    uri = srv.get_uri(name)
    return name, uri.replace("postgresql://", "postgresql+psycopg://", 1)


def _drop_pg_database(srv, name: str, url: str) -> None:
    import storage

    storage.dispose_all()
    srv.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty PostgreSQL database (dropped afterwards)."""
    name, url = _pg_database(pg_server)
    yield url
    _drop_pg_database(pg_server, name, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """Each storage test runs on both backends: a fresh SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'embedq.sqlite'}"
        import storage

        storage.dispose_all()
    else:
        yield request.getfixturevalue("pg_url")


# -- the model ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def service_model(minilm_gguf):
    """The real all-MiniLM-L6-v2 runtime, to compute reference vectors the service must reproduce."""
    import native

    return native.Model(minilm_gguf, threads=1)


# -- worker processes ---------------------------------------------------------------------------------
def Service(redis_url: str, workdir: Path, model_path: Path, database_url: str | None = None, **settings):
    """A broker queue of its own (so test modules never share jobs), a database and the worker
    processes serving them (worker.processes.Deployment), named NAME@test."""
    from worker.processes import Deployment

    return Deployment(redis_url, workdir, model_path, database_url, queue="test-" + uuid.uuid4().hex[:8],
                      node="test", **settings)


@pytest.fixture
def make_service(redis_url, minilm_gguf, tmp_path):
    """Factory: make_service(**settings) -> Service (client configured); workers stopped afterwards."""
    made = []

    def make(**settings) -> Service:
        svc = Service(redis_url, tmp_path, minilm_gguf, **settings).client()
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


def _module_service(request, redis_url, minilm_gguf, tmp_path_factory, database_url=None):
    settings = dict(getattr(request.module, "SERVICE_SETTINGS", {}))
    return Service(redis_url, tmp_path_factory.mktemp("service"), minilm_gguf, database_url, **settings).client()


@pytest.fixture(scope="module")
def module_service(request, redis_url, minilm_gguf, tmp_path_factory):
    """One Service per test module, with the settings in the module's SERVICE_SETTINGS dict
    (e.g. {"batch_tokens": 1024}); the module starts the workers it needs."""
    svc = _module_service(request, redis_url, minilm_gguf, tmp_path_factory)
    yield svc
    svc.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_service_each_db(request, redis_url, minilm_gguf, tmp_path_factory):
    """module_service, twice: on SQLite, then on a fresh PostgreSQL database (as deployed). Every
    test of a module that uses it runs on both, one service (and its workers) at a time."""
    if request.param == "sqlite":
        svc = _module_service(request, redis_url, minilm_gguf, tmp_path_factory)
        yield svc
        svc.close()
        return
    srv = request.getfixturevalue("pg_server")
    name, url = _pg_database(srv)
    svc = _module_service(request, redis_url, minilm_gguf, tmp_path_factory, url)
    yield svc
    svc.close()
    _drop_pg_database(srv, name, url)
