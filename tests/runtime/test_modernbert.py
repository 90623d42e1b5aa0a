"""ModernBERT encoders end to end on random-weight ModernBertModels built from transformers' own
ModernBertConfig and wrapped as sentence-transformers folders (tests/helpers/modernbert_models.py):
one with mean pooling + Normalize, one with CLS pooling and no Normalize (gte-modernbert's
kind). Our converter's file in llama.cpp's layout (modern-bert), token ids against HF's, vectors
against sentence-transformers' at F32 (texts several local windows long, texts past
max_seq_length), the exact window bound, F16/Q8_0 files, hostile files, converter refusals, and
llama.cpp's converter on the same folder. No ModernBERT weights are reachable offline, so no real
model is used."""
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
U32, STR, ARR, BOOL, F32 = (gguf.GGUFValueType.UINT32, gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY,
                            gguf.GGUFValueType.BOOL, gguf.GGUFValueType.FLOAT32)


def kv(path) -> dict:
    return {k: f.contents() for k, f in GGUFReader(path).fields.items() if not k.startswith("GGUF.")}


def tensors(path) -> dict:
    return {t.name: t for t in GGUFReader(path).tensors}


def matrix(t) -> np.ndarray:
    return np.asarray(t.data, dtype=np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def rewrite(src, dst, **changes) -> None:
    """Copy a GGUF, replacing or adding metadata values (key=(value, GGUFValueType, [sub type]))."""
    r = GGUFReader(src)
    w = gguf.GGUFWriter(str(dst), arch=r.fields["general.architecture"].contents())
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value, vtype, *sub = changes.pop(key) if key in changes else (
            field.contents(), field.types[0], *([field.types[-1]] if field.types[0] == ARR else []))
        w.add_key_value(key, value, vtype, sub_type=sub[0] if sub else None)
    for key, (value, vtype, *sub) in changes.items():
        w.add_key_value(key, value, vtype, sub_type=sub[0] if sub else None)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --------------------------------------------------------------------------- models

@pytest.fixture(scope="module")
def mb_tokenizer(corpus):
    from helpers.modernbert_models import train_tokenizer

    return train_tokenizer(corpus)


@pytest.fixture(scope="module")
def mb_dir(tmp_path_factory, mb_tokenizer):
    from helpers.modernbert_models import build_st_folder

    return build_st_folder(tmp_path_factory.mktemp("modernbert") / "modernbert-embed-tiny", mb_tokenizer)


@pytest.fixture(scope="module")
def mb_gguf(mb_dir):
    return conv.convert(mb_dir, mb_dir.parent / "mean-f32.gguf", progress=False)


@pytest.fixture(scope="module")
def mb_cls_dir(tmp_path_factory, mb_tokenizer):
    from helpers.modernbert_models import build_st_folder

    return build_st_folder(tmp_path_factory.mktemp("modernbert-cls") / "gte-modernbert-tiny", mb_tokenizer,
                           pooling="cls", normalize=False, max_seq_length=120, layers=3, local_attention=10, seed=3)


@pytest.fixture(scope="module")
def st_model(mb_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(mb_dir), device="cpu")


@pytest.fixture(scope="module")
def edge_texts(corpus) -> list[str]:
    # [MASK] takes the white space on its left (lstrip), never the right, never past [CLS].
    return ["", " ", "x", "[CLS]", "a[MASK]b", "a [MASK] b", "a \t\u3000[MASK]", "[CLS] [MASK]", " [MASK] [MASK] ",
            "I'M here, it's 2024's  best\n\n\tend  ", "caf\u00e9 cafe\u0301",
            "   leading", "trailing   ", "x\r\ny", "\u00a0nbsp\u3000ideo", corpus[3] * 3]


# --------------------------------------------------------------------------- the file

def test_metadata(mb_gguf, mb_dir):
    from transformers import AutoTokenizer

    cfg = json.loads((mb_dir / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(mb_dir))
    k = kv(mb_gguf)
    a = "modern-bert."
    assert k["general.architecture"] == "modern-bert"
    assert k[a + "context_length"] == cfg["max_position_embeddings"]
    assert k[a + "embedding_length"] == cfg["hidden_size"]
    assert k[a + "feed_forward_length"] == cfg["intermediate_size"]
    assert k[a + "block_count"] == cfg["num_hidden_layers"]
    assert k[a + "attention.head_count"] == cfg["num_attention_heads"]
    # llama.cpp's converter writes the RMS key, its loader reads the plain one.
    assert k[a + "attention.layer_norm_epsilon"] == k[a + "attention.layer_norm_rms_epsilon"]
    assert k[a + "attention.layer_norm_epsilon"] == pytest.approx(cfg["norm_eps"])
    assert k[a + "attention.causal"] is False
    assert k[a + "attention.sliding_window"] == cfg["local_attention"] == 16
    assert k[a + "attention.sliding_window_pattern"] == cfg["global_attn_every_n_layers"] == 3
    assert k[a + "rope.freq_base"] == cfg["rope_parameters"]["full_attention"]["rope_theta"] == 160000
    assert k[a + "rope.freq_base_swa"] == cfg["rope_parameters"]["sliding_attention"]["rope_theta"] == 10000
    assert k[a + "hidden_activation"] == "gelu"
    assert k[a + "pooling_type"] == int(gguf.PoolingType.MEAN)
    assert k["tokenizer.ggml.model"] == "gpt2" and k["tokenizer.ggml.pre"] == "modern-bert"
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert k["tokenizer.ggml.bos_token_id"] == k["tokenizer.ggml.cls_token_id"] == cls
    # [MASK] takes the white space on its left, as the tokenizer.json declares.
    assert list(k["embedq.tokenizer.lstrip"]) == [tok.mask_token_id] and "embedq.tokenizer.rstrip" not in k
    assert k["tokenizer.ggml.eos_token_id"] == k["tokenizer.ggml.seperator_token_id"] == sep
    assert k["tokenizer.ggml.add_bos_token"] is True and k["tokenizer.ggml.add_eos_token"] is True
    toks, types = k["tokenizer.ggml.tokens"], k["tokenizer.ggml.token_type"]
    assert len(toks) == cfg["vocab_size"] == len(tok) + 5
    assert toks[-1] == f"[PAD{len(toks) - 1}]" and types[-1] == gguf.TokenType.UNUSED
    assert types[cls] == types[sep] == gguf.TokenType.CONTROL and types[100] == gguf.TokenType.NORMAL
    assert types[tok.convert_tokens_to_ids("    ")] == gguf.TokenType.USER_DEFINED  # added, not special
    assert toks[:len(tok)] == tok.convert_ids_to_tokens(list(range(len(tok))))
    tj = json.loads((mb_dir / "tokenizer.json").read_text())
    assert k["tokenizer.ggml.merges"] == [" ".join(m) for m in tj["model"]["merges"]]
    assert k["embedq.normalize"] is True and k["embedq.max_seq_length"] == 200


def test_tensors_equal_safetensors(mb_gguf, mb_dir):
    st = load_file(str(mb_dir / "model.safetensors"))
    got = tensors(mb_gguf)
    # 3 outside the layers, 6 per layer, none for layer 0's attention norm (an identity).
    assert len(got) == len(st) == 3 + 6 * 4 - 1
    assert "blk.0.attn_norm.weight" not in got and "blk.1.attn_norm.weight" in got
    np.testing.assert_array_equal(matrix(got["token_embd.weight"]), st["embeddings.tok_embeddings.weight"])
    np.testing.assert_array_equal(matrix(got["token_embd_norm.weight"]), st["embeddings.norm.weight"])
    np.testing.assert_array_equal(matrix(got["blk.2.attn_qkv.weight"]), st["layers.2.attn.Wqkv.weight"])
    np.testing.assert_array_equal(matrix(got["blk.1.attn_output.weight"]), st["layers.1.attn.Wo.weight"])
    np.testing.assert_array_equal(matrix(got["blk.3.ffn_up.weight"]), st["layers.3.mlp.Wi.weight"])
    assert matrix(got["blk.3.ffn_up.weight"]).shape == (2 * 96, 64)
    np.testing.assert_array_equal(matrix(got["blk.0.ffn_down.weight"]), st["layers.0.mlp.Wo.weight"])
    np.testing.assert_array_equal(matrix(got["blk.3.ffn_norm.weight"]), st["layers.3.mlp_norm.weight"])
    np.testing.assert_array_equal(matrix(got["output_norm.weight"]), st["final_norm.weight"])


def test_masked_lm_folder_converts_to_the_same_file(mb_dir, mb_gguf, tmp_path):
    # ModernBertForMaskedLM keeps the encoder under "model." and adds the MLM head and decoder,
    # which an embedding file has no use for: the same tensors come out.
    from safetensors.numpy import save_file

    folder = tmp_path / "mlm"
    shutil.copytree(mb_dir, folder)
    st = load_file(str(folder / "model.safetensors"))
    mlm = {f"model.{k}": v for k, v in st.items()}
    mlm["head.dense.weight"] = np.ones((64, 64), np.float32)
    mlm["head.norm.weight"] = np.ones(64, np.float32)
    mlm["decoder.bias"] = np.zeros(len(st["embeddings.tok_embeddings.weight"]), np.float32)
    save_file(mlm, str(folder / "model.safetensors"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["ModernBertForMaskedLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    out = conv.convert(folder, tmp_path / "mlm.gguf", progress=False)
    a, b = tensors(out), tensors(mb_gguf)
    assert set(a) == set(b)
    for name, t in b.items():
        assert np.array_equal(np.asarray(a[name].data), np.asarray(t.data)), name


# --------------------------------------------------------------------------- tokens and vectors

def test_token_ids_equal_hf(mb_gguf, st_model, corpus, edge_texts):
    m = Model(mb_gguf, threads=1)
    texts = corpus + edge_texts
    differ = [t for t in texts if m.tokenize(t) != st_model.tokenizer(t)["input_ids"]]
    assert not differ, differ[:3]
    # No normalizer: a decomposed accent stays two characters, so the two spellings differ.
    assert m.tokenize("caf\u00e9") != m.tokenize("cafe\u0301")
    assert m.special_ids == (st_model.tokenizer.cls_token_id, st_model.tokenizer.sep_token_id)


def test_token_ids_equal_hf_on_random_text(mb_gguf, st_model):
    # GPT-2's split decides on letter / number / other / white-space classes: pieces of every
    # kind, from several scripts (superscript and Arabic-Indic digits are \p{N} too), packed
    # tightly so that every alternative of the regex meets every neighbour.
    rng = np.random.default_rng(5)
    pieces = ["a", "Z", "é", "ß", "Ж", "字", "ا", "1", "²", "٣", "Ⅻ", "'s", "'T", "'ll", "'re", "'", "!", "..", "€",
              "😀", "\u0301", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\u200b", "[SEP]", "[MASK]", "_"]
    m = Model(mb_gguf, threads=1)
    texts = ["".join(rng.choice(pieces, size=int(rng.integers(1, 25)))) for _ in range(400)]
    differ = [t for t in texts if m.tokenize(t) != st_model.tokenizer(t)["input_ids"]]
    assert not differ, differ[:3]


def test_vectors_match_sentence_transformers(mb_gguf, st_model, corpus, edge_texts):
    texts = corpus + edge_texts
    m = Model(mb_gguf, threads=2)
    ours, stats = m.embed_with_stats(texts)
    ref = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    cos = cosines(ours, ref)
    lengths = m.token_counts(texts)
    worst = int(np.argmin(cos))
    print(f"\nModernBERT mean, {len(texts)} texts, {stats['truncated']} truncated: min cos {cos.min():.8f}, "
          f"median {np.median(cos):.8f}")
    # Many texts are longer than the local window (16 tokens), some past max_seq_length.
    assert stats["truncated"] >= 3 and sum(n > 16 for n in lengths) >= 100 and max(lengths) == m.max_tokens
    assert cos.min() >= COS_MIN, (worst, texts[worst][:80])


def test_cls_pooling_without_normalize(mb_cls_dir, corpus, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = conv.convert(mb_cls_dir, tmp_path / "cls.gguf", progress=False)
    assert kv(out)["modern-bert.pooling_type"] == int(gguf.PoolingType.CLS)
    assert kv(out)["modern-bert.attention.sliding_window"] == 10
    m = Model(out, threads=2)
    texts = corpus[:150]
    ours = m.embed(texts, normalize=False)
    ref = SentenceTransformer(str(mb_cls_dir), device="cpu").encode(texts, batch_size=16, convert_to_numpy=True)
    # Not normalized: the lengths must agree too.
    assert abs(np.linalg.norm(ref, axis=1).mean() - 1) > 0.05
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)
    assert cosines(ours, ref).min() >= COS_MIN


def test_token_offsets_are_refused_clearly(mb_gguf):
    # overflow="chunk" needs offsets, which the byte-level BPE does not track yet: one clear error.
    with pytest.raises(ValueError, match="'gpt2' tokenizer .* does not give token offsets"):
        Model(mb_gguf, threads=1).token_offsets("hello world")


@pytest.mark.parametrize("window", [14, 18])
def test_window_bound_is_exact(mb_gguf, st_model, corpus, tmp_path, window):
    # transformers lets a windowed layer see |i - j| <= local_attention / 2 (8 here); a window one
    # token narrower or wider on each side gives vectors sentence-transformers does not.
    bad = tmp_path / f"w{window}.gguf"
    rewrite(mb_gguf, bad, **{"modern-bert.attention.sliding_window": (window, U32)})
    texts = [t for t in corpus if len(t) > 200][:60]
    ref = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    assert cosines(Model(mb_gguf, threads=2).embed(texts), ref).min() >= COS_MIN
    assert cosines(Model(bad, threads=2).embed(texts), ref).min() < COS_MIN


def test_global_layers_follow_the_pattern(mb_gguf, st_model, corpus, tmp_path):
    # Layers 0 and 3 global (every third): the same flags spelled as an array agree, other
    # flags do not.
    texts = [t for t in corpus if len(t) > 200][:60]
    ref = st_model.encode(texts, batch_size=16, convert_to_numpy=True)
    key = "modern-bert.attention.sliding_window_pattern"
    same, other = tmp_path / "same.gguf", tmp_path / "other.gguf"
    rewrite(mb_gguf, same, **{key: ([False, True, True, False], ARR, BOOL)})
    rewrite(mb_gguf, other, **{key: (2, U32)})
    assert cosines(Model(same, threads=2).embed(texts), ref).min() >= COS_MIN
    assert cosines(Model(other, threads=2).embed(texts), ref).min() < COS_MIN


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_quantized_files(mb_dir, mb_gguf, corpus, tmp_path, out_type):
    out = conv.convert(mb_dir, tmp_path / f"{out_type}.gguf", out_type, progress=False)
    got = tensors(out)
    assert got["blk.1.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert got["blk.0.attn_qkv.weight"].tensor_type == gguf.GGMLQuantizationType[out_type.upper()]
    ref = Model(mb_gguf, threads=2).embed(corpus[:100])
    cos = cosines(Model(out, threads=2).embed(corpus[:100]), ref)
    print(f"\nModernBERT {out_type} vs F32: min cos {cos.min():.6f}, median {np.median(cos):.6f}")
    assert cos.min() > (0.9999 if out_type == "f16" else 0.99)


# --------------------------------------------------------------------------- hostile files

@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.pre": ("qwen2", STR)}, "pre-tokenizer 'qwen2'"),
    ({"tokenizer.ggml.model": ("bert", STR)}, "tokenizer 'bert'"),
    ({"tokenizer.ggml.merges": (["\u0120 t", "nospace"], ARR, STR)}, "merge 1 is not two tokens"),
    ({"tokenizer.ggml.token_type": ([1] * 7, ARR, gguf.GGUFValueType.INT32)}, "types"),
    ({"tokenizer.ggml.cls_token_id": (99999, U32)}, "cls_token_id"),
    ({"modern-bert.hidden_activation": ("relu", STR)}, "hidden_activation"),
    ({"modern-bert.attention.causal": (True, BOOL)}, "causal"),
    ({"modern-bert.attention.head_count": (3, U32)}, "head_count"),
    ({"modern-bert.attention.head_count": (64, U32)}, "head size must be even"),
    ({"modern-bert.attention.sliding_window": (0, U32)}, "sliding_window"),
    ({"modern-bert.attention.sliding_window_pattern": (0, U32)}, "sliding_window_pattern"),
    ({"modern-bert.attention.sliding_window_pattern": ([True, False], ARR, BOOL)}, "one entry per layer"),
    ({"modern-bert.pooling_type": (3, U32)}, "pooling_type"),
    ({"modern-bert.rope.freq_base": (float("nan"), F32)}, "freq_base"),
    ({"modern-bert.rope.freq_base_swa": (0.0, F32)}, "freq_base_swa"),
    ({"modern-bert.attention.layer_norm_epsilon": (0.0, F32)}, "layer_norm_epsilon"),
    ({"modern-bert.attention.layer_norm_epsilon": (float("inf"), F32)}, "layer_norm_epsilon"),
    ({"modern-bert.block_count": (5, U32)}, "blk.4"),
    ({"modern-bert.feed_forward_length": (7, U32)}, "ffn_up"),
    ({"modern-bert.context_length": (2, U32)}, "context_length"),
])
def test_hostile_files_raise_gguf_error(mb_gguf, tmp_path, change, message):
    bad = tmp_path / "bad.gguf"
    rewrite(mb_gguf, bad, **change)
    with pytest.raises(GGUFError, match=message):
        Model(bad, threads=1)


def test_layer_zero_attention_norm_is_refused(mb_gguf, tmp_path):
    # transformers has no norm there; a file with one would be run differently by someone.
    r = GGUFReader(mb_gguf)
    bad = tmp_path / "norm0.gguf"
    w = gguf.GGUFWriter(str(bad), arch="modern-bert")
    for key, field in r.fields.items():
        if not key.startswith("GGUF.") and key != "general.architecture":
            vt = field.types[0]
            w.add_key_value(key, field.contents(), vt, sub_type=field.types[-1] if vt == ARR else None)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(64, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFError, match="blk.0.attn_norm.weight"):
        Model(bad, threads=1)


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
    (lambda c: c.update(hidden_activation="gelu_pytorch_tanh"), None, "activation"),
    (lambda c: c["rope_parameters"]["full_attention"].update(rope_type="yarn", factor=4.0), None, "RoPE"),
    (lambda c: c.update(layer_types=["full_attention"] * 3), None, "layer_types"),
    (None, lambda t: t.update(normalizer={"type": "NFC"}), "normalizer NFC"),
    (None, lambda t: t["pre_tokenizer"].update(add_prefix_space=True), "pre-tokenizer"),
    (None, lambda t: t["pre_tokenizer"].update(use_regex=False), "pre-tokenizer"),
    (None, lambda t: t["model"].update(byte_fallback=True), "BPE options"),
])
def test_converter_refuses_what_the_runtime_cannot_reproduce(mb_dir, tmp_path, config, tokenizer, message):
    folder = _edit_folder(mb_dir, tmp_path / "edited", config, tokenizer)
    with pytest.raises(conv.ConversionError, match=message):
        conv.convert(folder, tmp_path / "out.gguf", progress=False)


def test_irregular_layer_types_are_written_per_layer(mb_dir, corpus, tmp_path):
    # A config whose layer_types follow no period gets one flag per layer, which the runtime
    # reads back: vectors still match sentence-transformers on that folder.
    from sentence_transformers import SentenceTransformer

    folder = _edit_folder(mb_dir, tmp_path / "irregular", config=lambda c: c.update(
        layer_types=["full_attention", "sliding_attention", "full_attention", "sliding_attention"]))
    out = conv.convert(folder, tmp_path / "irregular.gguf", progress=False)
    assert list(kv(out)["modern-bert.attention.sliding_window_pattern"]) == [False, True, False, True]
    texts = [t for t in corpus if len(t) > 200][:40]
    ref = SentenceTransformer(str(folder), device="cpu").encode(texts, batch_size=16, convert_to_numpy=True)
    assert cosines(Model(out, threads=2).embed(texts), ref).min() >= COS_MIN


# --------------------------------------------------------------------------- llama.cpp

@pytest.mark.slow
def test_layout_matches_llama_cpp_converter(mb_dir, mb_gguf, corpus, tmp_path):
    from helpers import peers

    # llama.cpp recognizes ModernBERT's pre-tokenizer by hashing real ModernBERT ids; ours is
    # trained, so the name the hash gives ModernBERT ("modern-bert") is pinned.
    theirs = peers.llama_cpp_convert(mb_dir, tmp_path / "theirs.gguf", "f32", bpe_pre="modern-bert")
    a, b = kv(mb_gguf), kv(theirs)
    for key in set(b) - {k for k in b if k.startswith("general.")}:
        assert key in a, key
        assert a[key] == b[key], key
    ta, tb = tensors(mb_gguf), tensors(theirs)
    assert set(ta) == set(tb)
    for name, t in tb.items():
        assert np.array_equal(np.asarray(ta[name].data), np.asarray(t.data)), name
    # And the runtime takes llama.cpp's file as it is (no embedq keys): same ids, same vectors.
    ours_m, theirs_m = Model(mb_gguf, threads=2), Model(theirs, threads=2)
    texts = [t for t in corpus if len(ours_m.tokenize(t)) <= ours_m.max_tokens][:80]
    assert all(ours_m.tokenize(t) == theirs_m.tokenize(t) for t in texts)
    np.testing.assert_allclose(theirs_m.embed(texts), ours_m.embed(texts), atol=1e-6)


@pytest.mark.slow
def test_llama_cpp_runs_our_file(mb_gguf, corpus):
    from bench.llama_peer import open_llama

    m = Model(mb_gguf, threads=2)
    ll = open_llama(mb_gguf, 200, mean_pooling=False)
    texts = [t for t in corpus if t.strip() and len(m.tokenize(t)) <= m.max_tokens][:60]
    same_ids = sum(ll.tokenize(t.encode(), add_bos=True, special=True) == m.tokenize(t) for t in texts)
    theirs = np.array([ll.embed(t, normalize=True) for t in texts], dtype=np.float32)
    cos = cosines(theirs, m.embed(texts))
    print(f"\nllama.cpp on our ModernBERT file: {same_ids}/{len(texts)} token ids equal, min cos {cos.min():.6f}, "
          f"median {np.median(cos):.6f}")
    assert len(texts) >= 40 and same_ids >= 0.9 * len(texts)
    assert np.median(cos) > 0.9999


def test_transformers_4_config_keys(mb_dir, corpus, tmp_path):
    # Published ModernBERT configs predate layer_types / rope_parameters: they give
    # global_rope_theta, local_rope_theta and global_attn_every_n_layers. Bases other than the
    # defaults show that those keys are the ones read, by us and by transformers.
    from sentence_transformers import SentenceTransformer

    def old_style(c):
        del c["layer_types"], c["rope_parameters"]
        c.update(global_rope_theta=50000.0, local_rope_theta=2000.0, global_attn_every_n_layers=2)

    folder = _edit_folder(mb_dir, tmp_path / "v4", config=old_style)
    out = conv.convert(folder, tmp_path / "v4.gguf", progress=False)
    k = kv(out)
    assert k["modern-bert.rope.freq_base"] == 50000 and k["modern-bert.rope.freq_base_swa"] == 2000
    assert k["modern-bert.attention.sliding_window_pattern"] == 2
    texts = [t for t in corpus if len(t) > 200][:40]
    ref = SentenceTransformer(str(folder), device="cpu").encode(texts, batch_size=16, convert_to_numpy=True)
    assert cosines(Model(out, threads=2).embed(texts), ref).min() >= COS_MIN


def test_swiglu_derivative(mb_tokenizer, corpus, tmp_path):
    # Granite Embedding R2 is a ModernBERT with SiLU in the gated feed-forward (SwiGLU).
    from helpers.modernbert_models import build_st_folder
    from sentence_transformers import SentenceTransformer

    folder = build_st_folder(tmp_path / "swiglu", mb_tokenizer, pooling="cls", activation="silu", layers=3, seed=4)
    out = conv.convert(folder, tmp_path / "swiglu.gguf", progress=False)
    assert kv(out)["modern-bert.hidden_activation"] == "silu"
    texts = corpus[:150]
    ref = SentenceTransformer(str(folder), device="cpu").encode(texts, batch_size=16, convert_to_numpy=True)
    assert cosines(Model(out, threads=2).embed(texts), ref).min() >= COS_MIN
    # GELU in its place gives other vectors.
    gelu = tmp_path / "as-gelu.gguf"
    rewrite(out, gelu, **{"modern-bert.hidden_activation": ("gelu", STR)})
    assert cosines(Model(gelu, threads=2).embed(texts), ref).min() < COS_MIN
