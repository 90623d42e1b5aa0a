"""The gateway when a part is missing: no worker (503 for work, /health says which part is down),
and, through `embedq http` in a subprocess, a broker and a database that cannot be reached."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from gateway.server import ServerThread
from schemas.settings import Settings

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]


def test_no_worker_gets_503_and_health_names_the_workers(make_service):
    make_service()  # broker and database up, no worker on this queue
    with ServerThread(Settings()) as gw:
        for path in ("/v1/embeddings", "/v1/jobs"):
            r = requests.post(gw.url + path, json={"model": "all-MiniLM-L6-v2-f32", "input": ["x"]}, timeout=30)
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["code"] == "no_worker" and err["type"] == "service_unavailable"
            assert gw.settings.queue in err["message"] and r.headers["Retry-After"] == "5"
        # Bad input is still told apart from a missing worker.
        assert requests.post(gw.url + "/v1/embeddings", json={"input": [3]}).status_code == 400
        health = requests.get(gw.url + "/health")
        assert health.status_code == 503
        body = health.json()
        assert body["down"] == ["workers"] and body["status"] == "unavailable"
        assert body["broker"]["ok"] and body["database"]["ok"] and body["workers"]["count"] == 0
        assert requests.get(gw.url + "/v1/models").json() == {"object": "list", "data": []}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_embedq_http_reports_an_unreachable_broker_and_database(tmp_path):
    port = free_port()
    env = {**os.environ, "EMBEDQ_HOME": str(tmp_path), "EMBEDQ_BROKER_URL": "redis://127.0.0.1:1/0",
           "EMBEDQ_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none", "EMBEDQ_HTTP_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "embedq", "http", "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=30)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.1)
        assert health.status_code == 503
        body = health.json()
        assert body["down"] == ["broker", "database", "workers"]
        assert body["broker"]["error"] and body["database"]["error"]
        r = requests.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": ["x"]}, timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_worker"
        r = requests.get(f"http://127.0.0.1:{port}/v1/jobs", timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
