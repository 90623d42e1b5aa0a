"""Job validation at the worker's edge, and the settings object."""
from __future__ import annotations

import pytest

from schemas import InvalidJob, JobLimits, ServedModel, Settings, describe, validate_job

SERVED = ServedModel(name="all-MiniLM-L6-v2", aliases=frozenset({"all-MiniLM-L6-v2-f32"}), dim=384,
                     dims_allowed=(384,), prompts={})
GEMMA_LIKE = ServedModel(name="g", dim=768, dims_allowed=(768, 512, 256, 128),
                         prompts={"query": "task: search result | query: "})


def reject(raw, served=SERVED, limits=None) -> str:
    with pytest.raises(InvalidJob) as e:
        validate_job(raw, limits=limits, served=served)
    msg = str(e.value)
    assert "\n" not in msg, "reasons are stored and shown on one line"
    return msg


@pytest.mark.parametrize("raw, phrase", [
    (dict(texts=[]), "texts is empty"),
    (dict(texts="just a string"), "texts must be a list of strings, got str"),
    (dict(texts=None), "got NoneType"),
    (dict(texts=["ok", 7]), "texts[1] is int, not a string"),
    (dict(texts=["ok", ["nested"]]), "texts[1] is list"),
    (dict(texts=["ab\ud800cd"]), "texts[0] contains a lone surrogate U+D800 at character 2"),
    (dict(texts=["a\x00b"]), "texts[0] contains a NUL character"),
    (dict(texts=["x" * (10 << 20)]), "texts[0] has 10485760 characters; the limit is 65536"),
    (dict(texts=["a"], model="bert-base-uncased"), "unknown model 'bert-base-uncased'; this worker serves"),
    (dict(texts=["a"], dims=128), "dims=128 is not supported by all-MiniLM-L6-v2; allowed: 384"),
    (dict(texts=["a"], dims="384"), "dims must be an integer, got str"),
    (dict(texts=["a"], dims=True), "dims must be an integer, got bool"),
    (dict(texts=["a"], prompt_name="query"), "unknown prompt_name 'query'"),
    (dict(texts=["a"], normalize="yes"), "normalize must be true or false"),
    (dict(texts=["a"], model=5), "model must be a string"),
])
def test_bad_jobs_get_clear_reasons(raw, phrase):
    assert phrase in reject(raw)


def test_limits_are_enforced_and_named():
    limits = JobLimits(max_texts=3, max_chars=10, max_job_chars=15)
    assert "job has 4 texts; the limit is 3 (EMBEDQ_MAX_TEXTS)" in reject(dict(texts=["a"] * 4), limits=limits)
    assert "EMBEDQ_MAX_CHARS" in reject(dict(texts=["x" * 11]), limits=limits)
    assert "EMBEDQ_MAX_JOB_CHARS" in reject(dict(texts=["x" * 8, "y" * 8]), limits=limits)
    ok = validate_job(dict(texts=["x" * 10]), limits=limits, served=SERVED)
    assert ok.texts == ["x" * 10]


def test_good_jobs_pass_unchanged():
    req = validate_job(dict(texts=["", "  ", "héllo wörld 😀"], model="all-MiniLM-L6-v2-f32"), served=SERVED)
    assert req.texts == ["", "  ", "héllo wörld 😀"] and req.normalize is True and req.dims is None
    req = validate_job(dict(texts=("a", "b"), prompt_name="query", dims=256, normalize=False), served=GEMMA_LIKE)
    assert req.texts == ["a", "b"] and req.dims == 256 and req.prompt_name == "query" and req.normalize is False


def test_settings_come_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path))
    monkeypatch.setenv("EMBEDQ_BATCH_TOKENS", "2048")
    monkeypatch.setenv("EMBEDQ_BATCH_WAIT_MS", "2.5")
    monkeypatch.setenv("EMBEDQ_THREADS", "3")
    monkeypatch.delenv("EMBEDQ_BROKER_URL", raising=False)
    monkeypatch.delenv("EMBEDQ_DATABASE_URL", raising=False)
    monkeypatch.delenv("EMBEDQ_RESULT_BACKEND", raising=False)
    s = Settings()
    assert (s.batch_tokens, s.batch_wait_ms, s.threads) == (2048, 2.5, 3)
    # The embedded defaults live under HOME.
    assert s.broker() == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert s.database() == f"sqlite:///{tmp_path / 'embedq.sqlite'}"
    assert s.results().startswith("db+sqlite:///") and str(tmp_path) in s.results()
    monkeypatch.setenv("EMBEDQ_BROKER_URL", "redis://h:6379/2")
    assert Settings().results() == "redis://h:6379/2"


def test_bad_settings_are_refused(monkeypatch):
    monkeypatch.setenv("EMBEDQ_BATCH_TOKENS", "0")
    with pytest.raises(ValueError, match="batch_tokens"):
        Settings()
    monkeypatch.setenv("EMBEDQ_BATCH_TOKENS", "100")
    monkeypatch.setenv("EMBEDQ_ACTIVATIONS", "int4")
    with pytest.raises(ValueError, match="activations"):
        Settings()


def test_every_setting_is_documented():
    text = describe()
    for name, field in Settings.model_fields.items():
        assert f"EMBEDQ_{name.upper()}" in text
        assert field.description, f"{name} has no description"


def test_overflow_options():
    windowed = SERVED.model_copy(update={"max_tokens": 256})
    assert validate_job(dict(texts=["x"]), served=windowed).overflow == "truncate"
    assert validate_job(dict(texts=["x"], overflow=None), served=windowed).overflow == "truncate"
    ok = validate_job(dict(texts=["x"], overflow="chunk", overflow_overlap=127), served=windowed)
    assert (ok.overflow, ok.overflow_overlap) == ("chunk", 127)
    assert validate_job(dict(texts=["x"], overflow="reject"), served=windowed).overflow_overlap is None
    assert reject(dict(texts=["x"], overflow="cut"), windowed) == \
        "overflow must be one of 'truncate', 'reject', 'chunk', got 'cut'"
    assert reject(dict(texts=["x"], overflow="reject", overflow_overlap=3), windowed) == \
        "overflow_overlap applies only to overflow='chunk'"
    assert reject(dict(texts=["x"], overflow="chunk", overflow_overlap=1.5), windowed) == \
        "overflow_overlap must be an integer, got float"
    assert reject(dict(texts=["x"], overflow="chunk", overflow_overlap=128), windowed) == \
        "overflow_overlap=128 is too large for all-MiniLM-L6-v2: it must be below half its window of 256 tokens"
    # Without a served model (the gateway's first pass) only the model-free checks apply.
    assert validate_job(dict(texts=["x"], overflow="chunk", overflow_overlap=500)).overflow_overlap == 500


def test_default_chunk_overlap_fits_small_windows():
    from schemas import chunk_overlap

    assert chunk_overlap(None, 510) == 32 and chunk_overlap(None, 40) == 10 and chunk_overlap(7, 40) == 7
