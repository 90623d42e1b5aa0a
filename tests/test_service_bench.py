"""`embedq bench service`: its BENCHMARKS.md section handling, and a small real run through Redis."""
from __future__ import annotations

import re

import pytest

from worker.bench_service import END, START, parse_sizes, write_section


def test_section_is_replaced_in_place_and_other_sections_survive(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_section(path, f"{START}\nfirst\n{END}")
    assert path.read_text().startswith("# Benchmarks") and "first" in path.read_text()
    path.write_text("# Benchmarks\n\n## Runtime\nnumbers\n\n" + f"{START}\nfirst\n{END}\n\n## After\nkept\n")
    write_section(path, f"{START}\nsecond\n{END}")
    text = path.read_text()
    assert "first" not in text and "second" in text and "## Runtime\nnumbers" in text and "## After\nkept" in text
    assert text.count(START) == 1 and text.count(END) == 1


def test_job_sizes_are_checked():
    assert parse_sizes("1,4, 16") == [1, 4, 16]
    for bad in ("", "0", "a,b", "4,-1"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


@pytest.mark.service
def test_small_benchmark_run_writes_its_section(redis_url, minilm_gguf, tmp_path, monkeypatch):
    from worker.cli import main

    monkeypatch.setenv("EMBEDQ_HOME", str(tmp_path / "home"))
    out = tmp_path / "BENCHMARKS.md"
    rc = main(["bench", "service", "--broker", redis_url, "--model", str(minilm_gguf), "--texts", "48",
               "--texts-per-job", "4", "--latency-jobs", "12", "--repeat", "1", "--clients", "3",
               "--output", str(out)])
    assert rc == 0
    text = out.read_text()
    row = re.search(r"^\| 4 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)% \|$", text, flags=re.M)
    assert row, text
    raw, jobs_s, texts_s, pct = map(float, row.groups())
    assert raw > 0 and jobs_s > 0 and abs(texts_s - 4 * jobs_s) < 0.2 and abs(pct - 100 * texts_s / raw) < 0.2
    for load in ("| 50% |", "| 90% |"):
        assert load in text
