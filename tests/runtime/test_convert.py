"""native.convert: HF sentence-transformers folder -> GGUF in llama.cpp's layout.

Values are checked against the safetensors package's reading of the source
files (an independent reader), quantized blocks against gguf.quants, and the
whole layout against the file llama.cpp's own converter writes.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader

from native import convert as conv
from native.convert import quantize

PHANTOM = "\u2581"


# --------------------------------------------------------------------------- helpers

def kv(reader: GGUFReader) -> dict:
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def tensors(reader: GGUFReader) -> dict:
    return {t.name: t for t in reader.tensors}


def numpy_shape(t) -> tuple[int, ...]:
    # GGUFReader reports ggml order (fastest dimension first)
    return tuple(int(d) for d in reversed(t.shape))


def as_f32(t) -> np.ndarray:
    """A GGUF tensor's values as float32 in numpy (row-major) shape."""
    raw = np.asarray(t.data)
    if t.tensor_type == QT.F32 or t.tensor_type == QT.F16:
        out = raw.astype(np.float32)
    else:
        out = gguf.quants.dequantize(raw, t.tensor_type)
    return out.reshape(numpy_shape(t))


def bert_hf_to_gguf() -> dict[str, str]:
    """Independent statement of the expected name mapping (llama.cpp's tensor names)."""
    m = {
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    }
    per_layer = {
        "attention.self.query": "attn_q", "attention.self.key": "attn_k", "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output", "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up", "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm",
    }
    for i in range(6):
        for hf, g in per_layer.items():
            for s in ("weight", "bias"):
                m[f"encoder.layer.{i}.{hf}.{s}"] = f"blk.{i}.{g}.{s}"
    return m


@pytest.fixture(scope="module")
def minilm_weights(minilm_dir) -> dict[str, np.ndarray]:
    return safetensors_numpy.load_file(str(Path(minilm_dir) / "model.safetensors"))


@pytest.fixture(scope="module")
def minilm_reader(minilm_gguf) -> GGUFReader:
    return GGUFReader(minilm_gguf)


@pytest.fixture(scope="module")
def minilm_q8(minilm_dir, tmp_path_factory) -> GGUFReader:
    out = tmp_path_factory.mktemp("q8") / "minilm-q8_0.gguf"
    return GGUFReader(conv.convert(minilm_dir, out, "q8_0", progress=False))


@pytest.fixture(scope="module")
def minilm_f16(minilm_dir, tmp_path_factory) -> GGUFReader:
    out = tmp_path_factory.mktemp("f16") / "minilm-f16.gguf"
    return GGUFReader(conv.convert(minilm_dir, out, "f16", progress=False))


# --------------------------------------------------------------------------- BERT metadata

