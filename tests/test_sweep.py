"""`robustfair sweep`: grid layout, hot-start chaining, skipping, resuming, and its tables.

The training tests use the embedded digits data with a tiny budget (8 training images per
class, 1 epoch, 1 attack step, 3 test images per class) and 2 seeds.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
import yaml

from robustfair.cli import main
from robustfair.commands.sweep import parse_seeds
from robustfair.engine import sweep
from robustfair.engine.sweep import plan_sweep, run_dir_for, run_sweep, sweep_table
from robustfair.errors import ConfigError

TINY = [
    "data.train_per_class=8",
    "data.test_per_class=3",
    "data.val_per_class=2",
    "train.epochs=1",
    "train.batch_size=32",
    "train.val_attack=none",
    "method.steps=1",
    "eval.attack=pgd10",
    "eval.sanity_checks=false",
]
PRESETS = ["digits_pgd_at", "digits_frl_rwrm"]
SUMMARY_KEYS = ["avg_std_err", "worst_std_err", "avg_bndy_err", "worst_bndy_err", "avg_rob_err", "worst_rob_err"]


def _quiet(_line: str) -> None:
    pass


# ---------------------------------------------------------------- planning (no training)


def test_plan_puts_hot_start_sources_first_and_chains_the_same_seed(tmp_path):
    plan = plan_sweep(["digits_faal", "digits_erm", "digits_frl_rwrm", "digits_pgd_at"], [0, 1], tmp_path)
    order = [(r.preset, r.seed) for r in plan]
    assert order == [
        ("digits_pgd_at", 0),
        ("digits_pgd_at", 1),
        ("digits_faal", 0),
        ("digits_faal", 1),
        ("digits_erm", 0),
        ("digits_erm", 1),
        ("digits_frl_rwrm", 0),
        ("digits_frl_rwrm", 1),
    ]
    by_cell = {(r.preset, r.seed): r for r in plan}
    for preset in ("digits_faal", "digits_frl_rwrm"):
        for seed in (0, 1):
            run = by_cell[(preset, seed)]
            assert run.source == "digits_pgd_at"
            assert run.run_dir == tmp_path / preset / f"seed{seed}"
            assert run.overrides == (f"seed={seed}", f"init_from={tmp_path / 'digits_pgd_at' / f'seed{seed}'}")
    assert by_cell[("digits_erm", 1)].overrides == ("seed=1",)
    assert by_cell[("digits_erm", 1)].source is None


def test_plan_keeps_init_from_when_the_source_is_not_in_the_sweep(tmp_path):
    plan = plan_sweep(["digits_frl_rw"], [0], tmp_path)
    assert plan[0].source is None and plan[0].overrides == ("seed=0",)
    assert sweep.hot_start_source("digits_frl_rw") == "digits_pgd_at"
    assert sweep.hot_start_source("digits_erm") is None


def test_plan_never_rewrites_an_explicit_init_from(tmp_path):
    plan = plan_sweep(["digits_pgd_at", "digits_frl_rw"], [3], tmp_path, ["init_from=elsewhere/run"])
    frl = [r for r in plan if r.preset == "digits_frl_rw"][0]
    assert frl.source is None
    assert frl.overrides == ("init_from=elsewhere/run", "seed=3")


@pytest.mark.parametrize(
    "presets, seeds, overrides, message",
    [
        ([], [0], [], "at least one preset"),
        (["digits_erm", "digits_erm"], [0], [], "given twice"),
        (["digits_erm"], [], [], "--seeds"),
        (["digits_erm"], [-1], [], ">= 0"),
        (["digits_erm"], [0], ["train.epochs"], "key=value"),
        (["digits_erm"], [0], ["train.epochs=0"], "epochs"),
        (["no_such_preset"], [0], [], "unknown preset"),
    ],
)
def test_plan_rejects_bad_grids(tmp_path, presets, seeds, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_sweep(presets, seeds, tmp_path, overrides)


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,") == [0] and parse_seeds("4,") == [4]
    with pytest.raises(ConfigError, match="for seed 0 alone give a list: --seeds 0,"):
        parse_seeds("0")
    assert parse_seeds("0,2,5") == [0, 2, 5]
    for bad in ("0", "x", "1,1", "-1,2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_failed_source_marks_its_hot_starts_failed_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from robustfair.engine import trainer

    calls = []

    def fake_train(config, run_dir, *, resume=False, quiet=False):
        calls.append((config.name, config.seed, resume))
        if config.name == "digits_pgd_at" and config.seed == 1:
            raise ConfigError("simulated failure")
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "results.json").write_text("{}")

    monkeypatch.setattr(trainer, "train", fake_train)
    outcome = run_sweep(["digits_erm", "digits_pgd_at", "digits_frl_rwrm"], [0, 1], tmp_path, log=_quiet)
    assert calls == [
        ("digits_erm", 0, False),
        ("digits_erm", 1, False),
        ("digits_pgd_at", 0, False),
        ("digits_pgd_at", 1, False),
        ("digits_frl_rwrm", 0, False),
    ]
    assert set(outcome.failed) == {tmp_path / "digits_pgd_at/seed1", tmp_path / "digits_frl_rwrm/seed1"}
    assert "simulated failure" in outcome.failed[tmp_path / "digits_pgd_at/seed1"]
    assert "digits_pgd_at seed 1 did not finish" in outcome.failed[tmp_path / "digits_frl_rwrm/seed1"]
    assert len(outcome.trained) == 4


def test_a_started_run_is_resumed_not_restarted(tmp_path, monkeypatch):
    from robustfair.engine import trainer

    calls = []
    monkeypatch.setattr(
        trainer, "train", lambda config, run_dir, *, resume=False, quiet=False: calls.append((Path(run_dir), resume))
    )
    started = run_dir_for(tmp_path, "digits_erm", 1)
    started.mkdir(parents=True)
    (started / "config.yaml").write_text("name: digits_erm\n")
    outcome = run_sweep(["digits_erm"], [0, 1], tmp_path, log=_quiet)
    assert calls == [(tmp_path / "digits_erm/seed0", False), (started, True)]
    assert outcome.resumed == [started] and outcome.trained == [tmp_path / "digits_erm/seed0"]


# ---------------------------------------------------------------- real tiny runs


def _cell(text: str) -> str:
    return text.replace("**", "").strip()


def _table_rows(text: str, first: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [_cell(c) for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            rows.append(cells)
    return rows


def _expected(values: list[float], digits: int) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sweep")
    first = run_sweep(PRESETS, [0, 1], out, TINY, log=_quiet)
    return out, first


def test_sweep_trains_every_cell_and_chains_frl_onto_the_same_seed(tiny_sweep):
    out, first = tiny_sweep
    assert first.failed == {}
    assert first.trained == [out / p / f"seed{s}" for p in PRESETS for s in (0, 1)]
    for seed in (0, 1):
        for preset in PRESETS:
            run = out / preset / f"seed{seed}"
            results = json.loads((run / "results.json").read_text())
            assert results["run"]["seed"] == seed and results["run"]["epochs"] == 1
        config = yaml.safe_load((out / "digits_frl_rwrm" / f"seed{seed}" / "config.yaml").read_text())
        assert config["init_from"] == str(out / "digits_pgd_at" / f"seed{seed}")
        assert config["data"]["train_per_class"] == 8


def test_sweep_skips_finished_runs_and_resumes_an_interrupted_one(tiny_sweep):
    out, _ = tiny_sweep
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/results.json")}
    again = run_sweep(PRESETS, [0, 1], out, TINY, log=_quiet)
    assert again.trained == [] and again.resumed == [] and again.failed == {}
    assert len(again.skipped) == 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/results.json")} == before

    # An interrupted run: a checkpoint, but no results.json. The sweep resumes it.
    interrupted = out / "digits_pgd_at" / "seed1"
    saved = json.loads((interrupted / "results.json").read_text())
    (interrupted / "results.json").unlink()
    assert (interrupted / "checkpoints" / "last.safetensors").is_file()
    third = run_sweep(PRESETS, [0, 1], out, TINY, log=_quiet)
    assert third.resumed == [interrupted] and third.trained == [] and len(third.skipped) == 3
    redone = json.loads((interrupted / "results.json").read_text())
    assert redone["run"]["seed"] == 1 and redone["run"]["epochs"] == saved["run"]["epochs"]


def test_sweep_table_is_the_mean_and_std_of_the_results_files(tiny_sweep):
    out, _ = tiny_sweep
    text = sweep_table(PRESETS, [0, 1], out)
    for preset in PRESETS:
        results = [json.loads((out / preset / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
        (summary_row,) = [r for r in _table_rows(text, preset) if len(r) == 8]
        assert summary_row[1] == "2"  # runs
        for key, cell in zip(SUMMARY_KEYS, summary_row[2:]):
            assert cell == _expected([r["summary"][key] for r in results], 2), key
        per_class = {r[1]: r[2:] for r in _table_rows(text, preset) if len(r) == 12}
        for kind, key in (("clean", "clean_acc"), ("robust", "robust_acc")):
            for c in range(10):
                assert per_class[kind][c] == _expected([100.0 - r["per_class"][key][c] for r in results], 1)
        (time_row,) = [r for r in _table_rows(text, preset) if len(r) == 5]
        assert time_row[1] == "0, 1"
        assert time_row[2] == _expected([r["run"]["train_time_s"] for r in results], 0)
        walls = [sweep.run_wall_time(out / preset / f"seed{s}") for s in (0, 1)]
        assert all(w > 0 for w in walls)
        assert time_row[3] == _expected(walls, 0) and time_row[4] == f"{sum(walls):.0f}"
    # rows follow the order the presets were given in
    assert text.index("| digits_pgd_at") < text.index("| digits_frl_rwrm")
    # the grid's wall-clock window: first meta.json to last results.json, and the summed run time
    dirs = [out / preset / f"seed{s}" for preset in PRESETS for s in (0, 1)]
    first = min((d / "meta.json").stat().st_mtime for d in dirs)
    last = max((d / "results.json").stat().st_mtime for d in dirs)
    summed = sum(sweep.run_wall_time(d) for d in dirs)
    assert sweep.sweep_window(dirs) == (first, last)
    window_line = text.strip().splitlines()[-1]
    assert window_line.startswith("wall clock of the whole grid: ")
    assert f": {(last - first) / 60:.1f} min;" in window_line and window_line.endswith(f"{summed / 60:.1f} min")
    assert sweep.sweep_window([out / "no_such_run"]) is None
    assert "not finished" not in text
    # runs of the grid without a results.json are named under the tables, not silently dropped
    partial = sweep_table(PRESETS, [0, 1, 2], out)
    assert partial.splitlines()[-1] == "not finished, left out of the tables: " + "; ".join(
        f"{preset} seed 2" for preset in PRESETS
    )


def test_cli_table_only_writes_the_same_table(tiny_sweep, tmp_path, capsys):
    out, _ = tiny_sweep
    table = tmp_path / "table.md"
    status = main(["sweep", *PRESETS, *TINY, "--seeds", "2", "--out", str(out), "--table-only", "--table", str(table)])
    assert status == 0
    assert table.read_text() == sweep_table(PRESETS, [0, 1], out) + "\n"
    assert capsys.readouterr().out.strip() == table.read_text().strip()


def test_cli_reports_a_grid_with_nothing_finished(tmp_path, capsys):
    status = main(["sweep", "digits_erm", "--seeds", "1", "--out", str(tmp_path / "empty"), "--table-only"])
    assert status == 2
    assert "no finished run" in capsys.readouterr().err
