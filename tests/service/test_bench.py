"""`embedq bench service`: its BENCHMARKS.md section handling, and a small real run through Redis."""
from __future__ import annotations

import os
import re

import pytest

from bench.report import markers, read_section
from bench.service import SECTION, cpu_budget_ms, parse_sizes, write_report


def test_section_and_plot_are_replaced_in_place(tmp_path, monkeypatch):
    # A rerun replaces the service section, its plot link included, and the plot file (same name).
    import bench.service

    monkeypatch.setattr(bench.service, "plot", lambda r, png: png.write_bytes(b"png"))
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Runtime\nnumbers\n")
    write_report(path, {}, "## Service\nfirst")
    path.write_text(path.read_text() + "\n## After\nkept\n")
    write_report(path, {}, "## Service\nsecond")
    text = path.read_text()
    assert "first" not in text and "second" in read_section(path, SECTION)
    assert "## Runtime\nnumbers" in text and "## After\nkept" in text
    start, end = markers(SECTION)
    assert text.count(start) == 1 and text.count(end) == 1
    assert text.count("](docs/bench-service.png)") == 1
    assert "](docs/bench-service.png)" in read_section(path, SECTION)
    assert (tmp_path / "docs" / "bench-service.png").read_bytes() == b"png"


def test_job_sizes_are_checked():
    assert parse_sizes("1,4, 16") == [1, 4, 16]
    for bad in ("", "0", "a,b", "4,-1"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_cpu_budget_per_job_at_a_fraction_of_raw():
    # 300 texts/s raw on 2 cores: at 90%, 270 one-text jobs/s share 10% of 2 cores.
    assert cpu_budget_ms(300.0, 1, 2, 0.9) == pytest.approx(1000 * 0.2 / 270)
    assert cpu_budget_ms(300.0, 16, 2, 0.9) == pytest.approx(16 * cpu_budget_ms(300.0, 1, 2, 0.9))
    assert cpu_budget_ms(300.0, 4, 2, 1.0) == 0.0


@pytest.mark.service
def test_small_benchmark_run_writes_its_section(redis_url, minilm_gguf, tmp_path, monkeypatch):
    from embedq.cli import main

    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path / "home"))
    out = tmp_path / "BENCHMARKS.md"
    rc = main(["bench", "service", "--broker", redis_url, "--model", str(minilm_gguf), "--texts", "48",
               "--texts-per-job", "4", "--latency-jobs", "12", "--repeat", "1", "--clients", "3",
               "--output", str(out)])
    assert rc == 0
    text = out.read_text()
    num = r"([\d.]+)"
    row = re.search(rf"^\| 4 \| {num} \| {num} \| {num} \| {num}% \| {num} \| {num} \| {num} \|$", text, flags=re.M)
    assert row, text
    raw, jobs_s, texts_s, pct, worker_ms, client_ms, budget_ms = map(float, row.groups())
    # The table rounds to 0.1: 4 x jobs/s is off by up to 0.2, texts/s by up to 0.05.
    assert raw > 0 and jobs_s > 0 and abs(texts_s - 4 * jobs_s) <= 0.25 + 1e-9 and abs(pct - 100 * texts_s / raw) < 0.2
    # The worker's CPU per job includes its share of the forward passes; the client's is its own work.
    assert worker_ms > 0 and client_ms > 0
    assert budget_ms == pytest.approx(cpu_budget_ms(raw, 4, os.cpu_count(), 0.9), abs=0.01, rel=0.01)
    noop = re.search(rf"^\| no-op `embedq.ping` \| \| {num} \| \| \| {num} \| {num} \| \|$", text, flags=re.M)
    assert noop, text
    assert float(noop.group(1)) > 0
    for load in ("| 50% |", "| 90% |"):
        assert load in text
    section = read_section(out, SECTION)
    assert section and section.count("](docs/bench-service.png)") == 1 and text.count("bench-service.png") == 1
    assert "Reproduce: `embedq bench service --texts 48 --texts-per-job 4" in section
