"""The service's CLI against a real worker: enqueue a file, inspect a job, search, statistics
with a plot; and the README's demo (embedded broker and database, nothing else running)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import storage

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
SERVICE_SETTINGS = {"batch_wait_ms": 50, "threads": 2}


@pytest.fixture(scope="module")
def worker(module_service):
    return module_service.start_worker("cli")


def embedq(*argv: str) -> tuple[int, str]:
    from embedq.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(argv))
    return rc, out.getvalue()


def test_enqueue_job_search_stats(worker, module_service, service_model, tmp_path, minilm_gguf):
    lines = ["The moon orbits the earth.", "Bread is baked in an oven.", "Trains run on rails.",
             "The sun is a star.", "Soup is served hot."]
    f = tmp_path / "texts.txt"
    f.write_text("\n".join(lines) + "\n\n")
    rc, out = embedq("enqueue", str(f), "--per-job", "2", "--wait")
    assert rc == 0
    summaries = [json.loads(line) for line in out.splitlines()]
    assert [s["count"] for s in summaries] == [2, 2, 1] and {s["status"] for s in summaries} == {"done"}
    db = module_service.database_url
    got = np.concatenate([storage.get_vectors(storage.connect(db), s["job_id"]) for s in summaries])
    np.testing.assert_array_equal(got, service_model.embed(lines))

    jl = tmp_path / "jobs.jsonl"
    jl.write_text(json.dumps(["one job", "of two texts"]) + "\n" + json.dumps({"texts": []}) + "\n")
    rc, out = embedq("enqueue", str(jl), "--wait")
    assert rc == 1  # one of the two jobs is invalid
    ok, bad = (json.loads(line) for line in out.splitlines())
    assert ok["status"] == "done" and bad["status"] == "failed" and "texts is empty" in bad["error"]

    rc, out = embedq("job", summaries[0]["job_id"], "--vectors")
    shown = json.loads(out)
    assert rc == 0 and shown["status"] == "done" and shown["metrics"]["worker"] == worker.hostname
    np.testing.assert_array_equal(np.array(shown["vectors"], np.float32), got[:2])
    rc, out = embedq("job", bad["job_id"])
    assert rc == 1 and "texts is empty" in json.loads(out)["error"]
    assert embedq("job", "no-such-job")[0] == 1

    rc, out = embedq("search", "a train on the railway", "-k", "2", "--model", str(minilm_gguf))
    assert rc == 0 and out.splitlines()[0].endswith("Trains run on rails.")

    plot = tmp_path / "stats.png"
    rc, out = embedq("stats", "--plot", str(plot))
    assert rc == 0
    for word in ("mean", "median", "p95", "p99", "std", "min", "max", "queue_wait", "forward", "total"):
        assert word in out
    assert "4 done, 1 failed" in out and "success rate 80.00%" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    rc, out = embedq("stats", "--json", "--no-plot")
    stats = json.loads(out)
    assert stats["jobs"] == {"done": 4, "failed": 1, "running": 0} and stats["success_rate"] == 0.8
    total = stats["latency_ms"]["total_ms"]
    assert total["min"] <= total["median"] <= total["p95"] <= total["p99"] <= total["max"]


def test_enqueue_with_overflow_and_search_chunks(worker, module_service, tmp_path, minilm_gguf):
    long = " ".join(f"Paragraph {i} mentions harbours, lighthouses and tides." for i in range(60))
    f = tmp_path / "long.txt"
    f.write_text(long + "\n")
    rc, out = embedq("enqueue", str(f), "--overflow", "reject", "--wait")
    assert rc == 1 and "overflow='reject'" in json.loads(out)["error"]
    rc, out = embedq("enqueue", str(f), "--overflow", "chunk", "--overlap", "8", "--wait")
    job = json.loads(out)
    assert rc == 0 and job["status"] == "done"
    chunks = storage.get_chunks(storage.connect(module_service.database_url), job["job_id"])
    assert len(chunks) > 2 and [a["token_end"] - b["token_start"] for a, b in zip(chunks, chunks[1:])] == \
        [8] * (len(chunks) - 1)
    rc, out = embedq("search", chunks[1]["text"], "-k", "1", "--chunks", "--model", str(minilm_gguf))
    first = chunks[1]
    assert rc == 0 and out.splitlines()[0].split()[1:4] == [
        f"{job['job_id']}[0]", "chunk", "1"] and f"chars {first['char_start']}:{first['char_end']}" in out


def test_readme_demo_runs_on_embedded_parts(minilm_gguf, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDQ_")}
    env["EMBEDQ_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--model", str(minilm_gguf),
                          "--workdir", str(tmp_path / "demo")], capture_output=True, text=True, env=env,
                         timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broker   sqla+sqlite:///" in out.stdout and "database sqlite:///" in out.stdout
    assert out.stdout.count("2 x 384 float32") == 4
    nearest = out.stdout.split("nearest to")[1].splitlines()[1]
    assert "Kittens love to nap in sunny spots." in nearest or "cat" in nearest


def test_embedded_broker_polls_fast_and_round_trips(tmp_path):
    """The embedded broker is kombu's SQLAlchemy transport with a short poll (a job used to wait up
    to the default 1 s poll before a worker saw it); a message published on it comes back."""
    from celery import Celery
    from kombu import Queue

    from schemas.settings import Settings
    from worker.app import celery_config
    from worker.embedded_broker import POLLING_INTERVAL_S

    cfg = celery_config(Settings(home=tmp_path, broker_url=f"sqla+sqlite:///{tmp_path / 'b.sqlite'}"))
    assert cfg["broker_url"] == f"sqlite:///{tmp_path / 'b.sqlite'}"
    app = Celery("embedded-check")
    app.conf.update(cfg)
    with app.connection_for_write() as conn:
        assert conn.transport.polling_interval == POLLING_INTERVAL_S <= 0.1
        queue = Queue("probe", routing_key="probe")
        with conn.Producer() as producer:
            producer.publish({"n": 1}, routing_key="probe", declare=[queue], serializer="json")
        got = []
        with conn.Consumer(queue, callbacks=[lambda body, msg: (got.append(body), msg.ack())], accept=["json"]):
            conn.drain_events(timeout=5)
        assert got == [{"n": 1}]


def test_a_wait_that_times_out_reports_the_job_as_still_running(make_service, tmp_path):
    # No worker yet: the client's wait ends, the job does not. It is reported running with its id,
    # and finishes once a worker comes.
    svc = make_service()
    f = tmp_path / "one.txt"
    f.write_text("a job nobody serves yet\n")
    rc, out = embedq("enqueue", str(f), "--wait", "--timeout", "1")
    shown = json.loads(out)
    assert rc == 3 and shown["status"] == "running" and shown["job_id"] in shown["note"]
    svc.start_worker("late")
    from worker.app import app

    assert app.AsyncResult(shown["job_id"]).get(timeout=60)["status"] == "done"


def test_an_unreachable_broker_gives_one_clear_line_within_seconds(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("nowhere to go\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDQ_")}
    env.update(EMBEDQ_HOME=str(tmp_path / "home"), EMBEDQ_BROKER_URL="redis://127.0.0.1:1/0")
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "embedq", "enqueue", str(f)], capture_output=True, text=True,
                         env=env, timeout=60, cwd=tmp_path)
    elapsed = time.monotonic() - t
    assert out.returncode == 2 and elapsed < 5, (elapsed, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot enqueue: the broker at redis://127.0.0.1:1/0")
