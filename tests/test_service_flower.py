"""Task events reach Flower: it lists the worker and the tasks with their outcomes."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from schemas import InvalidJob

pytestmark = pytest.mark.service

SERVICE_SETTINGS = {"threads": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def test_flower_sees_workers_tasks_and_failures(module_service, tmp_path):
    pytest.importorskip("flower")
    port = free_port()
    env = {**os.environ, **module_service.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    log = open(tmp_path / "flower.log", "wb")
    flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.app", "flower", f"--port={port}",
                               "--address=127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              cwd=Path(__file__).resolve().parent.parent, start_new_session=True)
    try:
        # Flower only knows what happens after its event receiver is connected.
        deadline = time.monotonic() + 60
        while b"Connected to" not in (tmp_path / "flower.log").read_bytes():
            assert flower.poll() is None and time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
            time.sleep(0.1)
        worker = module_service.start_worker("flowered")
        from worker.tasks import embed

        ok = [embed.delay([f"flower sees job {i}"]) for i in range(3)]
        bad = embed.delay([])
        for r in ok:
            r.get(timeout=60)
        with pytest.raises(InvalidJob):
            bad.get(timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                tasks = get_json(f"http://127.0.0.1:{port}/api/tasks")
                workers = get_json(f"http://127.0.0.1:{port}/api/workers?refresh=1")
            except OSError:
                tasks, workers = {}, {}
            states = {t: v.get("state") for t, v in tasks.items()}
            if all(states.get(r.id) == "SUCCESS" for r in ok) and states.get(bad.id) == "FAILURE" \
                    and worker.hostname in workers:
                break
            assert time.monotonic() < deadline, f"Flower never showed the tasks: {states}, workers {list(workers)}"
            assert flower.poll() is None, (tmp_path / "flower.log").read_text()
            time.sleep(0.2)
        assert "texts is empty" in (tasks[bad.id].get("exception") or "")
        assert {v["name"] for v in tasks.values()} == {"embedq.embed"}
    finally:
        flower.send_signal(signal.SIGTERM)
        try:
            flower.wait(timeout=20)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait()
        log.close()
