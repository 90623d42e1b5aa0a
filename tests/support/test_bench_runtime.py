"""`embedq bench runtime`, small: its section lands between its markers with the command that
reproduces it, and a rerun replaces section and plot instead of adding copies."""
from __future__ import annotations

import shlex

import native
from bench.report import markers, read_section
from bench.runtime import section_key


def _key(stem: str) -> str:
    # The embedq run uses the best kernel set of this CPU; its section is named after it.
    return section_key(stem, "short", native.kernel_sets()[-1])


def test_runtime_section_is_replaced_on_rerun(tmp_path, minilm_gguf):
    from embedq.cli import build_parser, main

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nintro kept\n")
    argv = ["bench", "runtime", "--model", str(minilm_gguf), "--threads", "1", "--texts", "8", "--batch-sizes", "1,4",
            "--peers", "", "--activations", "f32", "--max-seconds", "5", "--output", str(out)]
    assert main(argv) == 0
    key = _key(minilm_gguf.stem)
    first = read_section(out, key)
    assert first and "| embedq (f32) | 1 |" in first and "| embedq (f32) | 4 |" in first
    png = tmp_path / "docs" / f"bench-{key}.png"
    assert png.is_file() and f"](docs/{png.name})" in first

    # The reproduce line is the command that was run (the output file aside), and the CLI accepts it.
    line = next(x for x in first.splitlines() if x.startswith("Reproduce: `"))
    cmd = shlex.split(line[len("Reproduce: `"):-1])
    assert cmd[:3] == ["embedq", "bench", "runtime"]
    ran, again = vars(build_parser().parse_args(argv)), vars(build_parser().parse_args(cmd[1:]))
    assert {k: v for k, v in again.items() if k != "output"} == {k: v for k, v in ran.items() if k != "output"}

    assert main(argv) == 0
    text = out.read_text()
    start, end = markers(key)
    assert text.count(start) == 1 and text.count(end) == 1 and text.count(png.name) == 1
    assert text.startswith("# Benchmarks\n\nintro kept\n")


def _run(engine, label, rates, load_s=0.1, rss=80.0):
    return {"engine": engine, "label": label, "load_s": load_s, "peak_rss_mb": rss, "meta": {},
            "results": [{"batch_size": bs, "texts": 10, "seconds": 10 / r, "texts_per_s": r, "latency_ms": [1000 / r]}
                        for bs, r in rates.items()]}


def test_rounds_report_the_median_run_and_pool_latencies():
    from bench.runtime import merge_rounds

    rounds = [_run("embedq", "e", {1: r1, 32: r32}, load_s=ls, rss=rss)
              for r1, r32, ls, rss in [(10, 300, 0.1, 80), (50, 100, 0.3, 90), (30, 200, 0.2, 70)]]
    merged = merge_rounds(rounds)
    assert [r["texts_per_s"] for r in merged["results"]] == [30, 200]
    assert merged["results"][0]["rounds"] == [10, 50, 30]
    assert len(merged["results"][1]["latency_ms"]) == 3
    assert merged["load_s"] == 0.2 and merged["peak_rss_mb"] == 90


def test_the_any_batch_column_compares_with_llamas_best_configuration():
    from bench.runtime import render_markdown

    runs = [_run("embedq", "embedq (default: int16)", {1: 100, 32: 300}),
            _run("llama.cpp", "llama.cpp (n_ctx=n_batch=512)", {1: 150, 32: 50}),
            _run("llama.cpp", "llama.cpp (n_ctx=n_batch=2048)", {1: 120, 32: 60})]
    md = render_markdown("t", "setup", runs, 10.0)
    row = next(x for x in md.splitlines() if x.startswith("| embedq (default: int16) | 32 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # Same batch: 300 / max(50, 60); any batch: 300 / 150 (llama.cpp at batch 1, n_ctx 512).
    assert cells[9] == "5.00x" and cells[10] == "2.00x"


def test_accuracy_columns_and_the_time_split_come_from_the_runs(tmp_path, minilm_gguf, minilm_dir):
    from embedq.cli import main

    out = tmp_path / "BENCHMARKS.md"
    argv = ["bench", "runtime", "--model", str(minilm_gguf), "--threads", "1", "--texts", "8", "--batch-sizes", "4",
            "--peers", "", "--hf-dir", str(minilm_dir), "--activations", "f32", "--max-seconds", "5",
            "--output", str(out)]
    assert main(argv) == 0
    section = read_section(out, _key(minilm_gguf.stem))
    row = next(x for x in section.splitlines() if x.startswith("| embedq (f32) | 4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # The F32 file against sentence-transformers on the whole multilingual corpus.
    assert float(cells[12]) >= 0.9999 and float(cells[13]) >= 0.99999 and cells[14] == "0"
    split = next(x for x in section.splitlines() if x.startswith("embedq (f32) ("))
    assert "linear layers" in split and "GOP/s" in split and "% of the" in split and "peak" in split
    assert "Peaks measured in this run" in section and "multilingual corpus (3" in section


def test_sections_of_other_kernel_sets_stand_beside_the_vnni_ones():
    assert section_key("m-q8_0", "short", "avx512vnni") == "runtime-m-q8_0-short"
    assert section_key("m-q8_0", "short", "avx2") == "runtime-m-q8_0-short-avx2"


def test_time_split_rates_the_linear_layers_against_their_family_peak():
    from bench.runtime import peak_family, time_split

    meta = {"kernels": "avx512vnni", "weight_type": "Q8_0", "activations": "int16", "forward_ms": 100.0,
            "linear_ms": 80.0, "attention_ms": 15.0, "tokenize_ms": 2.0, "linear_ops": 8e9}
    assert peak_family(meta) == "int16 dot (avx512 vpdpwssd)"
    line = time_split({"label": "embedq (default: int16)", "meta": meta}, {"int16 dot (avx512 vpdpwssd)": 200.0})
    # 8e9 ops in 80 ms = 100 GOP/s = 50% of 200.
    assert "linear layers 80.0% of forward time at 100 GOP/s, 50% of the 200 GOP/s" in line
    assert "attention 15.0%" in line and "rest 5.0%" in line and "tokenization 2.00%" in line
    assert peak_family(dict(meta, activations="f32", kernels="avx2")) == "fp32 fma (avx2)"
    # int16 products serve F16 and the K types too; F32 weights always take the f32 path.
    assert peak_family(dict(meta, weight_type="F16")) == "int16 dot (avx512 vpdpwssd)"
    assert peak_family(dict(meta, weight_type="F32")) == "fp32 fma (avx512)"


def test_peak_rss_is_the_childs_own_not_its_parents():
    """Engines run in children of the benchmark process; getrusage's ru_maxrss would hand each child
    the parent's peak (Linux keeps it across fork and exec), so a parent holding 400 MB made every
    engine look at least that big."""
    import subprocess
    import sys

    held = bytearray(400 << 20)
    held[::4096] = b"\1" * len(held[::4096])  # touch every page
    code = "from bench.runtime import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 200, out.stdout
    del held
