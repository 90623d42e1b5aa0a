"""XLM-RoBERTa end to end on random-weight models built from transformers' own XLMRobertaConfig
and wrapped as sentence-transformers folders (tests/helpers/xlmr_models.py): our converter's file in
llama.cpp's layout, our vectors against sentence-transformers' at F32 (mean and CLS pooling,
normalized and raw, texts past max_seq_length), a "<pad>" typed in a text, hostile files, and
llama.cpp on the same file. No XLM-R weights are reachable offline, so no real model is used."""
from __future__ import annotations

import base64
import json
import shutil

import gguf
import numpy as np
import pytest
from gguf import GGUFReader
from safetensors.numpy import load_file

from native import GGUFError, Model
from native import convert as conv

pytestmark = pytest.mark.peers

COS_MIN = 0.99999


def kv(path) -> dict:
    return {k: f.contents() for k, f in GGUFReader(path).fields.items() if not k.startswith("GGUF.")}


def tensors(path) -> dict:
    return {t.name: t for t in GGUFReader(path).tensors}


def matrix(t) -> np.ndarray:
    return np.asarray(t.data, dtype=np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def st_encode(folder, texts, normalize: bool) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    return st.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=normalize)


# --------------------------------------------------------------------------- the file

def test_metadata(xlmr_mean_gguf, xlmr_mean_dir, xlmr_hf_tokenizer):
    cfg = json.loads((xlmr_mean_dir / "config.json").read_text())
    tj = json.loads((xlmr_mean_dir / "tokenizer.json").read_text())
    k = kv(xlmr_mean_gguf)
    assert k["general.architecture"] == "bert"
    assert k["bert.context_length"] == cfg["max_position_embeddings"] - cfg["pad_token_id"] - 1
    assert k["bert.embedding_length"] == cfg["hidden_size"]
    assert k["bert.block_count"] == cfg["num_hidden_layers"]
    assert k["bert.attention.layer_norm_epsilon"] == pytest.approx(cfg["layer_norm_eps"])
    assert k["bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert k["tokenizer.ggml.model"] == "t5"
    assert k["tokenizer.ggml.token_type_count"] == 1
    assert k["tokenizer.ggml.add_space_prefix"] is True
    # HF's vocabulary, in HF's order, scores as tokenizer.json has them
    assert k["tokenizer.ggml.tokens"] == [p for p, _ in tj["model"]["vocab"]]
    assert k["tokenizer.ggml.scores"] == pytest.approx([s for _, s in tj["model"]["vocab"]])
    assert "embedq.tokenizer.scores_f64" not in k  # sentencepiece scores are float32 already
    types = k["tokenizer.ggml.token_type"]
    assert [types[i] for i in (0, 1, 2, 3, len(types) - 1)] == [3, 3, 3, 2, 3]
    assert set(types[4:-1]) == {int(gguf.TokenType.NORMAL)}
    charsmap = bytes(k["tokenizer.ggml.precompiled_charsmap"])
    assert charsmap == base64.b64decode(tj["normalizer"]["precompiled_charsmap"])
    tok = xlmr_hf_tokenizer
    assert (k["tokenizer.ggml.bos_token_id"], k["tokenizer.ggml.eos_token_id"]) == (tok.bos_token_id, tok.eos_token_id)
    assert (k["tokenizer.ggml.unknown_token_id"], k["tokenizer.ggml.padding_token_id"]) == (3, 1)
    assert k["tokenizer.ggml.mask_token_id"] == tok.mask_token_id
    assert k["tokenizer.ggml.add_bos_token"] is True and k["tokenizer.ggml.add_eos_token"] is True
    assert k["embedq.max_seq_length"] == 64 and k["embedq.normalize"] is True


def test_tensors_equal_safetensors_with_position_offset(xlmr_mean_gguf, xlmr_mean_dir):
    w = load_file(str(xlmr_mean_dir / "model.safetensors"))
    got = tensors(xlmr_mean_gguf)
    pos = w["embeddings.position_embeddings.weight"]
    # RoBERTa's positions start at padding_idx + 1 = 2: rows 0 and 1 are cut, row 1 kept aside
    np.testing.assert_array_equal(matrix(got["position_embd.weight"]), pos[2:])
    np.testing.assert_array_equal(np.float32(kv(xlmr_mean_gguf)["embedq.position_padding_row"]), pos[1])
    np.testing.assert_array_equal(matrix(got["token_embd.weight"]), w["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(matrix(got["token_types.weight"]), w["embeddings.token_type_embeddings.weight"])
    np.testing.assert_array_equal(matrix(got["blk.2.ffn_down.weight"]), w["encoder.layer.2.output.dense.weight"])
    np.testing.assert_array_equal(matrix(got["blk.0.attn_q.bias"]).ravel(), w["encoder.layer.0.attention.self.query.bias"])
    assert len(got) == 5 + 3 * 16


def test_sentencepiece_model_alone_gives_the_same_vocabulary(xlmr_mean_dir, xlmr_mean_gguf, tmp_path):
    # Folders without tokenizer.json: the .model rearranged as HF does (<s> <pad> </s> <unk> first, <mask> last).
    src = tmp_path / "sp-only"
    shutil.copytree(xlmr_mean_dir, src)
    (src / "tokenizer.json").unlink()
    out = conv.convert(src, tmp_path / "sp.gguf", progress=False)
    a, b = kv(out), kv(xlmr_mean_gguf)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.precompiled_charsmap",
                "tokenizer.ggml.add_space_prefix"):
        assert a[key] == b[key], key
    # Without tokenizer.json's flags, <mask> takes the white space on its left as XLMRobertaTokenizer
    # declares (the test's tokenizer.json, written by transformers from the .model, says lstrip=False;
    # the Metaspace split drops that white space anyway, so the ids agree either way).
    assert a["embedq.tokenizer.lstrip"] == [a["tokenizer.ggml.mask_token_id"]]
    assert a["tokenizer.ggml.scores"] == pytest.approx(b["tokenizer.ggml.scores"])


def test_scores_that_float32_would_round_are_kept_in_double(xlmr_mean_dir, corpus, tmp_path):
    src = tmp_path / "f64"
    shutil.copytree(xlmr_mean_dir, src)
    tj = json.loads((src / "tokenizer.json").read_text())
    for entry in tj["model"]["vocab"][4:-1]:
        entry[1] += 1e-12  # still the same float32, no longer the same double
    (src / "tokenizer.json").write_text(json.dumps(tj))
    out = conv.convert(src, tmp_path / "f64.gguf", progress=False)
    k = kv(out)
    assert k["embedq.tokenizer.scores_f64"] == [s for _, s in tj["model"]["vocab"]]
    from tokenizers import Tokenizer

    hf = Tokenizer.from_str(json.dumps(tj))
    m = Model(out, threads=1)
    assert all(m.tokenize(t) == hf.encode(t).ids for t in corpus[:150])


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_quantized_files(xlmr_mean_dir, xlmr_mean_gguf, corpus, tmp_path, out_type):
    out = conv.convert(xlmr_mean_dir, tmp_path / f"{out_type}.gguf", out_type, progress=False)
    got = tensors(out)
    assert got["position_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    ref = Model(xlmr_mean_gguf, threads=2).embed(corpus[:100])
    cos = cosines(Model(out, threads=2).embed(corpus[:100]), ref)
    assert cos.min() > (0.9999 if out_type == "f16" else 0.99)


# --------------------------------------------------------------------------- vectors

@pytest.fixture(scope="module")
def pad_texts(corpus) -> list[str]:
    # "<pad>" typed in a text is id 1, RoBERTa's padding_idx: it gets the padding
    # position and does not move the following tokens' positions.
    return ["<pad>", "a <pad> b", "<pad><pad>x", "text<pad>", "x <mask> <s> y </s>", corpus[5] + " <pad> " + corpus[6]]


def test_mean_pooling_matches_sentence_transformers(xlmr_mean_dir, xlmr_mean_gguf, corpus, pad_texts):
    texts = corpus + pad_texts
    m = Model(xlmr_mean_gguf, threads=2)
    ours, stats = m.embed_with_stats(texts)
    cos = cosines(ours, st_encode(xlmr_mean_dir, texts, normalize=True))
    worst = int(np.argmin(cos))
    print(f"\nXLM-R mean, {len(texts)} texts, {stats['truncated']} truncated: min cos {cos.min():.8f}, "
          f"median {np.median(cos):.8f}")
    assert stats["truncated"] >= 10  # past max_seq_length: both sides cut at 64 tokens
    assert cos.min() >= COS_MIN, (worst, texts[worst][:80])


def test_cls_pooling_raw_vectors_match_sentence_transformers(xlmr_cls_dir, xlmr_cls_gguf, corpus, pad_texts):
    texts = corpus + pad_texts
    m = Model(xlmr_cls_gguf, threads=2)
    assert m.info["normalize"] is False and kv(xlmr_cls_gguf)["bert.pooling_type"] == int(gguf.PoolingType.CLS)
    ours = m.embed(texts, normalize=False)
    ref = st_encode(xlmr_cls_dir, texts, normalize=False)
    cos = cosines(ours, ref)
    print(f"\nXLM-R CLS, {len(texts)} texts: min cos {cos.min():.8f}, median {np.median(cos):.8f}")
    assert cos.min() >= COS_MIN
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)


def test_padding_position_matters(xlmr_mean_dir, xlmr_mean_gguf, pad_texts, tmp_path):
    # The check above can fail: without the padding row (positions counted through a
    # typed <pad>, as llama.cpp does) the same texts no longer match sentence-transformers.
    plain = tmp_path / "no-pad-row.gguf"
    rewrite(xlmr_mean_gguf, plain, drop=("embedq.position_padding_row", "embedq.position_padding_id"))
    ref = st_encode(xlmr_mean_dir, pad_texts, normalize=True)
    assert cosines(Model(xlmr_mean_gguf, threads=1).embed(pad_texts), ref).min() >= COS_MIN
    cos = cosines(Model(plain, threads=1).embed(pad_texts), ref)
    assert (cos < COS_MIN).sum() >= 3, cos


# --------------------------------------------------------------------------- hostile files

def rewrite(src, dst, drop=(), **changes) -> None:
    """Copy a GGUF, replacing metadata values (key=(value, GGUFValueType)), dropping keys in
    `drop`, and keeping the tensors."""
    r = GGUFReader(src)
    w = gguf.GGUFWriter(str(dst), arch=r.fields["general.architecture"].contents())
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop:
            continue
        if key in changes:
            value, vtype = changes.pop(key)
        else:
            value, vtype = field.contents(), field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1] if key not in changes else None
            w.add_key_value(key, value, vtype, sub_type=sub)
        else:
            w.add_key_value(key, value, vtype)
    for key, (value, vtype) in changes.items():
        w.add_key_value(key, value, vtype)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.precompiled_charsmap": (b"\xff\xff\x00\x00abcd", gguf.GGUFValueType.ARRAY)}, "charsmap"),
    ({"tokenizer.ggml.unknown_token_id": (99999, gguf.GGUFValueType.UINT32)}, "unknown_token_id"),
    ({"embedq.position_padding_id": (99999, gguf.GGUFValueType.UINT32)}, "position_padding_id"),
    ({"embedq.position_padding_row": ([0.5, 1.0], gguf.GGUFValueType.ARRAY)}, "position_padding_row"),
    ({"tokenizer.ggml.scores": ([0.0] * 5, gguf.GGUFValueType.ARRAY)}, "scores"),
    ({"embedq.tokenizer.scores_f64": ([float("nan")] * 3002, gguf.GGUFValueType.ARRAY)}, "finite"),
    ({"embedq.tokenizer.lstrip": ([5], gguf.GGUFValueType.ARRAY)}, "not an added token"),
    ({"embedq.tokenizer.normalized": ([-1], gguf.GGUFValueType.ARRAY)}, "not an added token"),
])
def test_hostile_files_raise_gguf_error(xlmr_mean_gguf, tmp_path, change, message):
    bad = tmp_path / "bad.gguf"
    rewrite(xlmr_mean_gguf, bad, **change)
    with pytest.raises(GGUFError, match=message):
        Model(bad, threads=1)


