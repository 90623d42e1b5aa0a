"""EmbeddingGemma through the HTTP API: its prompts through the `prompt_name` extension and its
Matryoshka sizes through `dimensions`, vectors equal to native.Model.embed with the same options."""
from __future__ import annotations

import numpy as np
import openai
import pytest

from gateway.server import ServerThread
from schemas.settings import Settings

pytestmark = [pytest.mark.service, pytest.mark.gemma, pytest.mark.slow]


def test_prompts_and_dimensions_reach_the_runtime(make_service, gemma_gguf):
    import native

    svc = make_service(model=str(gemma_gguf), threads=1, batch_wait_ms=2)
    svc.start_worker("gemma")
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
