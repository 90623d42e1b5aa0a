"""BERT variants users bring, on random-weight models built in the test run (tests/helpers/bert_models.py)
with all-MiniLM-L6-v2's real tokenizer: CLS pooling (as bge), the sentence-transformers max_seq_length
(texts past it truncated exactly where sentence-transformers cuts them), and DistilBERT, which has no
token-type embeddings. Token ids equal Hugging Face's; vectors match sentence-transformers at F32."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import GGUFReader

from native import Model
from native import convert as conv
from native.convert import ConversionError

pytestmark = pytest.mark.peers

COS_MIN = 0.99999
LONG = "a sentence that goes on " * 12 + "and on past every short limit"


def kv(path) -> dict:
    return {k: f.contents() for k, f in GGUFReader(path).fields.items() if not k.startswith("GGUF.")}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def st_vectors(folder, texts, normalize: bool) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    return st.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=normalize)


@pytest.fixture(scope="module")
def texts(corpus) -> list[str]:
    return corpus[:48] + [LONG, "", "x"]


@pytest.fixture(scope="module")
def cls_dir(tmp_path_factory, minilm_dir):
    from helpers.bert_models import build_st_folder

    return build_st_folder(tmp_path_factory.mktemp("bge") / "cls", minilm_dir, pooling="cls", normalize=True,
                           max_seq_length=16, seed=1)


@pytest.fixture(scope="module")
def distil_dir(tmp_path_factory, minilm_dir):
    from helpers.bert_models import build_st_folder

    return build_st_folder(tmp_path_factory.mktemp("distil") / "mean", minilm_dir, kind="distilbert",
                           pooling="mean", normalize=False, max_seq_length=40, seed=2)


def test_cls_pooling_and_max_seq_length_from_the_sentence_transformers_config(cls_dir, texts, tmp_path):
    path = conv.convert(cls_dir, tmp_path / "cls.gguf", progress=False)
    k = kv(path)
    assert k["bert.pooling_type"] == int(gguf.PoolingType.CLS)
    assert k["embedq.max_seq_length"] == 16 and k["embedq.normalize"] is True
    m = Model(path, threads=1)
    assert m.max_tokens == 16
    enc = m.encode([LONG])
    assert enc.tokens == 16 and enc.n_truncated == 1
    ours = m.embed(texts)
    ref = st_vectors(cls_dir, texts, normalize=True)
    cos = cosines(ours, ref)
    assert cos.min() >= COS_MIN, (cos.min(), int(cos.argmin()))


def test_distilbert_has_no_token_types_and_matches_sentence_transformers(distil_dir, texts, tmp_path):
    from transformers import AutoTokenizer

    path = conv.convert(distil_dir, tmp_path / "distil.gguf", progress=False)
    names = {t.name for t in GGUFReader(path).tensors}
    assert "token_types.weight" not in names and "blk.1.ffn_down.weight" in names
    assert kv(path)["general.architecture"] == "bert"
    m = Model(path, threads=1)
    hf = AutoTokenizer.from_pretrained(str(distil_dir))
    for t in texts:
        assert m.tokenize(t) == hf(t)["input_ids"], t
    ours = m.embed(texts, normalize=False)
    ref = st_vectors(distil_dir, texts, normalize=False)
    cos = cosines(ours, ref)
    assert cos.min() >= COS_MIN, (cos.min(), int(cos.argmin()))
    # Raw (unnormalized) vectors: the norms agree too, not only the directions.
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)


def test_distilbert_q8_0_converts_and_stays_close(distil_dir, texts, tmp_path):
    f32 = Model(conv.convert(distil_dir, tmp_path / "d32.gguf", progress=False), threads=1).embed(texts)
    q8 = Model(conv.convert(distil_dir, tmp_path / "d8.gguf", out_type="q8_0", progress=False), threads=1).embed(texts)
    assert cosines(f32, q8).min() >= 0.999


def test_distilbert_layout_matches_llama_cpp_which_runs_our_file(distil_dir, texts, tmp_path):
    from bench.llama_peer import open_llama

    from helpers import peers

    ours = conv.convert(distil_dir, tmp_path / "ours.gguf", progress=False)
    theirs = peers.llama_cpp_convert(distil_dir, tmp_path / "theirs.gguf", "f32")
    ta, tb = ({t.name: t for t in GGUFReader(p).tensors} for p in (ours, theirs))
    assert set(ta) == set(tb)
    for name, t in tb.items():
        assert np.array_equal(np.asarray(ta[name].data), np.asarray(t.data)), name
    a, b = kv(ours), kv(theirs)
    for key in ("bert.embedding_length", "bert.block_count", "bert.pooling_type", "tokenizer.ggml.token_type_count",
                "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "bert.attention.layer_norm_epsilon"):
        assert a[key] == b[key], key
    m = Model(ours, threads=1)
    ll = open_llama(ours, 64, threads=1, mean_pooling=False)
    short = [t for t in texts if t and len(m.tokenize(t)) <= m.max_tokens]
    theirs_v = np.array([ll.embed(t, normalize=False) for t in short], dtype=np.float32)
    cos = cosines(theirs_v, m.embed(short, normalize=False))
    assert len(short) >= 30 and np.median(cos) > 0.9999, (len(short), np.median(cos))


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_an_activation_the_runtime_lacks_is_refused_at_conversion(tmp_path, minilm_dir, kind):
    from helpers.bert_models import build_st_folder

    folder = build_st_folder(tmp_path / "relu", minilm_dir, kind=kind, activation="relu", layers=1)
    with pytest.raises(ConversionError, match="activation 'relu'"):
        conv.convert(folder, tmp_path / "relu.gguf", progress=False)
