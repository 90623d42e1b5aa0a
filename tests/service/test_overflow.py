"""Texts over the model's window, end to end with a real worker on real Redis and the gateway:
overflow="truncate" (the default: cut, counted), "reject" (the job fails naming the text and its
token count; 400 over HTTP) and "chunk" (token windows with offsets into the text, each embedded,
and one pooled vector per text; the metrics count the chunks; search returns chunks)."""
from __future__ import annotations

import numpy as np
import pytest
import requests

import storage
from gateway.server import ServerThread
from native import Encoded
from schemas import InvalidJob
from schemas.settings import Settings

pytestmark = pytest.mark.service

SERVICE_SETTINGS = {"batch_wait_ms": 2, "threads": 1, "slots": 8}
MODEL = "all-MiniLM-L6-v2-f32"
LONG = " ".join(f"Sentence {i} of the long document is about topic {i % 7}, café №{i}." for i in range(90))
SHORT = "A short text fits in one window."


@pytest.fixture(scope="module")
def worker(module_service):
    return module_service.start_worker("ovf")


@pytest.fixture(scope="module")
def db(module_service, worker):
    return storage.connect(module_service.database_url)


@pytest.fixture(scope="module")
def gateway(module_service, worker):
    with ServerThread(Settings()) as server:
        yield server


def embed_job(texts, **kw):
    from worker.tasks import embed

    result = embed.delay(texts, **kw)
    return result.id, result.get(timeout=120)


def test_long_text_is_over_the_window(service_model):
    assert len(service_model.tokenize(LONG)) > 3 * service_model.max_tokens


def test_truncate_is_the_default_and_counts_cut_texts(db, service_model):
    job_id, summary = embed_job([SHORT, LONG])
    assert summary["status"] == "done"
    np.testing.assert_array_equal(storage.get_vectors(db, job_id), service_model.embed([SHORT, LONG]))
    metrics = storage.get_metrics(db, job_id)
    assert metrics["truncated"] == 1 and metrics["chunks"] is None
    assert storage.get_chunks(db, job_id) == []


