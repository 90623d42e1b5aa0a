"""Qwen3 embedding models end to end on a random-weight Qwen3Model built from transformers' own
Qwen3Config and wrapped as a sentence-transformers folder with last-token pooling, Normalize and
Qwen3-Embedding's query prompt (tests/helpers/qwen3_models.py): our converter's file in llama.cpp's
layout, our vectors against sentence-transformers' at F32 (a mixed-length corpus, which
sentence-transformers pads on the left, texts past max_seq_length, the query prompt), F16/Q8_0
files, hostile files, converter refusals, and llama.cpp on the same folder and file. No Qwen3
weights are reachable offline, so no real model is used."""
from __future__ import annotations

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


@pytest.fixture(scope="module")
def st_model(qwen3_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(qwen3_dir), device="cpu")


# --------------------------------------------------------------------------- the file

def test_metadata(qwen3_gguf, qwen3_dir, qwen3_hf_tokenizer):
    cfg = json.loads((qwen3_dir / "config.json").read_text())
    k = kv(qwen3_gguf)
    assert k["general.architecture"] == "qwen3"
    assert k["qwen3.context_length"] == cfg["max_position_embeddings"]
    assert k["qwen3.embedding_length"] == cfg["hidden_size"]
    assert k["qwen3.feed_forward_length"] == cfg["intermediate_size"]
    assert k["qwen3.block_count"] == cfg["num_hidden_layers"]
    assert k["qwen3.attention.head_count"] == cfg["num_attention_heads"]
    assert k["qwen3.attention.head_count_kv"] == cfg["num_key_value_heads"] < cfg["num_attention_heads"]
    assert k["qwen3.attention.key_length"] == k["qwen3.attention.value_length"] == cfg["head_dim"]
    assert cfg["head_dim"] * cfg["num_attention_heads"] != cfg["hidden_size"]  # head size is its own setting
    assert k["qwen3.rope.freq_base"] == cfg["rope_parameters"]["rope_theta"]
    assert k["qwen3.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg["rms_norm_eps"])
    assert k["qwen3.pooling_type"] == int(gguf.PoolingType.LAST)
    assert k["tokenizer.ggml.model"] == "gpt2" and k["tokenizer.ggml.pre"] == "qwen2"
    tok = qwen3_hf_tokenizer
    eot, im_end = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert k["tokenizer.ggml.eos_token_id"] == eot and k["tokenizer.ggml.eot_token_id"] == im_end
    assert k["tokenizer.ggml.padding_token_id"] == eot
    assert k["tokenizer.ggml.add_eos_token"] is True and k["tokenizer.ggml.add_bos_token"] is False
    assert "tokenizer.ggml.bos_token_id" not in k
    # The embedding table's extra rows are padding entries, never produced.
    toks, types = k["tokenizer.ggml.tokens"], k["tokenizer.ggml.token_type"]
    assert len(toks) == cfg["vocab_size"] == len(tok) + 5
    assert toks[-1] == f"[PAD{len(toks) - 1}]" and types[-1] == gguf.TokenType.UNUSED
    assert types[eot] == gguf.TokenType.CONTROL and types[tok.convert_tokens_to_ids("<think>")] == gguf.TokenType.USER_DEFINED
    assert toks[:eot] == tok.convert_ids_to_tokens(list(range(eot)))
    tj = json.loads((qwen3_dir / "tokenizer.json").read_text())
    assert k["tokenizer.ggml.merges"] == [" ".join(m) for m in tj["model"]["merges"]]
    assert k["embedq.prompt_names"] == ["document", "query"] and k["embedq.prompt_texts"][1].startswith("Instruct: ")
    assert k["embedq.normalize"] is True and k["embedq.max_seq_length"] == 160


def test_tensors_equal_safetensors(qwen3_gguf, qwen3_dir):
    st = load_file(str(qwen3_dir / "model.safetensors"))
    got = tensors(qwen3_gguf)
    assert len(got) == len(st) == 2 + 11 * 3
    np.testing.assert_array_equal(matrix(got["token_embd.weight"]), st["embed_tokens.weight"])
    np.testing.assert_array_equal(matrix(got["blk.1.attn_k.weight"]), st["layers.1.self_attn.k_proj.weight"])
    np.testing.assert_array_equal(matrix(got["blk.2.ffn_norm.weight"]), st["layers.2.post_attention_layernorm.weight"])
    np.testing.assert_array_equal(matrix(got["blk.0.attn_q_norm.weight"]), st["layers.0.self_attn.q_norm.weight"])
    np.testing.assert_array_equal(matrix(got["output_norm.weight"]), st["norm.weight"])


def test_causal_lm_folder_converts_to_the_same_file(qwen3_dir, qwen3_gguf, tmp_path):
    # Qwen3ForCausalLM keeps the decoder under "model." and adds the LM head, which an
    # embedding file has no use for: the same tensors come out.
    from safetensors.numpy import save_file

    folder = tmp_path / "causal"
    shutil.copytree(qwen3_dir, folder)
    st = load_file(str(folder / "model.safetensors"))
    lm = {f"model.{k}": v for k, v in st.items()}
    lm["lm_head.weight"] = st["embed_tokens.weight"] * 2
    save_file(lm, str(folder / "model.safetensors"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["Qwen3ForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    out = conv.convert(folder, tmp_path / "causal.gguf", progress=False)
    a, b = tensors(out), tensors(qwen3_gguf)
    assert set(a) == set(b) and "output.weight" not in a
    for name, t in b.items():
        assert np.array_equal(np.asarray(a[name].data), np.asarray(t.data)), name


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_quantized_files(qwen3_dir, qwen3_gguf, corpus, tmp_path, out_type):
    out = conv.convert(qwen3_dir, tmp_path / f"{out_type}.gguf", out_type, progress=False)
    got = tensors(out)
    assert got["blk.0.attn_q_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert got["blk.0.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType[out_type.upper()]
    ref = Model(qwen3_gguf, threads=2).embed(corpus[:100])
    cos = cosines(Model(out, threads=2).embed(corpus[:100]), ref)
    print(f"\nQwen3 {out_type} vs F32: min cos {cos.min():.6f}, median {np.median(cos):.6f}")
    assert cos.min() > (0.9999 if out_type == "f16" else 0.99)


# --------------------------------------------------------------------------- vectors

@pytest.fixture(scope="module")
def edge_texts(corpus) -> list[str]:
    return ["", " ", "x", "<|endoftext|>", "a<|im_end|>b", "<think>\n\n</think>", "I'M here", corpus[3] * 3]


def test_vectors_match_sentence_transformers(qwen3_gguf, st_model, corpus, edge_texts):
    texts = corpus + edge_texts
    assert st_model.tokenizer.padding_side == "left"  # mixed lengths in a batch are padded on the left
    m = Model(qwen3_gguf, threads=2)
    ours, stats = m.embed_with_stats(texts)
    ref = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    cos = cosines(ours, ref)
    lengths = m.token_counts(texts)
    worst = int(np.argmin(cos))
    print(f"\nQwen3, {len(texts)} texts, {stats['truncated']} truncated: min cos {cos.min():.8f}, "
          f"median {np.median(cos):.8f}")
    # Past 64 tokens the causal attention spans several query chunks.
    assert stats["truncated"] >= 3 and sum(n > 64 for n in lengths) >= 10 and max(lengths) == m.max_tokens
    assert cos.min() >= COS_MIN, (worst, texts[worst][:80])


def test_query_prompt_matches_sentence_transformers(qwen3_gguf, st_model, corpus):
    texts = corpus[:80]
    m = Model(qwen3_gguf, threads=2)
    ours = m.embed(texts, prompt_name="query")
    ref = st_model.encode(texts, prompt_name="query", batch_size=16, convert_to_numpy=True)
    assert cosines(ours, ref).min() >= COS_MIN
    # The prompt changes the vectors (so the comparison above could fail).
    assert cosines(ours, m.embed(texts)).max() < 0.999


def test_last_token_is_the_vector(qwen3_gguf):
    # Causal attention and last-token pooling: a text's vector depends on every token, and a
    # prefix of a text gets the vector of that prefix alone.
    m = Model(qwen3_gguf, threads=1)
    a, b = m.embed(["alpha beta gamma", "alpha beta delta"])
    assert float(a @ b) < 0.999
    single = m.embed(["alpha beta"])[0]
    batched = m.embed(["alpha beta", "alpha beta gamma delta epsilon zeta"])[0]
    np.testing.assert_allclose(single, batched, atol=1e-6)


def test_token_offsets_are_refused_clearly(qwen3_gguf):
    # overflow="chunk" needs offsets, which the byte-level BPE does not track yet: one clear error.
    with pytest.raises(ValueError, match="'gpt2' tokenizer .* does not give token offsets"):
        Model(qwen3_gguf, threads=1).token_offsets("hello world")


# --------------------------------------------------------------------------- hostile files

def rewrite(src, dst, drop=(), **changes) -> None:
    """Copy a GGUF, replacing metadata values (key=(value, GGUFValueType, [sub type])), dropping
    keys in `drop`, and keeping the tensors."""
    r = GGUFReader(src)
    w = gguf.GGUFWriter(str(dst), arch=r.fields["general.architecture"].contents())
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop:
            continue
        if key in changes:
            value, vtype, *sub = changes.pop(key)
            w.add_key_value(key, value, vtype, sub_type=sub[0] if sub else None)
            continue
        value, vtype = field.contents(), field.types[0]
        w.add_key_value(key, value, vtype, sub_type=field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    for key, (value, vtype, *sub) in changes.items():
        w.add_key_value(key, value, vtype, sub_type=sub[0] if sub else None)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


U32, STR, ARR, BOOL = (gguf.GGUFValueType.UINT32, gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY,
                       gguf.GGUFValueType.BOOL)


@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.pre": ("llama-bpe", STR)}, "pre-tokenizer 'llama-bpe'"),
    ({"tokenizer.ggml.model": ("llama", STR)}, "tokenizer 'llama'"),
    ({"tokenizer.ggml.merges": (["\u0120 t", "nospace"], ARR, STR)}, "merge 1 is not two tokens"),
    ({"tokenizer.ggml.merges": (["\u0120 t", "zz\u00ff qq\u00ff"], ARR, STR)}, "missing from the vocabulary"),
    ({"tokenizer.ggml.token_type": ([1] * 7, ARR, gguf.GGUFValueType.INT32)}, "types"),
    ({"tokenizer.ggml.eos_token_id": (99999, U32)}, "eos_token_id"),
    ({"qwen3.attention.head_count_kv": (3, U32)}, "head_count_kv"),
    ({"qwen3.attention.key_length": (31, U32)}, "key_length"),
    ({"qwen3.attention.key_length": (1 << 30, U32)}, "key_length"),
    ({"qwen3.attention.value_length": (16, U32)}, "value_length"),
    ({"qwen3.attention.causal": (False, BOOL)}, "causal"),
    ({"qwen3.pooling_type": (1, U32)}, "pooling_type"),
    ({"qwen3.rope.freq_base": (float("nan"), gguf.GGUFValueType.FLOAT32)}, "freq_base"),
    ({"qwen3.attention.layer_norm_rms_epsilon": (0.0, gguf.GGUFValueType.FLOAT32)}, "epsilon"),
    ({"qwen3.block_count": (4, U32)}, "blk.3"),
    ({"qwen3.feed_forward_length": (7, U32)}, "ffn_gate"),
])
def test_hostile_files_raise_gguf_error(qwen3_gguf, tmp_path, change, message):
    bad = tmp_path / "bad.gguf"
    rewrite(qwen3_gguf, bad, **change)
    with pytest.raises(GGUFError, match=message):
        Model(bad, threads=1)


def test_hostile_token_types_and_sizes(qwen3_gguf, tmp_path):
    k = kv(qwen3_gguf)
    types = list(k["tokenizer.ggml.token_type"])
    types[5] = 42
    bad = tmp_path / "types.gguf"
    rewrite(qwen3_gguf, bad, **{"tokenizer.ggml.token_type": (types, ARR, gguf.GGUFValueType.INT32)})
    with pytest.raises(GGUFError, match="token type 42"):
        Model(bad, threads=1)
    short = tmp_path / "short.gguf"
    toks = list(k["tokenizer.ggml.tokens"])[:-1]
    rewrite(qwen3_gguf, short, **{"tokenizer.ggml.tokens": (toks, ARR, STR), "tokenizer.ggml.token_type": (
        list(k["tokenizer.ggml.token_type"])[:-1], ARR, gguf.GGUFValueType.INT32)})
    with pytest.raises(GGUFError, match="rows"):
        Model(short, threads=1)


# --------------------------------------------------------------------------- converter refusals

def _edit_folder(src, dst, config=None, tokenizer=None):
    shutil.copytree(src, dst)
    for name, edit in (("config.json", config), ("tokenizer.json", tokenizer)):
        if edit:
            data = json.loads((dst / name).read_text())
            edit(data)
            (dst / name).write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize("config, tokenizer, message", [
    (lambda c: c.update(attention_bias=True), None, "biases"),
    (lambda c: c.update(hidden_act="gelu"), None, "activation"),
    (lambda c: c.update(use_sliding_window=True), None, "sliding-window"),
    (lambda c: c.update(rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}), None, "RoPE"),
    (None, lambda t: t.update(normalizer={"type": "NFKC"}), "normalizer NFKC"),
    (None, lambda t: t["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\s+|\S+"), "pre-tokenizer"),
    (None, lambda t: t["model"].update(byte_fallback=True), "BPE options"),
])
def test_converter_refuses_what_the_runtime_cannot_reproduce(qwen3_dir, tmp_path, config, tokenizer, message):
    folder = _edit_folder(qwen3_dir, tmp_path / "edited", config, tokenizer)
    with pytest.raises(conv.ConversionError, match=message):
        conv.convert(folder, tmp_path / "out.gguf", progress=False)


# --------------------------------------------------------------------------- llama.cpp

@pytest.mark.slow
def test_layout_matches_llama_cpp_converter(qwen3_dir, qwen3_gguf, corpus, tmp_path):
    from helpers import peers

    # llama.cpp recognizes Qwen's pre-tokenizer by hashing real Qwen ids; ours is trained, so
    # the name the hash would give Qwen3-Embedding ("qwen2") is pinned.
    theirs = peers.llama_cpp_convert(qwen3_dir, tmp_path / "theirs.gguf", "f32", bpe_pre="qwen2")
    a, b = kv(qwen3_gguf), kv(theirs)
    for key in set(b) - {k for k in b if k.startswith("general.")}:
        assert key in a, key
        assert a[key] == b[key], key
    ta, tb = tensors(qwen3_gguf), tensors(theirs)
    assert set(ta) == set(tb)
    for name, t in tb.items():
        assert np.array_equal(np.asarray(ta[name].data), np.asarray(t.data)), name
    # And the runtime takes llama.cpp's file as it is (no embedq keys): same ids, same vectors.
    ours_m, theirs_m = Model(qwen3_gguf, threads=2), Model(theirs, threads=2)
    texts = [t for t in corpus if len(ours_m.tokenize(t)) <= ours_m.max_tokens][:80]
    assert all(ours_m.tokenize(t) == theirs_m.tokenize(t) for t in texts)
    np.testing.assert_allclose(theirs_m.embed(texts), ours_m.embed(texts), atol=1e-6)


@pytest.mark.slow
def test_llama_cpp_runs_our_file(qwen3_gguf, corpus):
    from bench.llama_peer import open_llama

    m = Model(qwen3_gguf, threads=2)
    ll = open_llama(qwen3_gguf, 160, mean_pooling=False)
    texts = [t for t in corpus if t.strip() and len(m.tokenize(t)) <= m.max_tokens][:60]
    same_ids = sum(ll.tokenize(t.encode(), add_bos=True, special=True) == m.tokenize(t) for t in texts)
    theirs = np.array([ll.embed(t, normalize=True) for t in texts], dtype=np.float32)
    cos = cosines(theirs, m.embed(texts))
    print(f"\nllama.cpp on our Qwen3 file: {same_ids}/{len(texts)} token ids equal, min cos {cos.min():.6f}, "
          f"median {np.median(cos):.6f}")
    assert len(texts) >= 40 and same_ids >= 0.9 * len(texts)
    assert np.median(cos) > 0.9999
