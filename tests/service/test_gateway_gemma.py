"""EmbeddingGemma through the HTTP API: its prompts through the `prompt_name` extension and its
Matryoshka sizes through `dimensions`, vectors equal to native.Model.embed with the same options."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import openai
import pytest

from gateway.server import ServerThread
from schemas.settings import Settings

pytestmark = [pytest.mark.service, pytest.mark.gemma, pytest.mark.slow]


@pytest.fixture
def gemma_worker(redis_url, gemma_gguf, tmp_path, monkeypatch):
    """A worker serving EmbeddingGemma on Redis, its own queue and database; this process its client."""
    import storage
    from schemas.settings import get_settings
    from worker.app import configure
    from worker.processes import WorkerProcess

    env = {"EMBEDQ_BROKER_URL": redis_url, "EMBEDQ_RESULT_BACKEND": redis_url,
           "EMBEDQ_DATABASE_URL": f"sqlite:///{tmp_path / 'gemma.sqlite'}", "EMBEDQ_MODEL": str(gemma_gguf),
           "EMBEDQ_QUEUE": "gemma-" + uuid.uuid4().hex[:8], "EMBEDQ_THREADS": "1", "EMBEDQ_BATCH_WAIT_MS": "2",
           "EMBEDQ_HOME": str(tmp_path / "home")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    configure(get_settings())
    worker = WorkerProcess("gemma@test", tmp_path / "worker.log", env=env,
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


def test_prompts_and_dimensions_reach_the_runtime(gemma_worker, gemma_gguf):
    import native

    name = gemma_gguf.stem
    model = native.Model(gemma_gguf, threads=1)
    texts = ["what is a GGUF file?", "how are vectors stored?"]
    with ServerThread(Settings()) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        got = client.embeddings.create(model=name, input=texts, dimensions=256, encoding_format="float",
                                       extra_body={"prompt_name": "query"})
        vectors = np.array([d.embedding for d in got.data], dtype=np.float32)
        assert vectors.shape == (2, 256)
        np.testing.assert_array_equal(vectors, model.embed(texts, prompt_name="query", dims=256))
        assert got.usage.prompt_tokens == model.encode(texts, prompt_name="query").tokens
        doc = client.embeddings.create(model=name, input=texts[:1], extra_body={"prompt_name": "document"})
        np.testing.assert_array_equal(np.array(doc.data[0].embedding, dtype=np.float32),
                                      model.embed(texts[:1], prompt_name="document")[0])
        with pytest.raises(openai.BadRequestError) as e:
            client.embeddings.create(model=name, input=["x"], dimensions=100)
        assert e.value.body["message"] == f"dims=100 is not supported by {name}; allowed: " + ", ".join(
            map(str, model.dims_allowed))
        listed = client.models.list().data
        assert [(m.id, m.model_extra["dim"], {"query", "document"} <= set(m.model_extra["prompts"]))
                for m in listed] == [(name, 768, True)]