def test_reject_fails_the_job_naming_the_text_and_its_tokens(db, gateway, service_model):
    full = len(service_model.tokenize(LONG))
    expected = (f"texts[1] has {full} tokens (with the prompt and special tokens); {MODEL} takes at most "
                f"{service_model.max_tokens} (overflow='reject'; 1 of the job's texts are too long)")
    from worker.tasks import embed

    result = embed.delay([SHORT, LONG], overflow="reject")
    with pytest.raises(InvalidJob) as e:
        result.get(timeout=120)
    assert str(e.value) == expected
    job = storage.get_job(db, result.id)
    assert job["status"] == "failed" and job["error"] == expected
    # The cache holds LONG cut (from the truncate test): reject still sees it is too long.
    r = requests.post(f"{gateway.url}/v1/embeddings", timeout=120,
                      json={"model": MODEL, "input": [SHORT, LONG], "overflow": "reject"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == expected and r.json()["error"]["param"] == "input"
    # Texts that fit go through.
    _, summary = embed_job([SHORT], overflow="reject")
    assert summary["status"] == "done"


def test_overflow_options_are_validated(gateway):
    url = f"{gateway.url}/v1/embeddings"
    for body, message in (
        ({"overflow": "split"}, "overflow must be one of 'truncate', 'reject', 'chunk', got 'split'"),
        ({"overflow_overlap": 4}, "overflow_overlap applies only to overflow='chunk'"),
        ({"overflow": "chunk", "overflow_overlap": -1}, "overflow_overlap must be >= 0, got -1"),
        ({"overflow": "chunk", "overflow_overlap": 128},
         f"overflow_overlap=128 is too large for {MODEL}: it must be below half its window of 256 tokens"),
    ):
        r = requests.post(url, json={"model": MODEL, "input": ["x"], **body}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["message"] == message, r.text


def reference_windows(model, text: str, overlap: int):
    ids, offsets = model.token_offsets(text)
    size = model.max_tokens - 2
    out, start = [], 0
    while True:
        end = min(start + size, len(ids))
        out.append((start, end))
        if end == len(ids):
            return ids, offsets, out
        start = end - overlap


def test_chunk_stores_windows_with_offsets_and_a_pooled_vector(db, service_model):
    overlap = 16
    job_id, summary = embed_job([SHORT, LONG], overflow="chunk", overflow_overlap=overlap)
    assert summary["status"] == "done" and summary["count"] == 2
    chunks = storage.get_chunks(db, job_id)
    ids, offsets, wins = reference_windows(service_model, LONG, overlap)
    assert len(wins) >= 4
    # SHORT is one chunk with exactly embed's vector; LONG the reference windows.
    assert [(c["idx"], c["chunk"]) for c in chunks] == [(0, 0)] + [(1, k) for k in range(len(wins))]
    long_chunks = chunks[1:]
    assert [(c["token_start"], c["token_end"]) for c in long_chunks] == wins
    for c in long_chunks:
        a, b = c["token_start"], c["token_end"]
        assert (c["char_start"], c["char_end"]) == (offsets[a][0], offsets[b - 1][1])
        # The offsets slice the original text back (the token offsets themselves are HF's:
        # tests/runtime/test_token_offsets.py). A window may start inside a word, so the slice is
        # not re-tokenized: "##ing" alone would become "ing".
        assert c["text"] == LONG[c["char_start"]:c["char_end"]] and c["text"].strip() == c["text"]
        assert c["tokens"] == b - a + 2 <= service_model.max_tokens
    assert long_chunks[0]["char_start"] == 0 and long_chunks[-1]["char_end"] == len(LONG)
    # Each chunk's vector is the runtime's for [CLS] + window + [SEP].
    seqs = [np.concatenate([[101], ids[a:b], [102]]).astype(np.int32) for a, b in wins]
    ref, _ = service_model.embed_encoded(Encoded(np.concatenate(seqs), np.array([len(s) for s in seqs]),
                                                 np.zeros(len(seqs), bool)))
    np.testing.assert_allclose(np.stack([c["vector"] for c in long_chunks]), ref, rtol=0, atol=2e-6)
    # The pooled vector: the token-weighted mean of the chunks, renormalized.
    weights = np.array([b - a for a, b in wins], dtype=np.float64)
    pooled = (ref.astype(np.float64) * weights[:, None]).sum(0) / weights.sum()
    pooled /= np.linalg.norm(pooled)
    vectors = storage.get_vectors(db, job_id)
    assert vectors.shape == (2, 384)
    np.testing.assert_array_equal(vectors[0], service_model.embed([SHORT])[0])
    np.testing.assert_allclose(vectors[1], pooled, rtol=0, atol=2e-6)
    assert abs(np.linalg.norm(vectors[1]) - 1.0) < 1e-5
    metrics = storage.get_metrics(db, job_id)
    assert metrics["chunks"] == len(chunks) == len(wins) + 1
    assert metrics["tokens"] == sum(c["tokens"] for c in chunks) and metrics["truncated"] == 0


def test_chunk_over_http_and_chunk_search(db, gateway, service_model):
    r = requests.post(f"{gateway.url}/v1/embeddings", timeout=120,
                      json={"model": MODEL, "input": [LONG, SHORT], "overflow": "chunk"})
    assert r.status_code == 200, r.text
    job_id = r.headers["X-Embedq-Job-Id"]
    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    np.testing.assert_array_equal(got, storage.get_vectors(db, job_id))
    chunks = storage.get_chunks(db, job_id)
    # The default overlap: 32 tokens between consecutive windows.
    long_chunks = [c for c in chunks if c["idx"] == 0]
    assert [a["token_end"] - b["token_start"] for a, b in zip(long_chunks, long_chunks[1:])] == \
        [32] * (len(long_chunks) - 1)
    assert storage.get_metrics(db, job_id)["chunks"] == len(chunks)
    listed = requests.get(f"{gateway.url}/v1/jobs/{job_id}/chunks", timeout=30).json()["data"]
    assert [(c["index"], c["chunk"], c["char_start"], c["char_end"], c["text"]) for c in listed] == \
        [(c["idx"], c["chunk"], c["char_start"], c["char_end"], c["text"]) for c in chunks]
    np.testing.assert_array_equal(np.array([c["embedding"] for c in listed], np.float32),
                                  np.stack([c["vector"] for c in chunks]))
    # Search by the text of one chunk finds that chunk first, with its offsets.
    target = long_chunks[2]
    s = requests.post(f"{gateway.url}/v1/search", timeout=60,
                      json={"text": target["text"], "k": 3, "chunks": True}).json()
    hit = s["data"][0]
    # (the first chunk job stored LONG too, with other windows; either may be first, and both match)
    assert hit["text"] == LONG[hit["chunk"]["char_start"]:hit["chunk"]["char_end"]] == target["text"]
    assert hit["score"] > 0.99
    assert set(hit["chunk"]) == {"chunk", "token_start", "token_end", "char_start", "char_end"}
    # Without chunks=true the same search returns whole texts.
    whole = requests.post(f"{gateway.url}/v1/search", json={"text": SHORT, "k": 1}, timeout=60).json()["data"][0]
    assert whole["text"] == SHORT and "chunk" not in whole
