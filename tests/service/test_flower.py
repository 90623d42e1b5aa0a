"""Task events reach Flower: it lists the worker and the tasks with their outcomes."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
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


def start_flower(env: dict, log_path: Path, *args: str) -> subprocess.Popen:
    log = open(log_path, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "embedq", "flower", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
                                start_new_session=True)
    finally:
        log.close()


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_flower_sees_workers_tasks_and_failures_but_no_texts(module_service, tmp_path):
    port = free_port()
    env = {**os.environ, **module_service.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    flower = start_flower(env, tmp_path / "flower.log", f"--port={port}")
    try:
        # Flower only knows what happens after its event receiver is connected.
        deadline = time.monotonic() + 60
        while b"Connected to" not in (tmp_path / "flower.log").read_bytes():
            assert flower.poll() is None and time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
            time.sleep(0.1)
        worker = module_service.start_worker("flowered")
        # Workers start without task events; Flower turns them on (it asks every few seconds).
        worker.wait_for_log("Events of group {task} enabled by remote", timeout=60)
        from worker.tasks import embed

        ok = [embed.delay([f"flower sees job {i}", "a secret text"]) for i in range(3)]
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
        assert tasks[ok[0].id]["args"] == "['<2 texts>']"
        assert not any("secret" in json.dumps(v) for v in tasks.values())
    finally:
        stop(flower)


def test_task_events_stop_when_no_one_watches(make_service):
    from worker.events import EventsWhileWatched

    svc = make_service()
    w = svc.start_worker("unwatched")
    # No Flower: the worker runs without task events (Flower's enable_events is what turns them on).
    from worker.app import app

    reply = app.control.inspect(destination=[w.hostname], timeout=5).active_queues()
    assert reply and w.hostname in reply
    assert "Events of group {task} enabled" not in w.log()
    watcher = EventsWhileWatched(quiet_s=0.3)

    class Dispatcher:
        groups = {"worker", "task"}

    class State:
        class consumer:
            event_dispatcher = Dispatcher()

    from celery.worker.control import Panel

    saved = dict(Panel.data)
    try:
        watcher.install()
        Panel.data["enable_events"](State)
        assert "task" in Dispatcher.groups
        deadline = time.monotonic() + 10
        while "task" in Dispatcher.groups:
            assert time.monotonic() < deadline, "task events were never turned off"
            time.sleep(0.05)
    finally:
        watcher.close()
        Panel.data.clear()
        Panel.data.update(saved)


def test_flower_refuses_what_would_expose_it(tmp_path, redis_url):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDQ_", "FLOWER_"))}
    embedded = {**base, "EMBEDQ_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "embedq", "flower"], env=embedded, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "Flower needs a Redis broker" in out.stderr
    redis_env = {**embedded, "EMBEDQ_BROKER_URL": redis_url}
    out = subprocess.run([sys.executable, "-m", "embedq", "flower", "--address", "0.0.0.0"], env=redis_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "without authentication" in out.stderr

    port = free_port()
    flower = start_flower({**redis_env, "EMBEDQ_FLOWER_BASIC_AUTH": "ops:s3cret"}, tmp_path / "auth.log",
                          "--address", "0.0.0.0", f"--port={port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                raise AssertionError("Flower answered without credentials")
            except urllib.error.HTTPError as e:
                assert e.code == 401
                break
            except OSError:
                assert flower.poll() is None and time.monotonic() < deadline, (tmp_path / "auth.log").read_text()
                time.sleep(0.2)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/workers",
                                     headers={"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
    finally:
        stop(flower)
