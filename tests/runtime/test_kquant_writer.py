"""Our writer for llama.cpp's K recipes (convert --type q4_k_m / q5_k_m / q6_k): blocks that the
reference dequantizer (gguf's NumPy code) and our runtime decode to the input within the type's
rounding, bit for bit alike; per-tensor types as llama.cpp's own quantizer picks them; weights at
least as close to F32 as llama.cpp's quantizer gets them; files llama.cpp loads and embeds with."""
from __future__ import annotations

from collections import Counter

import gguf
import numpy as np
import pytest

import native
from native import Model, _native
from native import convert as conv
from native.convert import kquants

QT = gguf.GGMLQuantizationType
TYPES = ["Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1"]
LEVELS = {"Q4_K": 16, "Q5_K": 32, "Q6_K": 64, "Q5_0": 32, "Q5_1": 32}
RECIPES = ["q4_k_m", "q5_k_m", "q6_k"]


def edge_rows(cols: int, rng) -> np.ndarray:
    """Rows a quantizer can get wrong: zeros, constants of either sign, huge and tiny scales,
    one outlier among small values, all-positive and all-negative rows, ordinary noise."""
    rows = [np.zeros(cols), np.full(cols, 0.37), np.full(cols, -2.5), rng.standard_normal(cols) * 1e3,
            rng.standard_normal(cols) * 1e-3, np.abs(rng.standard_normal(cols)) + 1.0,
            -np.abs(rng.standard_normal(cols)) - 0.5]
    spike = rng.standard_normal(cols) * 0.01
    spike[cols // 3] = 4.0
    rows.append(spike)
    rows += list(rng.standard_normal((5, cols)) * 0.05)  # 13 rows in all: an odd count
    return np.array(rows, dtype=np.float32)


def block_error_bound(x: np.ndarray, type_name: str) -> np.ndarray:
    """Per block: half the step of a uniform grid spanning the block's values with the type's
    levels (no rounding of a value lands farther than that from a value on such a grid), plus
    fp16's resolution of the largest value for the stored scales."""
    blocks = x.reshape(-1, kquants.BLOCK_ELEMS[type_name])
    span = blocks.max(axis=1) - np.minimum(blocks.min(axis=1), 0 if type_name in ("Q4_K", "Q5_K") else np.inf)
    if type_name in ("Q6_K", "Q5_0"):  # symmetric: the grid spans [-max|x|, max|x|]
        span = 2 * np.abs(blocks).max(axis=1)
    return 0.5 * span / (LEVELS[type_name] - 1) + np.abs(blocks).max(axis=1) * 2.0 ** -10


@pytest.mark.parametrize("type_name", TYPES)
def test_blocks_decode_to_the_input_in_gguf_and_in_our_runtime(type_name):
    rng = np.random.default_rng(sum(map(ord, type_name)))
    cols = 512 if type_name.endswith("K") else 96
    x = edge_rows(cols, rng)
    raw = kquants.quantize_rows(x, type_name)
    assert raw.shape == (13, cols // kquants.BLOCK_ELEMS[type_name] * kquants.BLOCK_BYTES[type_name])
    ref = gguf.quants.dequantize(raw, QT[type_name]).astype(np.float32)
    assert ref.shape == x.shape and np.isfinite(ref).all()
    assert np.array_equal(ref[0], x[0])  # zeros stay exact zeros

    elems = kquants.BLOCK_ELEMS[type_name]
    err = np.sqrt(((ref - x) ** 2).reshape(-1, elems).mean(axis=1))
    bound = block_error_bound(x, type_name)
    worst = int(np.argmax(err - bound))
    assert (err <= bound).all(), f"block {worst}: rms error {err[worst]:.3g} > bound {bound[worst]:.3g}"
    # Constant rows: the only error is fp16's on the scales.
    np.testing.assert_allclose(ref[1:3], x[1:3], rtol=2e-3)

    for kernels in native.kernel_sets():
        ours = _native.dequantize(kernels, type_name, raw.reshape(-1))
        assert np.array_equal(ours.view(np.uint32), ref.reshape(-1).view(np.uint32)), kernels


@pytest.mark.parametrize("type_name", TYPES)
def test_quantize_refuses_what_the_type_cannot_hold(type_name):
    elems = kquants.BLOCK_ELEMS[type_name]
    with pytest.raises(conv.ConversionError, match=f"divisible by {elems}"):
        kquants.quantize_rows(np.zeros((2, elems + 16), np.float32), type_name)
    bad = np.zeros((1, elems), np.float32)
    bad[0, 3] = np.nan
    with pytest.raises(conv.ConversionError, match="NaN"):
        kquants.quantize_rows(bad, type_name)
    with pytest.raises(conv.ConversionError, match="overflows fp16"):
        kquants.quantize_rows(np.full((1, elems), 1e9, np.float32), type_name)


def test_chunking_does_not_change_the_bytes():
    x = np.random.default_rng(3).standard_normal((9, 768)).astype(np.float32)
    seen = []
    whole = kquants.quantize_rows(x, "Q4_K")
    assert np.array_equal(kquants.quantize_rows(x, "Q4_K", rows_per_chunk=2, on_rows=seen.append), whole)
    assert seen == [2, 2, 2, 2, 1]


# --- recipes on the real MiniLM, against llama.cpp's own quantizer -----------------------------


def matrix_types(path) -> dict[str, str]:
    return {t["name"]: t["type"] for t in native.inspect_gguf(str(path))["tensors"]}


@pytest.fixture(scope="module")
def ours(minilm_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("kq")
    return {r: conv.convert(minilm_dir, d / f"minilm-{r}.gguf", r, progress=False) for r in RECIPES}


@pytest.fixture(scope="module")
def theirs(minilm_gguf):
    pytest.importorskip("llama_cpp")
    from helpers.peers import llama_cpp_quantize

    return {r: llama_cpp_quantize(minilm_gguf, r.upper()) for r in RECIPES}


def read_gguf(path) -> tuple[int, dict[str, np.ndarray]]:
    """general.file_type and the 2-D tensors dequantized to float32 (gguf's reader: about a second
    per file, for the vocabulary; read each file once)."""
    reader = gguf.GGUFReader(str(path))
    weights = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
               for t in reader.tensors if len(t.shape) == 2 and t.tensor_type.name not in ("F32", "F16", "Q8_0")}
    return int(reader.fields["general.file_type"].parts[-1][0]), weights


@pytest.fixture(scope="module")
def minilm_f32_weights(minilm_gguf) -> dict[str, np.ndarray]:
    reader = gguf.GGUFReader(str(minilm_gguf))
    return {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in reader.tensors if len(t.shape) == 2}


@pytest.mark.peers
@pytest.mark.parametrize("recipe", RECIPES)
def test_types_and_weights_against_llama_cpp(recipe, ours, theirs, minilm_f32_weights):
    """Same type for every tensor as llama.cpp's file from the same F32 GGUF, the same
    general.file_type, and every quantized matrix at least as close to F32 as llama.cpp's.
    (Q8_0 we write bit for bit as ggml does, see test_convert; F32/F16 are not quantized.)"""
    our_types, their_types = matrix_types(ours[recipe]), matrix_types(theirs[recipe])
    assert our_types == their_types
    (our_ftype, mine), (their_ftype, llama) = read_gguf(ours[recipe]), read_gguf(theirs[recipe])
    assert our_ftype == their_ftype == int(conv._FILE_TYPES[recipe])
    assert mine.keys() == llama.keys() and len(mine) > 0
    worse = []
    for name in sorted(mine):
        f32 = minilm_f32_weights[name]
        rms_ours = np.sqrt(np.mean((mine[name] - f32) ** 2))
        rms_llama = np.sqrt(np.mean((llama[name] - f32) ** 2))
        if rms_ours > rms_llama:
            worse.append(f"{name} ({our_types[name]}): {rms_ours:.4g} > {rms_llama:.4g}")
    assert not worse, worse


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
@pytest.mark.peers
# q4_k_m and q5_k_m files hold every type we write (Q4_K, Q5_K, Q6_K, Q5_0, Q5_1, Q8_0).
@pytest.mark.parametrize("recipe", ["q4_k_m", "q5_k_m"])
def test_llama_cpp_runs_our_file_with_our_vectors(recipe, ours, corpus, st_minilm):
    """llama.cpp loads our file and, where its tokenizer gives Hugging Face's ids, its vectors
    agree with ours as closely as they do on llama.cpp's own file of the same recipe.

    The engines differ by more than the weights here: llama.cpp rounds activations to 8 bits
    for quantized weights, which moves the shortest texts (3-4 tokens) most. Measured on the
    first 80 short texts: on F32 files the engines
    agree to 0.99999, on Q8_0 to min 0.9981; on q4_k_m / q5_k_m / q6_k to min 0.9978 / 0.9972 /
    0.9977 on our files and 0.9977 / 0.9980 / 0.9975 on llama.cpp's own, medians 0.9997 on all.
    The medians say the engines read the same weights (a misread block costs far more)."""
    pytest.importorskip("llama_cpp")
    from helpers.peers import llama_embed

    # Texts of at most 64 tokens: llama.cpp embeds one text per call, and CI time is short.
    texts = [t for t in corpus if t.strip() and len(st_minilm.tokenize([t])["input_ids"][0]) <= 64][:40]
    model = Model(ours[recipe], threads=2)
    their_vec, their_ids = llama_embed(ours[recipe], texts, with_ids=True)
    same = np.array([model.tokenize(t) == ids for t, ids in zip(texts, their_ids)])
    assert same.sum() >= 30
    agree = cosines(model.embed(texts), their_vec)[same]
    print(f"\n{recipe}: embedq vs llama.cpp on our file, {same.sum()} texts: min {agree.min():.5f} "
          f"median {np.median(agree):.6f}")
    assert np.median(agree) >= 0.9995 and agree.min() >= 0.996


# Floors on our runtime with our file vs sentence-transformers F32 over the corpus (min, median):
# what was measured less about 0.01 on the min and 0.003 on the median. Measured (our file /
# llama.cpp's file, min and median): q4_k_m 0.9612/0.98996 vs 0.9583/0.98962; q5_k_m
# 0.9742/0.99501 vs 0.9748/0.99414; q6_k 0.9978/0.99959 vs 0.9970/0.99959.
ST_FLOORS = {"q4_k_m": (0.95, 0.987), "q5_k_m": (0.968, 0.992), "q6_k": (0.99, 0.999)}


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.parametrize("recipe", ["q4_k_m"])  # the lossiest; the others are covered weight by weight above
def test_our_file_is_as_accurate_as_llama_cpps(recipe, ours, theirs, corpus, st_minilm_vectors):
    """Our runtime on our file against sentence-transformers F32, beside our runtime on the file
    llama.cpp's quantizer made: the same weights types, our blocks no worse."""
    mine = cosines(Model(ours[recipe], threads=2).embed(corpus), st_minilm_vectors)
    llama = cosines(Model(theirs[recipe], threads=2).embed(corpus), st_minilm_vectors)
    print(f"\n{recipe}: vs sentence-transformers over {len(corpus)} texts: our file min {mine.min():.5f} median "
          f"{np.median(mine):.6f}; llama.cpp's file min {llama.min():.5f} median {np.median(llama):.6f}")
    floor_min, floor_median = ST_FLOORS[recipe]
    assert mine.min() >= floor_min and np.median(mine) >= floor_median
    assert np.median(mine) >= np.median(llama) - 0.0005 and mine.min() >= llama.min() - 0.005


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.gemma
def test_gemma_recipe_types_match_llama_cpp(gemma_dir, gemma_gguf):
    """EmbeddingGemma's rows (768, 1152 for ffn_down, 3072 in the dense head) and 24 layers
    exercise the fallbacks and the layer rule; the types our recipe picks are llama.cpp's.
    (Only the choice: quantizing 300M weights belongs in the benchmark, not in CI.)"""
    pytest.importorskip("llama_cpp")
    from helpers.peers import llama_cpp_quantize
    from native.convert.gemma import build_gemma_embedding
    from native.convert.common import read_json

    plan = build_gemma_embedding(gemma_dir, read_json(gemma_dir / "config.json"))
    conv._choose_types(plan.tensors, "q4_k_m", (), ())
    chosen = {t.name: t.qtype.name for t in plan.tensors}
    theirs = matrix_types(llama_cpp_quantize(gemma_gguf, "Q4_K_M"))
    assert chosen == theirs
    assert Counter(chosen.values())["Q6_K"] > 0 and Counter(chosen.values())["Q5_0"] > 0


@pytest.fixture(scope="module")
def wide_models(tmp_path_factory, corpus, qwen3_tokenizer):
    """Random Qwen3 and ModernBERT models wide enough (256) for whole super-blocks, with 8
    layers so the _M recipes' layer rule picks some layers and not others; ModernBERT's fused
    attn_qkv is the attn_v of the rule."""
    from helpers import modernbert_models, qwen3_models

    d = tmp_path_factory.mktemp("wide")
    folders = {
        "qwen3": qwen3_models.build_st_folder(d / "qwen3", qwen3_tokenizer, hidden=256, layers=8, heads=8,
                                              kv_heads=2, head_dim=32, ff=512),
        "modernbert": modernbert_models.build_st_folder(d / "modernbert", modernbert_models.train_tokenizer(corpus),
                                                        hidden=256, layers=8, heads=4, ff=384),
    }
    return {arch: conv.convert(f, d / f"{arch}-f32.gguf", progress=False) for arch, f in folders.items()}


@pytest.mark.peers
@pytest.mark.parametrize("arch", ["qwen3", "modernbert"])
def test_other_architectures_get_llama_cpps_types(arch, wide_models, tmp_path):
    pytest.importorskip("llama_cpp")
    from helpers.peers import llama_cpp_quantize

    src = wide_models[arch]
    for recipe in RECIPES:
        theirs = matrix_types(llama_cpp_quantize(src, recipe.upper()))
        names = [t.name for t in gguf.GGUFReader(str(src)).tensors]
        ours = matrix_types(conv.convert(src.parent / arch, tmp_path / f"{recipe}.gguf", recipe, progress=False))
        assert sorted(ours) == sorted(names)
        assert ours == theirs, recipe
        held = set(ours.values())
        assert {"Q6_K", recipe[:2].upper() + "_K"} <= held


def test_pull_and_list_know_the_recipes(minilm_dir, tmp_path, monkeypatch, capsys):
    from embedq.cli import main
    from native import hub

    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "fetch", lambda name, progress=True, home=None: minilm_dir)
    assert main(["models", "pull", "all-MiniLM-L6-v2", "--type", "q4_k_m", "--no-progress"]) == 0
    path = capsys.readouterr().out.splitlines()[-1]
    assert path == str(hub.gguf_path("all-MiniLM-L6-v2", "q4_k_m", tmp_path))
    assert {"Q4_K", "Q5_0", "Q6_K", "Q8_0"} <= set(matrix_types(path).values())
    assert main(["models", "list"]) == 0
    assert "types cached: q4_k_m" in capsys.readouterr().out
    with pytest.raises(hub.HubError, match="q4_k_m, q5_k_m, q6_k"):
        hub.pull("all-MiniLM-L6-v2", "q4_k_s", progress=False)
