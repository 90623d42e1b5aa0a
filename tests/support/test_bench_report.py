"""bench/report.py: the one helper every benchmark writes its BENCHMARKS.md sections with."""
from __future__ import annotations

import pytest

from bench.report import markers, plot_path, read_section, replace_section, reproduce

START, END = markers("runtime-x-short")


def test_markers_are_unique_per_key():
    assert START == "<!-- embedq-bench:runtime-x-short:start -->"
    assert END == "<!-- embedq-bench:runtime-x-short:end -->"
    assert markers("accuracy") != markers("runtime-x-short")
    with pytest.raises(ValueError):
        markers("bad key")


def test_creates_the_file_and_the_section_when_absent(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    replace_section(path, "accuracy", "## Accuracy\n\n| a |\n|---|\n| 1 |\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n")
    assert read_section(path, "accuracy") == "## Accuracy\n\n| a |\n|---|\n| 1 |"
    # Another key goes after the first, which stays.
    replace_section(path, "runtime-x-short", "## Runtime\n")
    text = path.read_text()
    assert text.index(markers("accuracy")[1]) < text.index(START)
    assert read_section(path, "accuracy").startswith("## Accuracy")


def test_replaces_in_place_and_keeps_everything_else(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\nintro\n\n{START}\nold table\n{END}\n\nhand-written note\n\n"
                    f"{markers('other')[0]}\nother\n{markers('other')[1]}\n")
    replace_section(path, "runtime-x-short", "new table\n\nReproduce: `embedq bench runtime`")
    text = path.read_text()
    assert "old table" not in text
    assert text == (f"# Benchmarks\n\nintro\n\n{START}\nnew table\n\nReproduce: `embedq bench runtime`\n{END}\n\n"
                    f"hand-written note\n\n{markers('other')[0]}\nother\n{markers('other')[1]}\n")


def test_rerun_is_idempotent_and_never_duplicates_the_image(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    body = "## Service\n\n| x |\n|---|\n| 1 |\n\n![service throughput and latency](docs/bench-service.png)"
    replace_section(path, "service", body)
    once = path.read_text()
    for _ in range(3):
        replace_section(path, "service", body)
    assert path.read_text() == once
    assert once.count("](docs/bench-service.png)") == 1
    assert once.count(markers("service")[0]) == 1 and once.count(markers("service")[1]) == 1


def test_stray_image_copies_after_the_section_are_dropped(tmp_path):
    # What the service benchmark left before the image moved inside its markers: two copies
    # of the link after the end marker.
    s, e = markers("service")
    img = "![service throughput and latency](docs/bench-service.png)"
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{s}\nold\n{e}\n\n{img}\n\n{img}\n\n## Next\n\n![other](docs/other.png)\n")
    replace_section(path, "service", f"new\n\n{img}")
    text = path.read_text()
    assert text == f"# Benchmarks\n\n{s}\nnew\n\n{img}\n{e}\n\n## Next\n\n![other](docs/other.png)\n"
    assert text.count(img) == 1


def test_broken_markers_are_refused(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{START}\nno end marker\n")
    with pytest.raises(ValueError, match="only one of its two markers"):
        replace_section(path, "runtime-x-short", "x")
    path.write_text(f"# Benchmarks\n\n{START}\na\n{END}\n{START}\nb\n{END}\n")
    with pytest.raises(ValueError, match="more than once"):
        replace_section(path, "runtime-x-short", "x")
    with pytest.raises(ValueError):
        replace_section(tmp_path / "new.md", "runtime-x-short", f"{START}\nx")


def test_plot_paths_are_stable_under_docs(tmp_path):
    png, link = plot_path(tmp_path / "BENCHMARKS.md", "bench-service.png")
    assert png == tmp_path / "docs" / "bench-service.png" and png.parent.is_dir()
    assert link == "docs/bench-service.png"
    assert plot_path(tmp_path / "BENCHMARKS.md", "bench-service.png") == (png, link)


def test_reproduce_line():
    assert reproduce("runtime", [("--model", "all-MiniLM-L6-v2:q8_0"), ("--threads", 2), ("--hf-dir", None),
                                 ("--skip", True), ("--no", False), ("--peers", "")]) == \
        "Reproduce: `embedq bench runtime --model all-MiniLM-L6-v2:q8_0 --threads 2 --skip --peers ''`"


def test_every_benchmark_writes_through_the_shared_helper():
    import inspect

    from bench import accuracy, recipes, runtime, service

    for module in (accuracy, recipes, runtime, service):
        src = inspect.getsource(module)
        assert "replace_section(" in src, module.__name__
        assert ":start -->" not in src and "write_text(text" not in src, module.__name__


def test_benchmarks_md_tables_are_all_generated_by_a_named_command():
    """Every table and plot of BENCHMARKS.md sits in a marked section whose text names, on its
    `Reproduce:` line, an `embedq bench` command the CLI accepts; each plot appears once."""
    import re
    import shlex
    from pathlib import Path

    from embedq.cli import build_parser

    root = Path(__file__).resolve().parents[2]
    text = (root / "BENCHMARKS.md").read_text(encoding="utf-8")
    sections = re.findall(r"<!-- embedq-bench:([\w.-]+):start -->\n(.*?)\n<!-- embedq-bench:\1:end -->", text,
                          flags=re.S)
    assert len(sections) >= 6, [k for k, _ in sections]
    assert len({k for k, _ in sections}) == len(sections)
    outside = re.sub(r"<!-- embedq-bench:([\w.-]+):start -->.*?<!-- embedq-bench:\1:end -->", "", text, flags=re.S)
    assert not [line for line in outside.splitlines() if line.startswith("|") or line.startswith("![")]
    for key, body in sections:
        commands = re.findall(r"^Reproduce: `(embedq bench [^`]+)`", body, flags=re.M)
        assert len(commands) == 1, key
        argv = shlex.split(commands[0])[1:]
        args = build_parser().parse_args(argv)
        assert args.command == "bench" and key.startswith(
            {"runtime": "runtime-", "service": "service", "accuracy": "accuracy", "http": "http", "faults": "faults",
             "recipes": "gemma-q8-recipes", "quants": "quants"}[args.bench_command]), key
    images = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)", text, flags=re.M)
    assert len(images) == len(set(images))
    for img in images:
        assert (root / img).is_file(), img
