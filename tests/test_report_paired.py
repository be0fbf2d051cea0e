"""Paired differences over seeds (`compare --baseline`, `sweep --baseline`), against a hand computation."""

from __future__ import annotations

import math

import pytest

from robustfair.errors import ConfigError
from robustfair.report.compare import RunGroup
from robustfair.report.paired import paired_difference, paired_text
from robustfair.report.runs import RunRecord
from robustfair.report.tables import SUMMARY_COLUMNS


def record(name: str, seed: int, worst_rob: float, tmp_path) -> RunRecord:
    summary = {key: 10.0 for key, _ in SUMMARY_COLUMNS}
    summary["worst_rob_err"] = worst_rob
    results = {"summary": summary, "run": {"name": name, "seed": seed}, "attack": {"name": "pgd20"}}
    return RunRecord(path=tmp_path / name / f"seed{seed}", results=results)


def group(name: str, values: dict[int, float], tmp_path) -> RunGroup:
    return RunGroup(name, [record(name, seed, value, tmp_path) for seed, value in values.items()])


def test_differences_interval_and_sign_test_match_a_hand_computation(tmp_path):
    base = group("pgd_at", {0: 40.0, 1: 44.0, 2: 42.0}, tmp_path)
    method = group("bat", {2: 39.0, 0: 35.0, 1: 41.0}, tmp_path)  # order of runs must not matter
    diff = paired_difference(method, base, "worst_rob_err")
    assert diff.seeds == (0, 1, 2)
    assert diff.differences == (-5.0, -3.0, -3.0)
    mean = -11.0 / 3
    sd = math.sqrt(((-5 - mean) ** 2 + 2 * (-3 - mean) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2}
    low, high = diff.interval
    assert diff.mean == pytest.approx(mean)
    assert (low, high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert diff.excludes_zero == (mean + half < 0)
    assert diff.sign_test_p == pytest.approx(0.25)  # 3 of 3 negative: 2 * 0.5**3


def test_only_shared_seeds_are_paired_and_ties_leave_the_sign_test(tmp_path):
    base = group("erm", {0: 50.0, 1: 50.0, 3: 50.0}, tmp_path)
    method = group("trades", {0: 50.0, 1: 48.0, 2: 10.0}, tmp_path)
    diff = paired_difference(method, base, "worst_rob_err")
    assert diff.seeds == (0, 1) and diff.differences == (0.0, -2.0)
    assert diff.sign_test_p == pytest.approx(1.0)  # one non-zero difference: p = 1
    single = paired_difference(group("x", {0: 1.0}, tmp_path), base, "worst_rob_err")
    assert single.interval is None and not single.excludes_zero


def test_text_marks_intervals_that_exclude_zero_and_lists_per_seed_values(tmp_path):
    groups = [
        group("pgd_at", {0: 40.0, 1: 41.0, 2: 42.0}, tmp_path),
        group("bat", {0: 30.0, 1: 31.0, 2: 32.5}, tmp_path),  # consistently lower: interval < 0
        group("noisy", {0: 30.0, 1: 50.0, 2: 41.0}, tmp_path),
    ]  # spread covers 0
    text = paired_text(groups, "pgd_at")
    bat_line = next(line for line in text.splitlines() if line.startswith("| bat |") and "[" in line)
    noisy_line = next(line for line in text.splitlines() if line.startswith("| noisy |") and "[" in line)
    assert bat_line.rstrip(" |").endswith("*")
    assert "*" not in noisy_line
    assert "-10.0 / -10.0 / -9.5 (p=0.25)" in text
    assert "| pgd_at |" not in text  # the baseline is not compared with itself


def test_an_unknown_baseline_names_the_rows(tmp_path):
    groups = [group("pgd_at", {0: 1.0}, tmp_path), group("bat", {0: 1.0}, tmp_path)]
    with pytest.raises(ConfigError, match="pgd_at, bat"):
        paired_text(groups, "trades")


def test_table_caption_names_restarts_version_and_sample_count(tmp_path):
    from robustfair.report.compare import comparison_text

    pgd = record("pgd_at", 0, 20.0, tmp_path)
    pgd.results["attack"] = {"name": "pgd40_r3", "eps": 0.3, "steps": 40, "restarts": 3}
    pgd.results["num_samples"] = 2000
    text = comparison_text([RunGroup("pgd_at", [pgd])], per_class=False)
    assert text.splitlines()[0] == (
        "error % (lower is better), last model, pgd40_r3 (eps 0.3, 40 steps, 3 restarts), on 2,000 test samples"
    )
    aa = record("pgd_at", 0, 20.0, tmp_path)
    aa.results["attack"] = {"name": "autoattack", "eps": 0.3, "restarts": None, "version": "standard"}
    assert "autoattack (eps 0.3, standard)" in comparison_text([RunGroup("pgd_at", [aa])], per_class=False)
