"""The ONNX Runtime peer (bench/onnx_peer.py) must measure what users would run: the whole
sentence-transformers model exported, so its FP32 vectors are sentence-transformers' own, and the
int8 file onnxruntime's dynamic quantization makes of it (smaller, and measurably less accurate)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.peers


def test_fp32_export_gives_sentence_transformers_vectors_and_int8_is_quantized(minilm_dir, st_minilm, corpus):
    from bench.onnx_peer import OnnxEncoder

    texts = [t for t in corpus if t.strip()][:96] + ["x", "a much longer text " * 40]
    ref = st_minilm.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    fp32 = OnnxEncoder(minilm_dir, "fp32", threads=2)
    got = np.concatenate([fp32.embed(texts[i:i + 32]) for i in range(0, len(texts), 32)])
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.99999, cos.min()  # padding, truncation at 256 and pooling included
    int8 = OnnxEncoder(minilm_dir, "int8", threads=2)
    size = lambda p: sum(f.stat().st_size for f in p.parent.iterdir())  # noqa: E731 (graph + weights)
    assert size(int8.path) < 0.4 * size(fp32.path)
    q = np.concatenate([int8.embed(texts[i:i + 32]) for i in range(0, len(texts), 32)])
    qcos = (q * ref).sum(1)
    assert np.isfinite(q).all() and 0.8 < np.median(qcos) < 0.9999, np.median(qcos)
