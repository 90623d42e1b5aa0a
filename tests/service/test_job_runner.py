"""The job pipeline in process (no broker): a job's texts are tokenized exactly once, the metrics
carry the runtime's own counts, cache hits are not tokenized at all, and every failure is recorded."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import storage
from schemas import InvalidJob
from schemas.settings import Settings
from worker.backend import NativeBackend
from worker.job_runner import JobFailed, record_failure, run_job
from worker.runtime import start_runtime, stop_runtime


@pytest.fixture
def rt(minilm_gguf, tmp_path):
    backend = NativeBackend(minilm_gguf, threads=1)
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}", batch_wait_ms=1,
                        max_texts=8)
    runtime = start_runtime(settings, backend=backend, name="inproc@test")
    yield runtime
    stop_runtime()
    storage.dispose_all()


def request(job_id: str) -> SimpleNamespace:
    return SimpleNamespace(id=job_id, hostname="inproc@test", headers={})


def test_each_computed_text_is_tokenized_exactly_once(rt, service_model):
    model = rt.backend.model
    texts = ["a first text about rivers", "a second one, about mountains " * 60, "a third"]
    before = model.texts_tokenized
    summary = run_job(rt, request("once"), texts)
    assert model.texts_tokenized - before == len(texts)
    np.testing.assert_array_equal(storage.get_vectors(rt.db, "once"), service_model.embed(texts))
    m = storage.get_metrics(rt.db, "once")
    # The stored counts are the runtime's own: tokens after truncation, and the one long text cut.
    encoded = service_model.encode(texts)
    assert (m["tokens"], m["truncated"]) == (encoded.tokens, 1) and encoded.n_truncated == 1
    assert summary["latency_ms"] == m["total_ms"] and m["total_ms"] >= m["persist_ms"] > 0

    # A repeat is served from the content-hash cache: nothing is tokenized, and only the new text is.
    before = model.texts_tokenized
    run_job(rt, request("again"), texts + ["one new text"])
    assert model.texts_tokenized - before == 1
    assert storage.get_metrics(rt.db, "again")["cache_hits"] == len(texts)


def test_a_prompt_is_applied_once_in_the_runtime(minilm_gguf, tmp_path, service_model):
    # MiniLM has no named prompts; a job asking for one is rejected before anything is tokenized.
    backend = NativeBackend(minilm_gguf, threads=1)
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'p.sqlite'}", batch_wait_ms=1)
    rt = start_runtime(settings, backend=backend, name="inproc@test")
    try:
        before = backend.model.texts_tokenized
        with pytest.raises(InvalidJob, match="unknown prompt_name 'query'"):
            run_job(rt, request("prompted"), ["x"], prompt_name="query")
        assert backend.model.texts_tokenized == before
    finally:
        stop_runtime()
        storage.dispose_all()


def test_failures_are_recorded_in_one_place_with_their_reason(rt):
    with pytest.raises(InvalidJob, match="limit is 8") as bad:
        run_job(rt, request("too-many"), [f"t{i}" for i in range(9)])
    # run_job raises; the task records. Nothing was written before the record.
    with pytest.raises(storage.JobNotFound):
        storage.get_job(rt.db, "too-many")
    record_failure(rt, "too-many", bad.value, texts=[f"t{i}" for i in range(9)])
    job = storage.get_job(rt.db, "too-many")
    assert (job["status"], job["count"]) == ("failed", 9) and "limit is 8" in job["error"]

    # A redelivery of a failed job is answered from its row, not recomputed.
    with pytest.raises(JobFailed, match="limit is 8"):
        run_job(rt, request("too-many"), ["now valid"])


class NaNBackend(NativeBackend):
    """The real runtime, except that its second vector comes out NaN, as from a corrupt model."""

    def embed_encoded(self, encoded, dims=None, normalize=True):
        vectors, stats = super().embed_encoded(encoded, dims, normalize)
        vectors[1:2] = np.nan
        return vectors, stats


def test_non_finite_vectors_fail_the_job_and_are_never_stored(minilm_gguf, tmp_path):
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'nan.sqlite'}", batch_wait_ms=1)
    rt = start_runtime(settings, backend=NaNBackend(minilm_gguf, threads=1), name="inproc@test")
    try:
        with pytest.raises(JobFailed, match=r"non-finite vector for texts\[1\] \(1 of 3 texts\)"):
            run_job(rt, request("nan"), ["one", "two", "three"])
        assert storage.get_job(rt.db, "nan")["status"] == "running"  # claimed, never stored as done
        with rt.db.read() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM embeddings").scalar() == 0
    finally:
        stop_runtime()
        storage.dispose_all()


def test_every_stored_vector_records_its_provenance(rt, service_model):
    texts = ["short", "a text long enough to be cut " * 60]
    run_job(rt, request("prov"), texts)
    encoded = service_model.encode(texts)
    with rt.db.read() as c:
        rows = c.exec_driver_sql("SELECT e.idx, e.model_hash, e.tokens, e.truncated, j.model_hash FROM embeddings e "
                                 "JOIN jobs j ON j.id = e.job_id WHERE e.job_id = 'prov' ORDER BY e.idx").all()
        model_file = c.exec_driver_sql("SELECT content_hash, architecture, weight_type, pooling, dim, size "
                                       "FROM model_files").all()
    h = rt.served.content_hash
    assert len(h) == 64 and h == hashlib.sha256(Path(rt.backend.path).read_bytes()).hexdigest()
    assert [tuple(r) for r in rows] == [(0, h, int(encoded.lengths[0]), False, h),
                                        (1, h, int(encoded.lengths[1]), True, h)]
    assert [tuple(r) for r in model_file] == [(h, "bert", "F32", "mean", 384, Path(rt.backend.path).stat().st_size)]
    # A cache hit copies the provenance of the row it came from.
    run_job(rt, request("prov-again"), texts[::-1])
    with rt.db.read() as c:
        again = c.exec_driver_sql("SELECT tokens, truncated FROM embeddings WHERE job_id = 'prov-again' "
                                  "ORDER BY idx").all()
    assert [tuple(r) for r in again] == [(int(encoded.lengths[1]), True), (int(encoded.lengths[0]), False)]


def test_the_cache_key_is_the_model_files_content_not_its_name(minilm_gguf, minilm_gguf_f16, tmp_path):
    # The same bytes under another name are the same model; other bytes (here the F16 file, a
    # re-conversion of the same weights) are another model, whatever the file is called.
    copy = tmp_path / "renamed.gguf"
    shutil.copyfile(minilm_gguf, copy)
    a, b, c = (NativeBackend(p, threads=1) for p in (minilm_gguf, copy, minilm_gguf_f16))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.content_hash == b.content_hash != c.content_hash


def test_the_cache_key_names_the_activations_that_ran(minilm_gguf_q8):
    # "auto" is keyed by what it resolved to on this CPU, so it shares cached vectors with that
    # explicit setting and never with the other one.
    auto = NativeBackend(minilm_gguf_q8, threads=1)
    resolved = auto.model.info["activations"]
    assert resolved in ("int16", "f32")
    other = "f32" if resolved == "int16" else "int16"
    assert auto.fingerprint == NativeBackend(minilm_gguf_q8, threads=1, activations=resolved).fingerprint
    assert auto.fingerprint != NativeBackend(minilm_gguf_q8, threads=1, activations=other).fingerprint
    assert auto.fingerprint.endswith("|" + resolved)
