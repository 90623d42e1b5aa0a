"""`embedq bench accuracy`: what it writes (the BENCHMARKS.md section and the results file) and
that a run reproduces the published figures (bench/results/accuracy.json).

Margins as in tests/runtime/test_accuracy_bert.py: cosines and max abs diff within 2e-5, counts exact
(texts under 0.999 may move only by the texts within 2e-5 of 0.999)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench import accuracy
from bench.accuracy import RESULTS_FILE, discrepancies, find_row, load_results, merge, render
from bench.report import markers, read_section

ROOT = Path(__file__).resolve().parents[2]
MARGIN = 2e-5


def _row(model="all-MiniLM-L6-v2", file_type="f32", engine="embedq", activations="f32", **kw):
    base = {"model": model, "file_type": file_type, "engine": engine, "activations": activations, "texts": 10,
            "min_cos": 0.999, "median_cos": 0.9999, "under_0999": 0, "max_abs_diff": 0.001, "token_ids_equal": 10}
    return {**base, **kw}


META = {"corpus": {"texts": 10, "sha256_16": "abc"}, "reference": {"sentence_transformers": "x", "torch": "y"},
        "machine": "cpu", "date": "2026-01-01"}


def test_merge_replaces_measured_rows_and_keeps_the_others():
    old = merge({}, [_row(min_cos=0.5), _row(file_type="q8_0"), _row(model="embeddinggemma-300m")], META)
    new = merge(old, [_row(min_cos=0.75)], META)
    assert [r["min_cos"] for r in new["rows"] if r["file_type"] == "f32" and r["model"] == "all-MiniLM-L6-v2"] \
        == [0.75]
    assert len(new["rows"]) == 3
    # MiniLM before Gemma, types in f32, f16, q8_0 order, llama.cpp after ours.
    mixed = merge({}, [_row(model="embeddinggemma-300m"), _row(file_type="q8_0", engine="llama.cpp",
                                                              activations=None), _row(file_type="q8_0"), _row()], META)
    assert [(r["model"][:3], r["file_type"], r["engine"]) for r in mixed["rows"]] == [
        ("all", "f32", "embedq"), ("all", "q8_0", "embedq"), ("all", "q8_0", "llama.cpp"), ("emb", "f32", "embedq")]
    # Rows measured on another corpus are stale: dropped.
    other = merge(old, [_row()], {**META, "corpus": {"texts": 11, "sha256_16": "def"}})
    assert len(other["rows"]) == 1


def test_render_writes_every_row_and_the_reproduce_line():
    results = merge({}, [_row(min_cos=0.99930367), _row(file_type="q8_0", engine="llama.cpp", activations=None,
                                                        llama_cpp_python="0.3.36", failed=1, texts=9)], META)
    md = render(results, 2)
    assert "| all-MiniLM-L6-v2 | F32 | embedq, f32 activations | 0.9993037 | 0.9999000 | 0 | 0.001 | 10/10 |" in md
    assert "| all-MiniLM-L6-v2 | Q8_0 | llama.cpp 0.3.36 |" in md and "10/10 |" in md.split("llama.cpp 0.3.36")[1]
    assert "Reproduce: `embedq bench accuracy --threads 2`" in md
    assert "<!--" not in md


def test_discrepancies_respect_the_margins():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 8)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    vec = ref + 1e-3 * rng.normal(size=ref.shape).astype(np.float32)
    f = accuracy.figures(vec, ref)
    assert discrepancies(vec, ref, f, MARGIN, MARGIN) == []
    assert discrepancies(vec, ref, {**f, "min_cos": f["min_cos"] + 3e-5}, MARGIN, MARGIN)
    assert discrepancies(vec, ref, {**f, "max_abs_diff": f["max_abs_diff"] - 3e-5}, MARGIN, MARGIN)
    assert discrepancies(vec, ref, {**f, "under_0999": f["under_0999"] + 1}, MARGIN, MARGIN)
    assert discrepancies(vec, ref, {**f, "texts": 21}, MARGIN, MARGIN)


def test_published_results_and_the_markdown_agree():
    # The committed BENCHMARKS.md section is what render() makes of the committed results file.
    published = load_results(RESULTS_FILE)
    for model in ("all-MiniLM-L6-v2", "embeddinggemma-300m"):
        for file_type in ("f32", "q8_0"):
            assert find_row(published, model, file_type) is not None, (model, file_type)
    section = read_section(ROOT / "BENCHMARKS.md", "accuracy")
    assert section == render(published, published["rows"][0]["threads"]).strip("\n")


@pytest.mark.peers
def test_command_writes_figures_consistent_with_the_published_ones(tmp_path):
    from embedq.cli import main

    out = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "BENCHMARKS.md", out)
    results = tmp_path / "bench" / "results" / "accuracy.json"
    results.parent.mkdir(parents=True)
    shutil.copy(RESULTS_FILE, results)
    before = out.read_text()

    rc = main(["bench", "accuracy", "--models", "all-MiniLM-L6-v2", "--types", "f32", "--llama-types", "",
               "--threads", "2", "--out", str(out)])
    assert rc == 0

    published = load_results(RESULTS_FILE)
    written = json.loads(results.read_text())
    old, new = find_row(published, "all-MiniLM-L6-v2", "f32"), find_row(written, "all-MiniLM-L6-v2", "f32")
    assert new is not None
    for k in ("min_cos", "median_cos", "max_abs_diff"):
        assert abs(new[k] - old[k]) <= MARGIN, (k, new[k], old[k])
    for k in ("texts", "under_0999", "token_ids_equal"):
        assert new[k] == old[k], (k, new[k], old[k])
    # The rows it did not measure are kept as published.
    def others(res):
        return [r for r in res["rows"] if (r["model"], r["file_type"]) != ("all-MiniLM-L6-v2", "f32")]

    assert others(written) == others(published) and len(others(written)) == len(written["rows"]) - 1

    text = out.read_text()
    start, end = markers("accuracy")
    assert text.count(start) == 1 and text.count(end) == 1
    section = read_section(out, "accuracy")
    row = re.search(r"^\| all-MiniLM-L6-v2 \| F32 \| embedq, f32 activations \| ([\d.]+) \| ([\d.]+) \| (\d+) \| "
                    r"([\d.e+-]+) \| (\d+)/(\d+) \|$", section, flags=re.M)
    assert row, section
    min_cos, median_cos, under, max_abs, equal, total = row.groups()
    assert abs(float(min_cos) - old["min_cos"]) <= MARGIN + 5e-8
    assert abs(float(median_cos) - old["median_cos"]) <= MARGIN + 5e-8
    assert int(under) == old["under_0999"] and int(equal) == old["token_ids_equal"] and int(total) == old["texts"]
    assert abs(float(max_abs) - old["max_abs_diff"]) <= MARGIN + 0.05 * old["max_abs_diff"]
    # Only the accuracy section changed.
    i, j = before.index(start), before.index(end)
    assert text[:i] == before[:i] and text[text.index(end):] == before[j:]
