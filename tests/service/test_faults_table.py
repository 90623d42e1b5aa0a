"""`embedq bench faults` without running anything: which rows the arguments ask for, what a row must
show to pass, and the table it renders."""
from __future__ import annotations

import argparse
import math

import pytest

from bench import faults
from bench.faults import Outcome


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    faults.add_arguments(p)
    return p.parse_args(list(argv))


def test_scenarios_are_checked_and_kept_in_table_order():
    assert parse().scenarios == list(faults.SCENARIOS)
    assert parse("--scenarios", "bad, stopkill,nopersist").scenarios == ["stopkill", "nopersist", "bad"]
    for bad in ("kills,stopkil", "", " , "):
        with pytest.raises(SystemExit):
            parse("--scenarios", bad)


def test_plan_has_one_row_per_database_signal_outage_and_bad_file(tmp_path):
    names = lambda *argv: [n for n, _ in faults.plan(parse(*argv), None, tmp_path)]  # noqa: E731
    assert names("--scenarios", "stopkill") == ["stopkill"] * 2               # SQLite, PostgreSQL
    assert names("--scenarios", "nopersist,bad") == ["nopersist"] + ["bad"] * 3  # messages, NaN file, overflow
    assert names("--scenarios", "restarts", "--restarts", "2") == ["restarts"] * 4
    assert names("--scenarios", "db", "--db-outage", "5,10,20") == ["db"] * 3
    assert names() == (["kills"] * 4 + ["stopkill"] * 2 + ["restarts"] * 4 + ["nopersist"] + ["db"] * 2
                       + ["bad"] * 3)


def test_only_a_run_of_every_scenario_writes_the_section():
    assert faults.writes(parse())
    assert not faults.writes(parse("--no-write"))
    assert not faults.writes(parse("--scenarios", "stopkill,bad"))


def outcome(**kw) -> Outcome:
    base = dict(scenario="s", submitted=20, refused=0, done=5, failed=0, lost=15, duplicated=0, wrong=0,
                recover_s=float("nan"))
    return Outcome(**{**base, **kw})


def test_a_row_passes_only_with_exactly_what_its_scenario_expects():
    assert outcome(expect_lost=15).ok()
    assert not outcome(expect_lost=14).ok()           # one job fewer was queued than were lost
    assert not outcome().ok()                         # the default expectation is 0 lost, 0 failed
    assert outcome(lost=0, done=20).ok()
    assert not outcome(lost=0, done=19, failed=1).ok()
    assert outcome(lost=0, failed=15, expect_failed=15).ok()
    assert not outcome(lost=0, failed=15, expect_failed=15, duplicated=1).ok()
    assert not outcome(expect_lost=15, problem="the worker exited 1, not 2").ok()


def test_the_table_shows_expected_counts_and_failed_checks():
    args = parse("--scenarios", "nopersist,bad", "--restarts", "2")
    md = faults.render([outcome(scenario="np", expect_lost=15, notes="15 jobs waiting"),
                        outcome(scenario="bad", lost=0, failed=3, expect_failed=3, recover_s=1.25),
                        outcome(scenario="nan", lost=0, done=5, submitted=5, problem="exited 1")], args)
    lines = md.splitlines()
    assert "| np | 20 | 0 (0) | 5 | 0 | 15 (expected 15) | 0 | 0 | nan | 15 jobs waiting |" in lines
    assert "| bad | 20 | 0 (0) | 5 | 3 (expected 3) | 0 | 0 | 0 | 1.25 |  |" in lines
    assert "| nan | 5 | 0 (0) | 5 | 0 | 0 | 0 | 0 | nan | CHECK FAILED: exited 1 |" in lines
    assert lines[-1] == "Reproduce: `embedq bench faults --scenarios nopersist,bad`"
    assert faults.render([], parse("--scenarios", "restarts,stopkill", "--restarts", "2")).endswith(
        "Reproduce: `embedq bench faults --stopkills 3 --restarts 2 --scenarios stopkill,restarts`")
    assert faults.render([], parse()).endswith(
        "Reproduce: `embedq bench faults --kills 20 --stopkills 3 --restarts 20 --db-outage 30,300`")
    assert math.isnan(outcome().recover_s)
