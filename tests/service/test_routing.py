"""Several models in one deployment: jobs are routed by model to the workers that serve it, one
broker, one database; a model nobody serves is refused at once (or queued for a worker to come)."""
from __future__ import annotations

import time

import numpy as np
import pytest

import native
import storage
from worker.routing import ModelNotServed, alias_queue

pytestmark = pytest.mark.service


def test_two_workers_two_models_one_broker_one_database(make_service, minilm_gguf, minilm_gguf_q8, service_model):
    svc = make_service(slots=8, batch_wait_ms=10)
    f32 = svc.start_worker("f32")  # EMBEDQ_MODEL of the deployment: also takes jobs naming no model
    q8 = svc.start_worker("q8", model=str(minilm_gguf_q8), serves_default="false")
    from worker.tasks import embed

    texts = ["routed by the model it names", "a second text"]
    by_stem = embed.delay(texts, model=minilm_gguf_q8.stem).get(timeout=120)
    by_path = embed.delay(texts[::-1], model=str(minilm_gguf_q8)).get(timeout=120)
    default = embed.delay(texts).get(timeout=120)
    by_f32 = embed.delay(texts, model=minilm_gguf.stem).get(timeout=120)

    db = storage.connect(svc.database_url)
    q8_model = native.Model(minilm_gguf_q8, threads=1)
    assert storage.get_metrics(db, by_stem["job_id"])["worker"] == q8.hostname
    assert storage.get_metrics(db, by_path["job_id"])["worker"] == q8.hostname
    np.testing.assert_array_equal(storage.get_vectors(db, by_stem["job_id"]), q8_model.embed(texts))
    for s in (default, by_f32):
        assert storage.get_metrics(db, s["job_id"])["worker"] == f32.hostname
        np.testing.assert_array_equal(storage.get_vectors(db, s["job_id"]), service_model.embed(texts))
    # The two files' vectors are told apart by their provenance, not only by name.
    assert storage.get_job(db, by_stem["job_id"])["model"] != storage.get_job(db, default["job_id"])["model"]


def test_a_model_nobody_serves_is_refused_at_once_or_waits_when_asked(make_service, minilm_gguf_q8):
    svc = make_service()
    svc.start_worker("only-f32")
    from worker.tasks import embed

    t = time.monotonic()
    with pytest.raises(ModelNotServed, match="no running worker serves model 'text-embedding-3-large'"):
        embed.delay(["x"], model="text-embedding-3-large")
    assert time.monotonic() - t < 2

    # Asked to wait, the job is queued for the model's queue and a worker started later takes it.
    r = embed.apply_async(args=[["for a worker yet to come"]], kwargs={"model": minilm_gguf_q8.stem},
                          wait_for_worker=True)
    svc.start_worker("late-q8", model=str(minilm_gguf_q8), serves_default="false")
    assert r.get(timeout=120)["model"] == minilm_gguf_q8.stem


def test_one_command_serves_several_models(make_service, minilm_gguf, minilm_gguf_q8):
    svc = make_service(slots=8)
    sup = svc.start_worker("duo", wait=False, args=["--model", str(minilm_gguf), "--model", str(minilm_gguf_q8)])
    sup.wait_for_log("duo-0@test ready.", timeout=120)
    sup.wait_for_log("duo-1@test ready.", timeout=120)
    from worker.tasks import embed

    a = embed.delay(["which model?"], model=minilm_gguf.stem).get(timeout=120)
    b = embed.delay(["which model?"], model=minilm_gguf_q8.stem).get(timeout=120)
    none = embed.delay(["no model named"]).get(timeout=120)
    db = storage.connect(svc.database_url)
    assert storage.get_metrics(db, a["job_id"])["worker"] == "duo-0@test"
    assert storage.get_metrics(db, b["job_id"])["worker"] == "duo-1@test"
    assert storage.get_metrics(db, none["job_id"])["worker"] == "duo-0@test"  # the first model takes them
    log = sup.log()
    assert alias_queue(svc.queue, minilm_gguf_q8.stem) in log