# --------------------------------------------------------------------------- llama.cpp

@pytest.mark.slow
def test_layout_matches_llama_cpp_converter(xlmr_mean_dir, xlmr_mean_gguf, tmp_path):
    from helpers import peers

    theirs = peers.llama_cpp_convert(xlmr_mean_dir, tmp_path / "theirs.gguf", "f32")
    a, b = kv(xlmr_mean_gguf), kv(theirs)
    n = len(b["tokenizer.ggml.tokens"])
    for key in set(b) - {k for k in b if k.startswith("general.")}:
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            # llama.cpp reads sentencepiece.bpe.model, which has no <mask>: it leaves a
            # placeholder where HF (and we) put <mask>, the last id. The rest is identical.
            assert a[key][:n - 1] == b[key][:n - 1], key
            continue
        assert a[key] == b[key], key
    assert b["tokenizer.ggml.tokens"][-1].startswith("[PAD") and a["tokenizer.ggml.tokens"][-1] == "<mask>"
    ta, tb = tensors(xlmr_mean_gguf), tensors(theirs)
    assert set(ta) == set(tb)
    for name, t in tb.items():
        assert np.array_equal(np.asarray(ta[name].data), np.asarray(t.data)), name


@pytest.mark.slow
def test_llama_cpp_runs_our_file(xlmr_mean_gguf, corpus):
    from bench.llama_peer import open_llama

    m = Model(xlmr_mean_gguf, threads=2)
    ll = open_llama(xlmr_mean_gguf, 64, mean_pooling=False)
    texts = [t for t in corpus if t.strip() and len(m.tokenize(t)) <= m.max_tokens and "<" not in t][:60]
    same_ids = sum(ll.tokenize(t.encode(), add_bos=True, special=True) == m.tokenize(t) for t in texts)
    theirs = np.array([ll.embed(t, normalize=True) for t in texts], dtype=np.float32)
    cos = cosines(theirs, m.embed(texts))
    print(f"\nllama.cpp on our XLM-R file: {same_ids}/{len(texts)} token ids equal, min cos {cos.min():.6f}")
    assert len(texts) >= 40 and same_ids >= 0.9 * len(texts)
    assert np.median(cos) > 0.9999
