"""The HTTP gateway end to end: a real worker on real Redis, the gateway under uvicorn on 127.0.0.1,
and the official `openai` client. Vectors equal native.Model.embed exactly in both encodings;
every refusal comes back with its status in OpenAI's error shape; durable jobs, search, health,
models and Prometheus metrics."""
from __future__ import annotations

import base64
import time

import numpy as np
import openai
import pytest
import requests

import storage
from gateway.server import ServerThread
from schemas import InvalidJob, validate_job
from schemas.settings import Settings

pytestmark = pytest.mark.service

SERVICE_SETTINGS = {"batch_wait_ms": 2, "threads": 1, "slots": 16}
MODEL = "all-MiniLM-L6-v2-f32"  # the stem of the GGUF file the worker serves


@pytest.fixture(scope="module")
def worker(module_service):
    return module_service.start_worker("gw")


@pytest.fixture(scope="module")
def gateway(module_service, worker):
    with ServerThread(Settings()) as server:
        yield server


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def error_of(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["message"]
    return err


def vectors_of(data: list) -> np.ndarray:
    return np.array([d["embedding"] if isinstance(d, dict) else d.embedding for d in data], dtype=np.float32)


def wait_done(url: str, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = requests.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_openai_client_both_encodings_equal_the_runtime(client, service_model):
    texts = ["The gateway turns requests into jobs.", "Vectors come back exactly.", "ünïcode ✓ 日本語"]
    reference = service_model.embed(texts)
    as_floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    np.testing.assert_array_equal(vectors_of(as_floats.data), reference)
    assert [d.index for d in as_floats.data] == [0, 1, 2] and as_floats.model == MODEL
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens == service_model.encode(texts).tokens
    # Without encoding_format the client asks for base64 and decodes it itself.
    default = client.embeddings.create(model=MODEL, input=["new text for base64", *texts[:1]])
    np.testing.assert_array_equal(vectors_of(default.data), service_model.embed(["new text for base64", texts[0]]))
    raw = client.embeddings.create(model=MODEL, input="one string alone", encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(raw.data[0].embedding), dtype="<f4")
    np.testing.assert_array_equal(decoded, service_model.embed(["one string alone"])[0])


def test_usage_counts_the_inputs_tokens_cache_hits_included(gateway, module_service, service_model):
    texts = ["a sentence the cache will answer next time", "and another one"]
    first = requests.post(f"{gateway.url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=60)
    again = requests.post(f"{gateway.url}/v1/embeddings", json={"model": MODEL, "input": [*texts, "fresh"]},
                          timeout=60)
    assert first.json()["usage"]["prompt_tokens"] == service_model.encode(texts).tokens
    assert again.headers["X-Embedq-Cache-Hits"] == "2"
    usage = again.json()["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] == service_model.encode([*texts, "fresh"]).tokens
    # The job's own metrics count only what the model ran: the one text that was not cached.
    ran = storage.get_metrics(storage.connect(module_service.database_url), again.headers["X-Embedq-Job-Id"])
    assert ran["tokens"] == service_model.encode(["fresh"]).tokens and ran["cache_hits"] == 2
    np.testing.assert_array_equal(vectors_of(again.json()["data"]), service_model.embed([*texts, "fresh"]))


def test_dimensions_and_prompts_are_checked_against_the_served_model(client, gateway, service_model):
    ok = client.embeddings.create(model=MODEL, input=["full size"], dimensions=384, encoding_format="float")
    np.testing.assert_array_equal(vectors_of(ok.data), service_model.embed(["full size"]))
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input=["x"], dimensions=128)
    assert e.value.status_code == 400
    assert e.value.body["message"] == f"dims=128 is not supported by {MODEL}; allowed: 384"
    assert e.value.body["param"] == "dimensions"
    r = requests.post(f"{gateway.url}/v1/embeddings", json={"model": MODEL, "input": ["x"], "prompt_name": "query"})
    assert error_of(r, 400)["message"] == f"unknown prompt_name 'query'; {MODEL} has prompts: none"


def test_bad_input_is_refused_with_the_tasks_own_message(gateway, module_service):
    from worker.tasks import embed

    url = f"{gateway.url}/v1/embeddings"
    for bad in ([1, 2], [], ["fine", "bad\x00text"], None):
        with pytest.raises(InvalidJob) as task_error:
            embed.delay(bad).get(timeout=60)
        r = requests.post(url, json={"model": MODEL, "input": bad}, timeout=30)
        err = error_of(r, 400)
        assert err["message"] == str(task_error.value) and err["type"] == "invalid_request_error"
        assert err["param"] == "input"
    assert error_of(requests.post(url, json={"model": MODEL, "input": ["x"], "dims": 384}), 400)["param"] == "dims"
    assert error_of(requests.post(url, json={"model": MODEL, "input": ["x"], "encoding_format": "int8"}),
                    400)["param"] == "encoding_format"
    assert error_of(requests.post(url, json={"model": MODEL}), 400)["param"] == "input"
    assert error_of(requests.post(url, data=b"{not json", headers={"Content-Type": "application/json"}),
                    400)["code"] == "invalid_json"


def test_jobs_over_the_limits_get_413(gateway):
    texts = ["short"] * 1025
    r = requests.post(f"{gateway.url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=30)
    expected = None
    try:
        validate_job({"texts": texts}, limits=Settings().job_limits())
    except InvalidJob as e:
        expected = str(e)
    err = error_of(r, 413)
    assert err["message"] == expected == "job has 1025 texts; the limit is 1024 (EMBEDQ_MAX_TEXTS)"
    r = requests.post(f"{gateway.url}/v1/jobs", json={"model": MODEL, "input": ["x" * 65537]}, timeout=30)
    assert "the limit is 65536 (EMBEDQ_MAX_CHARS)" in error_of(r, 413)["message"]


def test_a_body_over_the_byte_limit_is_refused_before_it_is_read(module_service, worker):
    with ServerThread(Settings(max_job_chars=100)) as small:
        big = b'{"input": ["' + b"x" * (2 << 20) + b'"]}'
        err = error_of(requests.post(f"{small.url}/v1/embeddings", data=big, timeout=30), 413)
        assert err["code"] == "request_too_large"
        err = error_of(requests.post(f"{small.url}/v1/embeddings", json={"input": ["y" * 101]}, timeout=30), 413)
        assert "EMBEDQ_MAX_JOB_CHARS" in err["message"]


def test_a_model_no_worker_serves_gets_503(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.embeddings.create(model="text-embedding-3-small", input=["x"])
    assert e.value.status_code == 503 and e.value.body["code"] == "model_not_served"
    assert MODEL in e.value.body["message"]


def test_durable_jobs_submit_poll_fetch_list_delete(gateway, module_service, service_model):
    texts = [f"durable job text {i}" for i in range(5)]
    r = requests.post(f"{gateway.url}/v1/jobs", json={"model": MODEL, "input": texts}, timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.headers["Location"] == f"/v1/jobs/{job_id}" and r.json()["status"] == "queued"
    job = wait_done(gateway.url, job_id)
    assert job["status"] == "done" and job["count"] == 5 and job["dim"] == 384
    assert job["metrics"]["tokens"] == service_model.encode(texts).tokens and job["metrics"]["total_ms"] > 0
    # The same row the storage API reads.
    db = storage.connect(module_service.database_url)
    assert storage.get_job(db, job_id)["batch_ids"] == job["batch_ids"]
    for encoding in ("float", "base64"):
        v = requests.get(f"{gateway.url}/v1/jobs/{job_id}/vectors", params={"encoding_format": encoding}).json()
        got = vectors_of(v["data"]) if encoding == "float" else np.stack(
            [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in v["data"]])
        np.testing.assert_array_equal(got, service_model.embed(texts))
    listed = requests.get(f"{gateway.url}/v1/jobs", params={"limit": 1}).json()
    assert listed["data"][0]["id"] == job_id and listed["has_more"] is True and listed["last_id"] == job_id
    nxt = requests.get(f"{gateway.url}/v1/jobs", params={"limit": 1000, "after": job_id}).json()
    assert job_id not in {j["id"] for j in nxt["data"]} and len(nxt["data"]) >= 1
    deleted = requests.delete(f"{gateway.url}/v1/jobs/{job_id}")
    assert deleted.json() == {"object": "job.deleted", "id": job_id, "deleted": True}
    assert error_of(requests.get(f"{gateway.url}/v1/jobs/{job_id}"), 404)["code"] == "job_not_found"
    with pytest.raises(storage.JobNotFound):
        storage.get_vectors(db, job_id)


def test_a_job_sent_with_embed_delay_is_the_same_job_over_http(gateway, service_model):
    from worker.tasks import embed

    texts = ["sent through Celery", "read through HTTP"]
    summary = embed.delay(texts).get(timeout=60)
    job = requests.get(f"{gateway.url}/v1/jobs/{summary['job_id']}").json()
    assert job["id"] == summary["job_id"] and job["status"] == "done" and job["batch_ids"] == summary["batch_ids"]
    v = requests.get(f"{gateway.url}/v1/jobs/{summary['job_id']}/vectors").json()
    np.testing.assert_array_equal(vectors_of(v["data"]), service_model.embed(texts))


def test_unknown_jobs_and_routes_are_404_in_the_error_shape(gateway):
    for method, path in (("GET", "/v1/jobs/no-such-job"), ("GET", "/v1/jobs/no-such-job/vectors"),
                         ("DELETE", "/v1/jobs/no-such-job"), ("GET", "/v1/nothing-here")):
        error_of(requests.request(method, gateway.url + path), 404)
    assert error_of(requests.get(gateway.url + "/v1/jobs", params={"after": "nope"}), 400)["param"] == "after"
    assert error_of(requests.get(gateway.url + "/v1/embeddings"), 405)["type"] == "invalid_request_error"


def test_search_by_text_and_by_vector(gateway, service_model):
    texts = ["Volcanic eruptions release ash into the sky.", "A recipe for tomato soup with basil."]
    requests.post(f"{gateway.url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=60).raise_for_status()
    hits = requests.post(f"{gateway.url}/v1/search", json={"text": "lava and ash from a volcano", "k": 1}).json()
    assert hits["data"][0]["text"] == texts[0] and hits["model"] == MODEL
    q = service_model.embed(["soup made of tomatoes"])[0]
    by_list = requests.post(f"{gateway.url}/v1/search", json={"vector": q.tolist(), "k": 1, "model": MODEL}).json()
    by_b64 = requests.post(f"{gateway.url}/v1/search", json={
        "vector": base64.b64encode(q.astype("<f4").tobytes()).decode(), "k": 1}).json()
    assert by_list["data"][0]["text"] == by_b64["data"][0]["text"] == texts[1]
    assert by_list["data"][0]["score"] == pytest.approx(float(q @ service_model.embed([texts[1]])[0]), abs=1e-5)
    assert error_of(requests.post(f"{gateway.url}/v1/search", json={"k": 1}), 400)["message"].startswith("give exactly")
    assert error_of(requests.post(f"{gateway.url}/v1/search", json={"vector": [0.0] * 384}), 400)["param"] == "vector"


def test_health_and_models(gateway, worker):
    h = requests.get(f"{gateway.url}/health")
    assert h.status_code == 200, h.text
    body = h.json()
    assert body["status"] == "ok" and body["down"] == [] and body["workers"]["names"] == [worker.hostname]
    assert body["broker"]["ok"] and body["database"]["ok"] and body["workers"]["models"] == [MODEL]
    models = requests.get(f"{gateway.url}/v1/models").json()["data"]
    assert [(m["id"], m["dim"], m["max_tokens"], m["dims_allowed"]) for m in models] == [(MODEL, 384, 256, [384])]
    assert models[0]["workers"] == [worker.hostname] and "all-MiniLM-L6-v2-f32.gguf" in models[0]["aliases"]
    assert requests.get(f"{gateway.url}/v1/models/{MODEL}").json()["id"] == MODEL
    error_of(requests.get(f"{gateway.url}/v1/models/other-model"), 404)


def test_metrics_are_scraped_from_the_jobs_the_gateway_waited_for(gateway, service_model):
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict:
        text = requests.get(f"{gateway.url}/metrics").text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    before = scrape()
    texts = [f"metrics text {i} about rivers and mountains" for i in range(6)]
    for i in range(3):
        requests.post(f"{gateway.url}/v1/embeddings", json={"model": MODEL, "input": texts[2 * i:2 * i + 2]},
                      timeout=60).raise_for_status()
    after = scrape()

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    for part in ("queue_wait", "batch_wait", "tokenize", "forward", "persist", "total"):
        assert delta("embedq_job_latency_seconds_count", part=part) == 3
    assert delta("embedq_job_latency_seconds_sum", part="total") > delta("embedq_job_latency_seconds_sum",
                                                                          part="forward") > 0
    assert delta("embedq_tokens_total") == service_model.encode(texts).tokens
    assert delta("embedq_texts_total") == 6 and delta("embedq_cache_hits_total") == 0
    assert delta("embedq_gateway_jobs_total", outcome="done") == 3
    assert delta("embedq_job_batch_texts_count") == 3 and delta("embedq_job_tokens_per_second_count") == 3
    assert delta("embedq_http_requests_total", route="embeddings", status="200") == 3
    assert after[("embedq_jobs", (("status", "done"),))] >= 3
    assert after[("embedq_queue_depth", (("queue", gateway.settings.queue),))] == 0
    assert after[("embedq_workers", (("queue", gateway.settings.queue),))] == 1


def test_a_job_past_the_wait_gets_504_and_is_fetched_later(module_service, worker, service_model):
    texts = [f"paragraph {i}: " + "a long text keeps the forward pass busy for a while " * 12 for i in range(48)]
    with ServerThread(Settings(http_wait_s=0.05)) as impatient:
        r = requests.post(f"{impatient.url}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=60)
        err = error_of(r, 504)
        job_id = err["job_id"]
        assert err["code"] == "job_timeout" and err["job_url"] == f"/v1/jobs/{job_id}" == r.headers["Location"]
        assert f"/v1/jobs/{job_id}" in err["message"]
        job = wait_done(impatient.url, job_id, timeout=120)
        assert job["status"] == "done"
        v = requests.get(f"{impatient.url}/v1/jobs/{job_id}/vectors").json()
        np.testing.assert_array_equal(vectors_of(v["data"]), service_model.embed(texts))
        metrics = requests.get(f"{impatient.url}/metrics").text
        assert 'embedq_gateway_jobs_total{outcome="timeout"} 1.0' in metrics


def test_a_deep_queue_gets_429(module_service, worker):
    from worker.tasks import embed

    # A burst: the worker buffers SERVICE_SETTINGS["slots"] jobs, the rest wait in the broker queue
    # while it computes (each text runs to the model's 256-token maximum).
    burst = [embed.delay([f"burst job {i}: " + "tokens for the forward pass " * 60]) for i in range(60)]
    with ServerThread(Settings(http_max_queue=2)) as strict:
        depth = strict.gateway.broker.queue_depth(max_age=0)
        assert depth > 20
        r = requests.post(f"{strict.url}/v1/embeddings", json={"model": MODEL, "input": ["x"]}, timeout=30)
        err = error_of(r, 429)
        assert err["code"] == "queue_full" and r.headers["Retry-After"] == "1"
        assert "jobs waiting for a worker" in err["message"] and "EMBEDQ_HTTP_MAX_QUEUE=2" in err["message"]
        assert error_of(requests.post(f"{strict.url}/v1/jobs", json={"input": ["x"]}), 429)["code"] == "queue_full"
        assert requests.get(f"{strict.url}/health").json()["broker"]["queue_depth"] > 2
    assert all(p.get(timeout=120)["status"] == "done" for p in burst)
    with ServerThread(Settings(http_max_queue=2)) as again:  # drained: admitted again
        r = requests.post(f"{again.url}/v1/embeddings", json={"model": MODEL, "input": ["x"]}, timeout=60)
        assert r.status_code == 200, r.text


def test_api_keys(module_service, worker, service_model):
    with ServerThread(Settings(api_keys="first-key, second-key")) as locked:
        url = f"{locked.url}/v1/embeddings"
        body = {"model": MODEL, "input": ["guarded"]}
        assert error_of(requests.post(url, json=body), 401)["message"].startswith("missing API key")
        assert error_of(requests.post(url, json=body, headers={"Authorization": "Bearer wrong"}), 401)["type"] == \
            "authentication_error"
        assert error_of(requests.get(f"{locked.url}/metrics", headers={"Authorization": "Basic abc"}), 401)
        assert requests.get(f"{locked.url}/health").status_code == 200  # probes need no key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=locked.url + "/v1", api_key="nope", max_retries=0).embeddings.create(
                model=MODEL, input=["x"])
        client = openai.OpenAI(base_url=locked.url + "/v1", api_key="second-key", max_retries=0)
        got = client.embeddings.create(model=MODEL, input=["guarded"], encoding_format="float")
        np.testing.assert_array_equal(vectors_of(got.data), service_model.embed(["guarded"]))


def test_langchain_openai_embeddings_equal_the_runtime(gateway, service_model):
    # LangChain's OpenAIEmbeddings, the way frameworks reach an OpenAI-compatible server: its own
    # token-length check is off (it would need tiktoken's OpenAI vocabularies, not this model's).
    from langchain_openai import OpenAIEmbeddings

    lc = OpenAIEmbeddings(base_url=gateway.url + "/v1", api_key="unused", model=MODEL,
                          check_embedding_ctx_length=False, max_retries=0)
    docs = ["LangChain documents go through the gateway.", "Each one becomes a job.", "ünïcode ✓ 日本語 too"]
    np.testing.assert_array_equal(np.array(lc.embed_documents(docs), dtype=np.float32), service_model.embed(docs))
    query = "what does a document become?"
    np.testing.assert_array_equal(np.array(lc.embed_query(query), dtype=np.float32), service_model.embed([query])[0])
