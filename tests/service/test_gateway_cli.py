"""`embedq http` refuses to listen beyond loopback without keys; `embedq jobs list|delete` list and
delete stored jobs (with their vectors and metrics)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

import storage
from gateway.server import UnsafeBind, check_bind, is_loopback
from schemas.settings import Settings
from storage import ClaimRequest, SaveRequest
from storage.models import Job

ROOT = Path(__file__).resolve().parents[2]


def embedq(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embedq", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_binding_beyond_loopback_needs_keys_or_an_explicit_flag(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    no_keys = Settings(home=tmp_path)
    check_bind(no_keys, "127.0.0.1")
    with pytest.raises(UnsafeBind):
        check_bind(no_keys, "0.0.0.0")
    check_bind(no_keys, "0.0.0.0", allow_no_keys=True)
    check_bind(Settings(home=tmp_path, api_keys="k"), "0.0.0.0")
    out = embedq("http", "--host", "0.0.0.0", env={"EMBEDQ_HOME": str(tmp_path), "EMBEDQ_API_KEYS": ""})
    assert out.returncode == 2 and "refusing to listen on 0.0.0.0 without API keys" in out.stderr


def store(db, job_id, texts):
    hashes = [storage.content_hash("fp", None, None, True, f"{job_id}{t}") for t in texts]
    storage.claim(db, ClaimRequest(job_id, model="m", prompt_name=None, dims=None, normalize=True, count=len(texts),
                                   worker="w", hashes=hashes))
    storage.save(db, SaveRequest(job_id, texts=texts, hashes=hashes, vectors=np.ones((len(texts), 4), np.float32),
                                 model="m", batch_ids=["b"], started=time.monotonic(), metrics=dict(
                                     queue_wait_ms=1.0, batch_wait_ms=1.0, tokenize_ms=1.0, forward_ms=1.0,
                                     batch_size=1, batch_jobs=1, tokens=1, truncated=0, cache_hits=0, worker="w")))


def test_jobs_list_and_delete_older_than(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    db = storage.connect(url)
    for name in ("old-a", "old-b", "new-c"):
        store(db, name, ["one", "two"])
    with db.write() as conn:
        for name in ("old-a", "old-b"):
            conn.execute(update(Job.__table__).where(Job.__table__.c.id == name)
                         .values(created_at=storage.list_jobs(db, limit=10)[0]["created_at"] - timedelta(days=9)))
    storage.dispose_all()
    env = {"EMBEDQ_DATABASE_URL": url, "EMBEDQ_HOME": str(tmp_path)}
    listed = embedq("jobs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["new-c", "old-b", "old-a"]
    assert embedq("jobs", "list", "--older-than", "7d", "--json", env=env).stdout.count('"status": "done"') == 2
    dry = embedq("jobs", "delete", "--older-than", "7d", "--dry-run", env=env)
    assert sorted(dry.stdout.split()) == ["old-a", "old-b"] and "would delete 2" in dry.stderr
    out = embedq("jobs", "delete", "--older-than", "7d", env=env)
    assert out.returncode == 0 and out.stdout.strip() == "deleted 2 job(s)"
    db = storage.connect(url)
    assert [j["job_id"] for j in storage.list_jobs(db)] == ["new-c"]
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM embeddings").scalar() == 2
        assert conn.exec_driver_sql("SELECT count(*) FROM job_metrics").scalar() == 1
    assert embedq("jobs", "delete", env=env).returncode == 2
    assert embedq("jobs", "delete", "new-c", env=env).stdout.strip() == "deleted 1 job(s)"
    assert embedq("jobs", "delete", "--older-than", "7x", env=env).returncode == 2
    storage.dispose_all()
