"""GGUF reader: parses what the gguf package writes, and rejects truncated,
corrupted and hostile files with native.GGUFError instead of crashing."""
from __future__ import annotations

import random
import struct
from contextlib import contextmanager

import numpy as np
import pytest

import native
from native import GGUFError, Model
from helpers.tiny_models import VOCAB, write_tiny_bert


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def test_reads_what_gguf_package_writes(tiny):
    import gguf

    ours = native.inspect_gguf(str(tiny))
    ref = gguf.GGUFReader(str(tiny))
    assert ours["version"] == 3
    assert ours["metadata"]["general.architecture"] == "bert"
    assert ours["metadata"]["tokenizer.ggml.tokens"] == VOCAB
    assert ours["metadata"]["bert.block_count"] == 2
    assert [t["name"] for t in ours["tensors"]] == [t.name for t in ref.tensors]
    for o, r in zip(ours["tensors"], ref.tensors):
        assert o["shape"] == [int(x) for x in r.shape]
        assert o["nbytes"] == int(r.n_bytes)


def test_tiny_model_runs_and_is_deterministic(tiny):
    m = Model(tiny, threads=2)
    assert m.info["architecture"] == "bert" and m.dim == 32 and m.max_tokens == 16
    assert m.tokenize("hello world") == [2, 5, 6, 3]
    v = m.embed(["hello world", "the cat run", "hello world"])
    assert v.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(v[0], v[2])
    assert not np.allclose(v[0], v[1])


