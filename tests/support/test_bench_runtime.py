"""`embedq bench runtime`, small: its section lands between its markers with the command that
reproduces it, and a rerun replaces section and plot instead of adding copies."""
from __future__ import annotations

import shlex

from bench.report import markers, read_section


def test_runtime_section_is_replaced_on_rerun(tmp_path, minilm_gguf):
    from embedq.cli import build_parser, main

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nintro kept\n")
    argv = ["bench", "runtime", "--model", str(minilm_gguf), "--threads", "1", "--texts", "8", "--batch-sizes", "1,4",
            "--peers", "", "--activations", "f32", "--max-seconds", "5", "--output", str(out)]
    assert main(argv) == 0
    key = f"runtime-{minilm_gguf.stem}-short"
    first = read_section(out, key)
    assert first and "| embedq (f32) | 1 |" in first and "| embedq (f32) | 4 |" in first
    png = tmp_path / "docs" / f"bench-runtime-{minilm_gguf.stem}-short.png"
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
