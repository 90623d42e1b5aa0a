"""GGUF reader: parses what the gguf package writes, and rejects truncated,
corrupted and hostile files with native.GGUFError instead of crashing."""
from __future__ import annotations

import random
import struct

import numpy as np
import pytest

import native
from native import GGUFError, Model
from tiny_models import VOCAB, write_tiny_bert


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
    reader and the model loader either accept the file or raise GGUFError /
    ValueError; the process never crashes. (The C++ suite runs a longer loop
    under AddressSanitizer.)"""
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
            model.embed(["hello world the cat", "dog"])
            outcomes["ok"] += 1
        except (GGUFError, ValueError, UnicodeDecodeError):
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
