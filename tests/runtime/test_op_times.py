"""Model.op_times: the forward-pass time split and operation count `embedq bench runtime` rates the
matrix products with. The count is exact (every linear layer of every token), and the parts fit
inside the forward time the runtime reports."""
from __future__ import annotations

from native import Model


def test_linear_ops_count_every_matrix_product_and_times_fit_the_forward_pass(minilm_gguf_q8, corpus):
    m = Model(minilm_gguf_q8, threads=1)
    m.embed(["warm up"])
    m.op_times(reset=True)
    texts = [t for t in corpus if t.strip()][:32]
    enc = m.encode(texts)
    _, stats = m.embed_encoded(enc)
    t = m.op_times()
    h, ff, layers = 384, 1536, 6
    # Per token and layer: q, k, v and the output projection (h x h each), then h -> ff -> h.
    assert t["linear_ops"] == 2 * enc.tokens * layers * (4 * h * h + 2 * h * ff)
    assert 0 < t["attention_ms"] < t["linear_ms"] and t["linear_ms"] + t["attention_ms"] <= stats["forward_ms"] * 1.01
    assert m.op_times(reset=True)["linear_ops"] > 0 and m.op_times()["linear_ops"] == 0
