"""The gateway on the embedded default: SQLite broker, SQLite result backend, SQLite database, no
servers. The broker cannot broadcast, so the gateway learns what the worker serves from the
embedq.info task sent through the queue; everything else is the same as on Redis."""
from __future__ import annotations

import time

import numpy as np
import openai
import pytest
import requests

from gateway.server import ServerThread
from schemas.settings import Settings

pytestmark = pytest.mark.service

MODEL = "all-MiniLM-L6-v2-f32"


@pytest.fixture
def embedded(make_service, tmp_path):
    svc = make_service(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
                       result_backend=f"db+sqlite:///{tmp_path / 'results.sqlite'}", threads=1, batch_wait_ms=2)
    worker = svc.start_worker("embedded")
    return svc, worker


def test_openai_client_health_models_and_jobs_on_the_embedded_default(embedded, service_model):
    svc, worker = embedded
    settings = Settings()
    assert settings.broker().startswith("sqla+sqlite") and settings.results().startswith("db+sqlite")
    with ServerThread(settings) as gw:
        assert gw.gateway.broker.broadcasts is False
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        texts = ["the embedded broker is a SQLite file", "no Redis, no PostgreSQL"]
        for encoding in ("float", "base64"):
            got = client.embeddings.create(model=MODEL, input=texts, **({"encoding_format": "float"}
                                                                          if encoding == "float" else {}))
            np.testing.assert_array_equal(np.array([d.embedding for d in got.data], dtype=np.float32),
                                          service_model.embed(texts))
        assert got.usage.prompt_tokens == 0  # the second request was answered from the cache
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