def test_bert_metadata(minilm_reader, minilm_dir):
    cfg = json.loads((Path(minilm_dir) / "config.json").read_text())
    st = json.loads((Path(minilm_dir) / "sentence_bert_config.json").read_text())
    k = kv(minilm_reader)
    assert k["general.architecture"] == "bert"
    assert k["bert.context_length"] == cfg["max_position_embeddings"]
    assert k["bert.embedding_length"] == cfg["hidden_size"] == 384
    assert k["bert.feed_forward_length"] == cfg["intermediate_size"]
    assert k["bert.block_count"] == cfg["num_hidden_layers"]
    assert k["bert.attention.head_count"] == cfg["num_attention_heads"]
    assert k["bert.attention.layer_norm_epsilon"] == pytest.approx(cfg["layer_norm_eps"])
    assert k["bert.attention.causal"] is False
    assert k["bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert k["general.file_type"] == int(gguf.LlamaFileType.ALL_F32)
    assert k["tokenizer.ggml.model"] == "bert"
    assert k["tokenizer.ggml.token_type_count"] == cfg["type_vocab_size"]
    assert k["tokenizer.ggml.normalizer.lowercase"] is True
    # [CLS] text [SEP], as BertTokenizer / sentence-transformers wrap every input
    assert k["tokenizer.ggml.bos_token_id"] == k["tokenizer.ggml.cls_token_id"] == 101
    assert k["tokenizer.ggml.eos_token_id"] == k["tokenizer.ggml.seperator_token_id"] == 102
    assert k["tokenizer.ggml.unknown_token_id"] == 100
    assert k["tokenizer.ggml.padding_token_id"] == 0
    assert k["tokenizer.ggml.mask_token_id"] == 103
    assert k["tokenizer.ggml.add_bos_token"] is True and k["tokenizer.ggml.add_eos_token"] is True
    # our own keys
    assert k["embedq.max_seq_length"] == st["max_seq_length"] == 256
    assert k["embedq.do_lower_case"] is True
    assert k["embedq.normalize"] is True
    assert k["embedq.dims_allowed"] == [384]
    assert k["embedq.hidden_act"] == "gelu"
    assert "embedq.prompt_names" not in k
    assert len(k["embedq.source_sha256"]) == 64


def test_bert_vocab_round_trip(minilm_reader, minilm_dir):
    vocab = (Path(minilm_dir) / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    k = kv(minilm_reader)
    toks, types = k["tokenizer.ggml.tokens"], k["tokenizer.ggml.token_type"]
    assert len(toks) == len(types) == len(vocab) == 30522
    control = {i for i, t in enumerate(types) if t == gguf.TokenType.CONTROL}
    assert {vocab[i] for i in control} == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert all(types[i] == gguf.TokenType.NORMAL for i in range(len(types)) if i not in control)
    back = []
    for i, t in enumerate(toks):
        if i in control:
            back.append(t)
        elif t.startswith(PHANTOM):
            back.append(t[1:])
        else:
            back.append("##" + t)
    assert back == vocab
    # spot checks of the phantom-space form itself
    assert toks[vocab.index("the")] == PHANTOM + "the"
    assert toks[vocab.index("##ing")] == "ing"


def test_bert_f32_tensors_equal_safetensors(minilm_reader, minilm_weights):
    mapping = bert_hf_to_gguf()
    got = tensors(minilm_reader)
    assert set(got) == set(mapping.values())  # nothing extra (pooler, position_ids) and nothing lost
    for hf, name in mapping.items():
        t = got[name]
        assert t.tensor_type == QT.F32, name
        src = minilm_weights[hf]
        assert numpy_shape(t) == src.shape, name
        np.testing.assert_array_equal(as_f32(t), src, err_msg=name)


def test_bert_f16_within_rounding(minilm_f16, minilm_weights):
    got = tensors(minilm_f16)
    assert kv(minilm_f16)["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_F16)
    for hf, name in bert_hf_to_gguf().items():
        t, src = got[name], minilm_weights[hf]
        if src.ndim == 1 or name.endswith("_norm.weight") or name in ("position_embd.weight", "token_types.weight"):
            assert t.tensor_type == QT.F32, name
            np.testing.assert_array_equal(as_f32(t), src, err_msg=name)
        else:
            assert t.tensor_type == QT.F16, name
            np.testing.assert_array_equal(np.asarray(t.data).reshape(src.shape), src.astype(np.float16), err_msg=name)


def test_bert_q8_0_blocks_match_gguf_quants(minilm_q8, minilm_weights):
    got = tensors(minilm_q8)
    assert kv(minilm_q8)["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    n_q8 = 0
    for hf, name in bert_hf_to_gguf().items():
        t, src = got[name], minilm_weights[hf]
        if src.ndim == 1 or name in ("position_embd.weight", "token_types.weight"):
            assert t.tensor_type == QT.F32, name
            continue
        assert t.tensor_type == QT.Q8_0, name
        n_q8 += 1
        raw = np.asarray(t.data).reshape(-1)
        ref = gguf.quants.quantize(src, QT.Q8_0).reshape(-1)
        assert np.array_equal(raw, ref), name
        # and the values are the source within half a step, plus what storing the
        # step as fp16 costs (relative 2^-11, absolute 2^-25 when subnormal) times |q| <= 127
        deq = as_f32(t)
        step = np.abs(src.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
        err = np.abs(deq.reshape(-1, 32) - src.reshape(-1, 32))
        assert np.all(err <= 0.5 * step + 127 * (step * 2.0**-11 + 2.0**-25)), name
    assert n_q8 == 1 + 6 * 6  # token_embd + 6 matrices per layer


# --------------------------------------------------------------------------- Q8_0 kernel

def test_quantize_q8_0_bit_identical_on_edge_cases():
    rng = np.random.default_rng(7)
    rows = [
        rng.standard_normal(256).astype(np.float32),
        np.zeros(64, np.float32),  # all-zero block: scale 0, no division by zero
        np.full(32, -3.5, np.float32),
        (np.arange(64, dtype=np.float32) - 32) / 2,  # exact halves after scaling
        np.float32(1e-30) * rng.standard_normal(32).astype(np.float32),  # tiny scale
        rng.standard_normal(96).astype(np.float32) * 1e4,
    ]
    # values whose scaled magnitude lands just under .5 (where trunc(x+0.5) goes wrong)
    tricky = np.full(32, np.float32(0.49999997) / 127, np.float32)
    tricky[0] = 1.0  # sets the scale to 1/127
    rows.append(tricky)
    for r in rows:
        ours = conv.quantize_q8_0(r.reshape(-1, 32))
        ref = gguf.quants.quantize(r.reshape(-1, 32), QT.Q8_0)
        assert np.array_equal(ours, ref), r[:4]
    big = rng.standard_normal((1000, 96)).astype(np.float32)
    assert np.array_equal(conv.quantize_q8_0(big, rows_per_chunk=7), gguf.quants.quantize(big, QT.Q8_0))


def test_quantize_q8_0_rejects_odd_rows():
    with pytest.raises(conv.ConversionError, match="divisible by 32"):
        conv.quantize_q8_0(np.zeros((4, 33), np.float32))


# --------------------------------------------------------------------------- options

def test_keep_patterns_override_types(minilm_dir, tmp_path):
    out = conv.convert(minilm_dir, tmp_path / "m.gguf", "q8_0", progress=False,
                       keep_f32=["token_embd.weight"], keep_f16=["blk.*.ffn_down.weight"])
    got = tensors(GGUFReader(out))
    assert got["token_embd.weight"].tensor_type == QT.F32
    assert all(got[f"blk.{i}.ffn_down.weight"].tensor_type == QT.F16 for i in range(6))
    assert got["blk.0.ffn_up.weight"].tensor_type == QT.Q8_0
    assert got["blk.0.ffn_down.bias"].tensor_type == QT.F32


def test_keep_pattern_that_matches_nothing_is_an_error(minilm_dir, tmp_path):
    with pytest.raises(conv.ConversionError, match="blk.*.nope"):
        conv.convert(minilm_dir, tmp_path / "m.gguf", "q8_0", progress=False, keep_f16=["blk.*.nope"])
    assert not list(tmp_path.iterdir())


def test_parse_keep():
    assert conv.parse_keep(["a=f32", "b.*=f16", "c=f32"]) == (["a", "c"], ["b.*"])
    for bad in ("noequals", "=f16", "x=q4"):
        with pytest.raises(conv.ConversionError):
            conv.parse_keep([bad])


def test_failed_conversion_leaves_no_file(minilm_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = quantize.encode

    def failing(data, qtype, **kw):
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("disk full (simulated)")
        return real(data, qtype, **kw)

    monkeypatch.setattr(conv, "encode", failing)  # the name convert() writes with
    with pytest.raises(RuntimeError, match="simulated"):
        conv.convert(minilm_dir, tmp_path / "out.gguf", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a .part file


def test_bad_inputs_give_clear_errors(tmp_path, minilm_dir):
    with pytest.raises(conv.ConversionError, match="not a directory"):
        conv.convert(tmp_path / "missing", tmp_path / "o.gguf")
    with pytest.raises(conv.ConversionError, match="out_type"):
        conv.convert(minilm_dir, tmp_path / "o.gguf", "q4_0")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(conv.ConversionError, match="unsupported architecture"):
        conv.convert(odd, tmp_path / "o.gguf")
    nocfg = tmp_path / "nocfg"
    nocfg.mkdir()
    with pytest.raises(conv.ConversionError, match="config.json"):
        conv.convert(nocfg, tmp_path / "o.gguf")


def test_bf16_source_weights(minilm_dir, minilm_weights, tmp_path):
    """bfloat16 checkpoints (common for newer models) read without torch."""
    src = tmp_path / "bf16"
    shutil.copytree(minilm_dir, src)
    bf16 = {}
    for name, arr in minilm_weights.items():
        if arr.dtype == np.float32:
            bits = arr.view(np.uint32) >> 16  # truncation is an exact bf16 value
            bf16[name] = bits.astype(np.uint16)
        else:
            bf16[name] = arr
    # safetensors' numpy API cannot write BF16, so write the file format by hand
    header, blobs, off = {}, [], 0
    for name, arr in bf16.items():
        dtype = "BF16" if arr.dtype == np.uint16 else {np.dtype(np.int64): "I64"}[arr.dtype]
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    (src / "model.safetensors").write_bytes(len(hb).to_bytes(8, "little") + hb + b"".join(blobs))

    got = tensors(GGUFReader(conv.convert(src, tmp_path / "bf16.gguf", progress=False)))
    w = minilm_weights["encoder.layer.2.attention.self.key.weight"]
    expect = (w.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    np.testing.assert_array_equal(as_f32(got["blk.2.attn_k.weight"]), expect)


# --------------------------------------------------------------------------- CLI

def run_cli(argv: list[str]) -> int:
    from embedq.cli import main

    return main(argv)


def test_cli_convert(minilm_dir, tmp_path, capsys):
    out = tmp_path / "cli.gguf"
    rc = run_cli(["convert", str(minilm_dir), str(out), "--type", "q8_0",
                  "--keep", "token_embd.weight=f16", "--no-progress"])
    assert rc == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    got = tensors(GGUFReader(out))
    assert got["token_embd.weight"].tensor_type == QT.F16
    assert got["blk.3.attn_q.weight"].tensor_type == QT.Q8_0


def test_cli_convert_reports_errors(tmp_path, capsys):
    rc = run_cli(["convert", str(tmp_path / "nope"), str(tmp_path / "o.gguf"), "--no-progress"])
    assert rc == 2
    assert "not a directory" in capsys.readouterr().err
    rc = run_cli(["convert", str(tmp_path), str(tmp_path / "o.gguf"), "--keep", "x=q4"])
    assert rc == 2
    assert "f32 or f16" in capsys.readouterr().err


def test_cli_embed(minilm_gguf, tmp_path, capsys, monkeypatch):
    from native import Model

    texts = ["A first sentence.", "", "Ein zweiter Satz, auf Deutsch.", "third"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    rc = run_cli(["embed", "--model", str(minilm_gguf), "--input", str(src), "--output", str(out),
                  "--threads", "1", "--batch-size", "2", "--no-progress"])
    assert rc == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(out)
    got = np.load(out)
    kept = [t for t in texts if t]  # empty lines are skipped by default
    ref = Model(str(minilm_gguf), threads=1).embed(kept)
    assert got.shape == (3, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-6)

    monkeypatch.setattr("sys.stdin", io.StringIO("only line\n"))
    assert run_cli(["embed", "--model", str(minilm_gguf), "--input", "-", "--output", str(out),
                    "--no-progress"]) == 0
    assert np.load(out).shape == (1, 384)


def test_cli_embed_rejects_bad_options(minilm_gguf, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    base = ["embed", "--model", str(minilm_gguf), "--input", str(src), "--output", str(tmp_path / "v.npy")]
    assert run_cli(base + ["--dims", "128"]) == 2  # MiniLM has no Matryoshka sizes
    assert "dims" in capsys.readouterr().err
    assert run_cli(base + ["--prompt-name", "query"]) == 2  # and no prompts
    assert "prompt" in capsys.readouterr().err
    assert run_cli(["embed", "--model", "no-such-model", "--input", str(src), "--output", "o.npy"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not (tmp_path / "v.npy").exists()


# --------------------------------------------------------------------------- vs llama.cpp

KEYS_OURS_ONLY = ("embedq.", "tokenizer.ggml.cls_token_id")


def compare_with_llama_cpp(ours: Path, theirs: Path) -> None:
    a, b = GGUFReader(ours), GGUFReader(theirs)
    ka = {k: v for k, v in kv(a).items() if not k.startswith("general.") or k == "general.architecture"}
    kb = {k: v for k, v in kv(b).items() if not k.startswith("general.") or k == "general.architecture"}
    # llama.cpp derives tokenizer.ggml.pre from a tokenization hash; for WordPiece it
    # ignores the value, so ours may differ there.
    ignore = {"tokenizer.ggml.pre"} if ka["tokenizer.ggml.model"] == "bert" else set()
    missing = set(kb) - set(ka) - ignore
    assert not missing, f"keys llama.cpp writes that we do not: {missing}"
    for key in set(kb) - ignore:
        assert ka[key] == kb[key], key
    extra = {k for k in set(ka) - set(kb) if not k.startswith(KEYS_OURS_ONLY)}
    # the only llama.cpp-namespace keys we add are ones llama.cpp reads (causal flag, SWA layout)
    assert extra <= {f"{ka['general.architecture']}.attention.causal",
                     f"{ka['general.architecture']}.attention.sliding_window_pattern"}, extra
    ta, tb = tensors(a), tensors(b)
    assert set(ta) == set(tb)
    for name in tb:
        x, y = ta[name], tb[name]
        assert x.tensor_type == y.tensor_type and numpy_shape(x) == numpy_shape(y), name
        assert np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)), name


@pytest.fixture(scope="module")
def llama_converter():
    for mod in ("torch", "transformers"):
        pytest.importorskip(mod)
    try:
        from tests import peers
    except ImportError:  # tests/ itself is on sys.path when it is not a package
        from helpers import peers

    try:
        peers.llama_cpp_source()
    except peers.PeerError as e:
        pytest.fail(f"llama.cpp converter unavailable (scripts/test.sh installs the peers): {e}")
    return peers.llama_cpp_convert


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.parametrize("out_type", ["f32", "q8_0"])
def test_bert_matches_llama_cpp_converter(llama_converter, minilm_dir, tmp_path, out_type):
    ours = conv.convert(minilm_dir, tmp_path / "ours.gguf", out_type, progress=False)
    theirs = llama_converter(minilm_dir, tmp_path / "theirs.gguf", out_type)
    compare_with_llama_cpp(ours, theirs)


# --------------------------------------------------------------------------- EmbeddingGemma

@pytest.fixture(scope="module")
def gemma_f32(gemma_dir, tmp_path_factory) -> GGUFReader:
    # parsing a 262k-token vocabulary takes GGUFReader a while: do it once
    out = conv.convert(gemma_dir, tmp_path_factory.mktemp("gemma") / "gemma-f32.gguf", "f32", progress=False)
    return GGUFReader(out)


@pytest.fixture(scope="module")
def gemma_kv(gemma_f32) -> dict:
    return kv(gemma_f32)


@pytest.mark.slow
@pytest.mark.gemma
def test_gemma_metadata(gemma_kv, gemma_dir):
    cfg = json.loads((gemma_dir / "config.json").read_text())
    stc = json.loads((gemma_dir / "config_sentence_transformers.json").read_text())
    k = gemma_kv
    a = "gemma-embedding"
    assert k["general.architecture"] == a
    assert k[f"{a}.block_count"] == cfg["num_hidden_layers"] == 24
    assert k[f"{a}.embedding_length"] == 768
    assert k[f"{a}.feed_forward_length"] == cfg["intermediate_size"]
    assert k[f"{a}.attention.head_count"] == cfg["num_attention_heads"]
    assert k[f"{a}.attention.head_count_kv"] == cfg["num_key_value_heads"]
    assert k[f"{a}.attention.key_length"] == k[f"{a}.attention.value_length"] == cfg["head_dim"]
    assert k[f"{a}.attention.sliding_window"] == cfg["sliding_window"] == 512
    assert k[f"{a}.attention.sliding_window_pattern"] == [t == "sliding_attention" for t in cfg["layer_types"]]
    assert k[f"{a}.rope.freq_base"] == cfg["rope_theta"]
    assert k[f"{a}.rope.freq_base_swa"] == cfg["rope_local_base_freq"]
    assert k[f"{a}.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg["rms_norm_eps"])
    assert k[f"{a}.attention.causal"] is False
    assert k[f"{a}.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert (k[f"{a}.dense_2_feat_in"], k[f"{a}.dense_2_feat_out"]) == (768, 3072)
    assert (k[f"{a}.dense_3_feat_in"], k[f"{a}.dense_3_feat_out"]) == (3072, 768)
    assert k["tokenizer.ggml.model"] == "llama"
    assert (k["tokenizer.ggml.bos_token_id"], k["tokenizer.ggml.eos_token_id"]) == (2, 1)
    assert (k["tokenizer.ggml.unknown_token_id"], k["tokenizer.ggml.padding_token_id"]) == (3, 0)
    assert k["tokenizer.ggml.add_bos_token"] is True and k["tokenizer.ggml.add_eos_token"] is True
    assert k["tokenizer.ggml.add_space_prefix"] is False
    assert k["embedq.max_seq_length"] == 2048
    assert k["embedq.dims_allowed"] == [768, 512, 256, 128]
    assert k["embedq.normalize"] is True and k["embedq.do_lower_case"] is False
    assert dict(zip(k["embedq.prompt_names"], k["embedq.prompt_texts"])) == stc["prompts"]


@pytest.mark.slow
@pytest.mark.gemma
def test_gemma_tensors_equal_safetensors(gemma_f32, gemma_dir):
    got = tensors(gemma_f32)
    w = safetensors_numpy.load_file(str(gemma_dir / "model.safetensors"))
    checked = set()
    for i in (0, 5, 23):
        pairs = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
        for hf, g in pairs.items():
            name = f"blk.{i}.{g}.weight"
            np.testing.assert_array_equal(as_f32(got[name]), w[f"layers.{i}.{hf}.weight"], err_msg=name)
            checked.add(name)
        norms = {"input_layernorm": "attn_norm", "self_attn.q_norm": "attn_q_norm",
                 "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "post_attention_norm",
                 "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm"}
        for hf, g in norms.items():
            name = f"blk.{i}.{g}.weight"
            # Gemma's RMSNorm multiplies by (1 + w); the file stores 1 + w
            np.testing.assert_array_equal(as_f32(got[name]), w[f"layers.{i}.{hf}.weight"] + np.float32(1))
    np.testing.assert_array_equal(as_f32(got["output_norm.weight"]), w["norm.weight"] + np.float32(1))
    np.testing.assert_array_equal(as_f32(got["token_embd.weight"]), w["embed_tokens.weight"])
    for slot, folder in (("dense_2", "2_Dense"), ("dense_3", "3_Dense")):
        d = safetensors_numpy.load_file(str(gemma_dir / folder / "model.safetensors"))
        np.testing.assert_array_equal(as_f32(got[f"{slot}.weight"]), d["linear.weight"])
    assert len(got) == 24 * 13 + 2 + 2


@pytest.mark.slow
@pytest.mark.gemma
def test_gemma_vocab_matches_sentencepiece(gemma_kv, gemma_dir):
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor()
    sp.LoadFromFile(str(gemma_dir / "tokenizer.model"))
    k = gemma_kv
    toks, scores, types = k["tokenizer.ggml.tokens"], k["tokenizer.ggml.scores"], k["tokenizer.ggml.token_type"]
    assert len(toks) == sp.vocab_size() == 262144
    decoder = json.loads((gemma_dir / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    for i in range(0, sp.vocab_size(), 97):
        if str(i) in decoder:
            continue
        assert toks[i] == sp.IdToPiece(i), i
        assert scores[i] == pytest.approx(sp.GetScore(i)), i
    assert types[sp.unk_id()] in (gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL)
    assert types[sp.bos_id()] == types[sp.eos_id()] == gguf.TokenType.CONTROL
    # added tokens follow tokenizer_config.json: flagged/looking special -> control, others user-defined
    assert (toks[4], types[4]) == ("<mask>", gguf.TokenType.CONTROL)
    assert (toks[5], types[5]) == ("[multimodal]", gguf.TokenType.USER_DEFINED)
    byte_ids = [i for i in range(sp.vocab_size()) if sp.IsByte(i)]
    assert byte_ids and all(types[i] == gguf.TokenType.BYTE for i in byte_ids)


@pytest.mark.slow
@pytest.mark.gemma
def test_gemma_q8_0_with_kept_embeddings(gemma_dir, tmp_path):
    out = conv.convert(gemma_dir, tmp_path / "g.gguf", "q8_0", progress=False,
                       keep_f16=["token_embd.weight"], keep_f32=["dense_*.weight"])
    got = tensors(GGUFReader(out))
    assert got["token_embd.weight"].tensor_type == QT.F16
    assert got["dense_2.weight"].tensor_type == got["dense_3.weight"].tensor_type == QT.F32
    assert got["blk.0.attn_q.weight"].tensor_type == QT.Q8_0
    assert got["blk.0.attn_q_norm.weight"].tensor_type == QT.F32


@pytest.mark.slow
@pytest.mark.gemma
@pytest.mark.peers
def test_gemma_matches_llama_cpp_converter(llama_converter, gemma_dir, tmp_path):
    pytest.importorskip("sentencepiece")
    ours = conv.convert(gemma_dir, tmp_path / "ours.gguf", "q8_0", progress=False)
    theirs = llama_converter(gemma_dir, tmp_path / "theirs.gguf", "q8_0")
    compare_with_llama_cpp(ours, theirs)
