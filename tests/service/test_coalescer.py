"""The coalescing buffer on the real runtime, in process: budget, deadline, splitting, keys,
deduplication and failure isolation. Jobs reach it as token ids (native.Encoded), as in the worker."""
from __future__ import annotations

import numpy as np
import pytest

from native import Encoded
from worker.backend import NativeBackend
from worker.coalescer import Coalescer, split


@pytest.fixture(scope="module")
def backend(minilm_gguf):
    return NativeBackend(minilm_gguf, threads=1)


@pytest.fixture(scope="module")
def ref(service_model):
    # References come from a second Model instance: a Model's embed() is not re-entrant, and the
    # coalescer's compute thread may be using the backend's one at the same time.
    return service_model


@pytest.fixture
def make_coalescer(backend):
    made = []

    def make(batch_tokens: int, batch_wait_ms: float) -> Coalescer:
        c = Coalescer(backend, batch_tokens, batch_wait_ms)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def sentences(n: int, start: int = 0) -> list[str]:
    return [f"sentence number {start + i} talks about {'rivers' if i % 2 else 'mountains'} and queues"
            for i in range(n)]


def test_split_respects_budget_and_keeps_order():
    assert split([3, 3, 3, 3], 6) == [(0, 2, 6), (2, 4, 6)]
    assert split([10, 2, 2], 6) == [(0, 1, 10), (1, 3, 4)]  # an oversized text rides alone
    assert split([1], 100) == [(0, 1, 1)]
    runs = split([5] * 17, 12)
    assert [a for a, _, _ in runs] == sorted(a for a, _, _ in runs)
    assert sum(b - a for a, b, _ in runs) == 17 and all(t <= 12 for *_, t in runs)


def test_many_jobs_share_batches_within_budget(make_coalescer, backend, ref):
    budget = 400
    c = make_coalescer(budget, batch_wait_ms=500)
    jobs = [sentences(3, 10 * j) for j in range(20)]
    tickets = [c.submit(backend.encode(t)) for t in jobs]
    for t, texts in zip(tickets, jobs):
        np.testing.assert_array_equal(t.wait(60), ref.embed(texts))
    records = list(c.history)
    assert len(records) < len(jobs) / 3, "20 jobs submitted together must share a few batches"
    assert all(r.tokens <= budget for r in records)
    assert sum(r.jobs for r in records) == len(jobs)
    # Each ticket names the batches it was in, and the batch really had that many jobs.
    by_id = {r.batch_id: r for r in records}
    for t in tickets:
        assert len(t.batch_ids) == 1 and by_id[t.batch_ids[0]].jobs == t.batch_jobs


def test_lone_job_is_flushed_by_the_deadline(make_coalescer, backend, ref):
    c = make_coalescer(batch_tokens=100_000, batch_wait_ms=1)
    texts = sentences(2)
    t = c.submit(backend.encode(texts))
    np.testing.assert_array_equal(t.wait(60), ref.embed(texts))
    assert len(c.history) == 1 and c.history[0].tokens < 100_000


def test_job_larger_than_budget_is_split_and_reassembled(make_coalescer, backend, ref):
    texts = sentences(25)
    encoded = backend.encode(texts)
    counts = encoded.lengths.tolist()
    budget = max(counts) * 4
    c = make_coalescer(budget, batch_wait_ms=1)
    t = c.submit(encoded)
    vectors = t.wait(60)
    assert len(t.batch_ids) >= sum(counts) // budget >= 2
    assert len(set(t.batch_ids)) == len(t.batch_ids)
    np.testing.assert_array_equal(vectors, ref.embed(texts))


def test_different_options_never_share_a_batch(make_coalescer, backend, ref):
    c = make_coalescer(batch_tokens=10_000, batch_wait_ms=300)
    a, b = sentences(4), sentences(4, 100)
    ta = c.submit(backend.encode(a), normalize=True)
    tb = c.submit(backend.encode(b), normalize=False)
    va, vb = ta.wait(60), tb.wait(60)
    assert set(ta.batch_ids).isdisjoint(tb.batch_ids)
    np.testing.assert_array_equal(va, ref.embed(a))
    np.testing.assert_array_equal(vb, ref.embed(b, normalize=False))
    assert not np.allclose(np.linalg.norm(vb, axis=1), 1.0)


def test_identical_texts_in_a_batch_are_computed_once(make_coalescer, backend, ref):
    c = make_coalescer(batch_tokens=10_000, batch_wait_ms=300)
    shared = sentences(3)
    t1 = c.submit(backend.encode(shared))
    t2 = c.submit(backend.encode(shared + ["one more"]))
    v1, v2 = t1.wait(60), t2.wait(60)
    assert t1.batch_ids == t2.batch_ids and c.history[-1].texts == 4
    np.testing.assert_array_equal(v1, v2[:3])


def test_a_failing_job_does_not_take_its_batch_down(make_coalescer, backend, ref):
    # The runtime rejects a token id outside the vocabulary; the tokenizer never makes one, which
    # is why it is slipped in here directly: the point is what happens to the others in the batch.
    c = make_coalescer(batch_tokens=10_000, batch_wait_ms=300)
    good = sentences(3)
    hostile = Encoded(ids=np.array([101, 10**6, 102], np.int32), lengths=np.array([3], np.int64),
                      truncated=np.array([False]), tokenize_ms=0.0)
    tg = c.submit(backend.encode(good))
    tb = c.submit(hostile)
    tg2 = c.submit(backend.encode(good[:1]))
    with pytest.raises(ValueError):
        tb.wait(60)
    np.testing.assert_array_equal(tg.wait(60), ref.embed(good))
    np.testing.assert_array_equal(tg2.wait(60), ref.embed(good[:1]))


def test_submit_after_close_is_refused(make_coalescer, backend, ref):
    c = make_coalescer(batch_tokens=100, batch_wait_ms=1)
    c.close()
    with pytest.raises(RuntimeError, match="shut down"):
        c.submit(backend.encode(["x"]))
