"""The gateway on the embedded default: SQLite broker, SQLite result backend, SQLite database, no
servers. The broker cannot broadcast, so the gateway learns what the worker serves from the
embedq.info task sent through the queue; everything else is the same as on Redis."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import openai
import pytest
import requests

from gateway.server import ServerThread
from schemas.settings import Settings

pytestmark = pytest.mark.service

MODEL = "all-MiniLM-L6-v2-f32"


@pytest.fixture
def embedded(tmp_path, minilm_gguf, monkeypatch):
    """A worker and this process's client on the embedded default: every URL unset, so the settings
    resolve them to SQLite files under EMBEDQ_HOME."""
    import storage
    from schemas.settings import get_settings
    from worker.app import configure
    from worker.processes import WorkerProcess

    env = {"EMBEDQ_HOME": str(tmp_path / "home"), "EMBEDQ_MODEL": str(minilm_gguf), "EMBEDQ_THREADS": "1",
           "EMBEDQ_BATCH_WAIT_MS": "2", "EMBEDQ_QUEUE": "embedded-test"}
    for name in ("EMBEDQ_BROKER_URL", "EMBEDQ_RESULT_BACKEND", "EMBEDQ_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    configure(get_settings())
    worker = WorkerProcess("embedded@test", tmp_path / "worker.log", env=env,
                           cwd=Path(__file__).resolve().parents[2]).start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        monkeypatch.undo()
        get_settings.cache_clear()
        configure(get_settings())
        storage.dispose_all()


def test_openai_client_health_models_and_jobs_on_the_embedded_default(embedded, service_model):
    worker = embedded
    settings = Settings()
    assert settings.broker().startswith("sqla+sqlite") and settings.results().startswith("db+sqlite")
    assert settings.database().startswith("sqlite")
    with ServerThread(settings) as gw:
        assert gw.gateway.broker.broadcasts is False
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        texts = ["the embedded broker is a SQLite file", "no Redis, no PostgreSQL"]
        for encoding in ("float", "base64"):
            got = client.embeddings.create(model=MODEL, input=texts, **({"encoding_format": "float"}
                                                                          if encoding == "float" else {}))
            np.testing.assert_array_equal(np.array([d.embedding for d in got.data], dtype=np.float32),
                                          service_model.embed(texts))
        # The second request was answered from the cache; usage still counts its input's tokens.
        assert got.usage.prompt_tokens == service_model.encode(texts).tokens
        models = requests.get(f"{gw.url}/v1/models").json()["data"]
        assert [(m["id"], m["workers"]) for m in models] == [(MODEL, [worker.hostname])]
        health = requests.get(f"{gw.url}/health")
        assert health.status_code == 200 and health.json()["broker"]["queue_depth"] == 0, health.text
        r = requests.post(f"{gw.url}/v1/jobs", json={"input": ["a durable job on SQLite"]})
        assert r.status_code == 202
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while (job := requests.get(f"{gw.url}/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline
            time.sleep(0.05)
        v = requests.get(f"{gw.url}/v1/jobs/{job_id}/vectors").json()
        np.testing.assert_array_equal(np.array([d["embedding"] for d in v["data"]], dtype=np.float32),
                                      service_model.embed(["a durable job on SQLite"]))