@pytest.mark.parametrize("dtype,min_cos", [("f16", 0.9999), ("bf16", 0.999), ("q8_0", 0.999)])
def test_weight_types_agree_with_f32(tmp_path, dtype, min_cos):
    """The same random weights stored as F16, BF16 and Q8_0 give what F32 gives,
    within each format's rounding (and the file really holds that type)."""
    ref = Model(write_tiny_bert(tmp_path / "f32.gguf", hidden=64, ff=128), threads=2)
    other = Model(write_tiny_bert(tmp_path / f"{dtype}.gguf", hidden=64, ff=128, dtype=dtype), threads=2)
    assert other.info["weight_type"] == dtype.upper()
    texts = ["hello world", "the cat run", "a dog !", "un un s ing"]
    a, b = ref.embed(texts), other.embed(texts)
    assert (a * b).sum(1).min() >= min_cos
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"GGML" + b"\0" * 40, "bad magic"),
    (b"GGUF" + struct.pack("<I", 1) + b"\0" * 16, "version"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 60), "metadata count"),
    (b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 0), "tensor count"),
])
def test_hostile_headers(tmp_path, content, match):
    p = tmp_path / "bad.gguf"
    p.write_bytes(content)
    with pytest.raises(GGUFError, match=match):
        native.inspect_gguf(str(p))
    with pytest.raises(GGUFError):
        Model(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(GGUFError, match="cannot open"):
        native.inspect_gguf(str(tmp_path / "nope.gguf"))
    with pytest.raises(GGUFError, match="not a regular file"):
        native.inspect_gguf(str(tmp_path))


def test_every_truncation_is_rejected(tiny):
    data = tiny.read_bytes()
    cuts = sorted(set(range(0, 4096, 7)) | set(range(len(data) - 200, len(data))))
    for n in cuts:
        with pytest.raises(GGUFError):
            native.parse_gguf_bytes(data[:n])


def test_wrong_tensor_shape_is_a_clear_error(tmp_path):
    import gguf

    src = write_tiny_bert(tmp_path / "a.gguf")
    reader = gguf.GGUFReader(str(src))
    # Rewrite the file declaring 3 layers while it only has tensors for 2.
    field = reader.fields["bert.block_count"]
    data = bytearray(src.read_bytes())
    off = field.parts[-1].ctypes.data - reader.data.ctypes.data
    data[off:off + 4] = struct.pack("<I", 3)
    bad = tmp_path / "b.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="blk.2.*missing"):
        Model(bad)


def test_mutation_fuzz(tiny, tmp_path):
    """Random byte flips and hostile integers anywhere in the header: the
    reader and the model loader either accept the file, and then give finite
    vectors, or raise GGUFError; the process never crashes. (The C++ suite
    runs a longer loop, test_model_fuzz, under ASan and UBSan.)"""
    data = tiny.read_bytes()
    import gguf

    header_end = gguf.GGUFReader(str(tiny)).data_offset
    rng = random.Random(7)
    evil = [0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 63, (1 << 64) - 1]
    outcomes = {"ok": 0, "rejected": 0}
    path = tmp_path / "m.gguf"
    for i in range(600):
        m = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(header_end)
            r = rng.random()
            if r < 0.4:
                m[pos] ^= 1 << rng.randrange(8)
            elif r < 0.7:
                m[pos] = rng.randrange(256)
            else:
                v = rng.choice(evil).to_bytes(8, "little")
                m[pos:pos + 8] = v[: len(m[pos:pos + 8])]
        try:
            native.parse_gguf_bytes(bytes(m))
        except GGUFError:
            outcomes["rejected"] += 1
            continue
        path.write_bytes(bytes(m))
        try:
            model = Model(path, threads=1)
            vectors = model.embed(["hello world the cat", "dog"])
            assert np.isfinite(vectors).all()
            outcomes["ok"] += 1
        except GGUFError:
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 100 and outcomes["ok"] > 10, outcomes


def test_concurrent_embed_calls_are_safe(tiny):
    """Several threads sharing one Model get the same vectors as serial calls."""
    from concurrent.futures import ThreadPoolExecutor

    m = Model(tiny, threads=2)
    texts = [["hello world"], ["the cat run", "a dog"], ["un un s ing !"]] * 8
    serial = [m.embed(t) for t in texts]
    with ThreadPoolExecutor(6) as ex:
        parallel = list(ex.map(m.embed, texts))
        counts = list(ex.map(m.token_counts, texts))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    assert counts[0] == [4]


# -- corrupt settings and weights in the real MiniLM file (issue 10) ---------------------------

@pytest.fixture(scope="module")
def minilm_copy(minilm_gguf, tmp_path_factory):
    """A private copy of the F32 MiniLM GGUF that tests patch in place (and restore), with the
    gguf package's reader of it for the offsets of fields and tensors."""
    import shutil

    import gguf

    path = tmp_path_factory.mktemp("minilm") / "minilm-f32.gguf"
    shutil.copyfile(minilm_gguf, path)
    return path, gguf.GGUFReader(str(minilm_gguf))


@contextmanager
def patched(path, offset: int, raw: bytes):
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(len(raw))
        f.seek(offset)
        f.write(raw)
    try:
        yield
    finally:
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(old)


def field_value(reader, key: str) -> tuple[int, np.dtype]:
    """Offset in the file of the (first) value of metadata `key`, and its numpy type."""
    field = reader.fields[key]
    part = field.parts[field.data[0]]
    return part.ctypes.data - reader.data.ctypes.data, part.dtype


def shown(value: float | int, dtype) -> str:
    """The value as GGUFError messages print it (C's %.9g for floats)."""
    v = np.array([value]).astype(dtype)[0]
    return f"{float(v):.9g}" if np.issubdtype(dtype, np.floating) else str(int(v))


def test_nan_layer_norm_epsilon_is_refused_at_load(minilm_copy):
    """Issue 10: four bytes that make layer_norm_epsilon NaN used to load and store NaN vectors."""
    path, reader = minilm_copy
    off, dtype = field_value(reader, "bert.attention.layer_norm_epsilon")
    assert dtype == np.float32
    with patched(path, off, struct.pack("<f", float("nan"))):
        with pytest.raises(GGUFError) as e:
            Model(path, threads=1)
    msg = str(e.value)
    assert "'bert.attention.layer_norm_epsilon' is nan" in msg and "finite number in [1e-30, 0.1]" in msg, msg
    assert str(path) in msg
    assert np.isfinite(Model(path, threads=1).embed(["the file is intact again"])).all()


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("key,value,named", [
    ("bert.attention.layer_norm_epsilon", INF, None),
    ("bert.attention.layer_norm_epsilon", -INF, None),
    ("bert.attention.layer_norm_epsilon", -1e-12, None),
    ("bert.attention.layer_norm_epsilon", 0.0, None),
    ("bert.attention.layer_norm_epsilon", 1.0, None),
    ("bert.attention.layer_norm_epsilon", 3e38, None),
    ("bert.attention.head_count", 0, None),
    ("bert.attention.head_count", 5, None),  # 384 is not a multiple of 5
    ("bert.attention.head_count", 1000, None),
    ("bert.attention.head_count", 0xFFFFFFFF, None),
    ("bert.block_count", 0, None),
    ("bert.block_count", 100000, None),
    ("bert.block_count", 7, "tensor 'blk.6."),
    ("bert.context_length", 0, None),
    ("bert.context_length", 2, None),
    ("bert.context_length", 0xFFFFFFFF, None),
    ("bert.context_length", 511, "tensor 'position_embd.weight' has shape"),
    ("bert.embedding_length", 0, None),
    ("bert.embedding_length", 0xFFFFFFFF, None),
    ("bert.embedding_length", 383, "'bert.attention.head_count' is 12"),
    ("bert.feed_forward_length", 0, None),
    ("bert.feed_forward_length", 1537, "tensor 'blk.0.ffn_up.weight' has shape"),
    ("bert.pooling_type", 0, None),
    ("bert.pooling_type", 9, None),
    ("embedq.max_seq_length", 0, None),
    ("embedq.max_seq_length", 2, None),
    ("embedq.dims_allowed", 385, None),
    ("embedq.dims_allowed", 0, None),
    ("tokenizer.ggml.unknown_token_id", 30522, None),
    ("tokenizer.ggml.cls_token_id", 0xFFFFFFFF, None),
    ("tokenizer.ggml.padding_token_id", 40000, None),
])
def test_corrupt_setting_in_real_minilm_is_a_clear_error(minilm_copy, key, value, named):
    """One metadata value of the real file overwritten in place: a GGUFError naming the key and
    the value (or the tensor whose shape no longer matches), never a model that loads."""
    path, reader = minilm_copy
    off, dtype = field_value(reader, key)
    raw = np.array([value]).astype(dtype).tobytes()
    with patched(path, off, raw):
        with pytest.raises(GGUFError) as e:
            Model(path, threads=1)
    msg = str(e.value)
    if named is None:
        assert f"'{key}' is " in msg and shown(value, dtype) in msg, msg
    else:
        assert named in msg, msg


def tensor_element(reader, name: str, row: int, col: int) -> int:
    t = next(t for t in reader.tensors if t.name == name)
    assert t.tensor_type == 0 and col < t.shape[0]  # F32; shape[0] is the row length
    return int(t.data_offset) + 4 * (row * int(t.shape[0]) + col)


@pytest.mark.parametrize("name,row,col", [
    ("blk.3.ffn_up.weight", 1000, 17),      # a matrix
    ("token_embd.weight", 29999, 5),        # one token's row, read only by texts using it
    ("blk.0.attn_output_norm.weight", 0, 100),  # a norm weight
    ("blk.5.ffn_down.bias", 0, 383),
])
@pytest.mark.parametrize("value", [NAN, -INF])
def test_non_finite_weight_in_real_minilm_is_refused_at_load(minilm_copy, name, row, col, value):
    path, reader = minilm_copy
    with patched(path, tensor_element(reader, name, row, col), struct.pack("<f", value)):
        with pytest.raises(GGUFError) as e:
            Model(path, threads=1)
    msg = str(e.value)
    assert f"tensor '{name}' holds a non-finite value ({value})" in msg, msg
    assert (f"row {row}, column {col}" if row else f"element {col}") in msg, msg


def test_weights_that_overflow_are_refused_at_embed(minilm_copy):
    """Finite but huge weights pass the load checks and overflow in the forward pass: embed and
    embed_encoded raise GGUFError naming the text instead of returning NaN vectors."""
    path, reader = minilm_copy
    row = np.array([3e38, -3e38] * 192, dtype=np.float32).tobytes()
    with patched(path, tensor_element(reader, "blk.0.attn_q.weight", 0, 0), row):
        m = Model(path, threads=1)
        with pytest.raises(GGUFError, match=r"non-finite vector for texts\[0\] and 1 more"):
            m.embed(["hello world", "a second text"])
        with pytest.raises(ValueError, match=r"non-finite vector for texts\[0\]"):
            m.embed_encoded(m.encode(["one text"]), dims=None)
