"""Comparison tables, run loading, figures and the HTML report, on synthetic run directories.

The helpers at the top (also used by test_report_html.py) write synthetic run directories
without training. Each run holds what the engine writes: config.yaml, meta.json, metrics.jsonl (with
validation records and FRL-like per-class method state), results.json built by the real
`classwise_result(...).to_dict()` (with best, extra_attacks, sanity) and optionally an
analysis.json from the real `fairness_analysis` on a tiny linear model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from robustfair.metrics import classwise_result
from robustfair.metrics.analysis import fairness_analysis

CLASSES = ["cat", "dog", "bird"]


def make_result(
    y: Sequence[int], clean: Sequence[int], adv: Sequence[int], attack: str = "pgd20", classes: Sequence[str] = CLASSES
) -> dict[str, Any]:
    return classwise_result(
        list(y),
        list(clean),
        list(adv),
        num_classes=len(classes),
        classes=list(classes),
        dataset="toy",
        attack={"name": attack, "eps": 0.1, "steps": 20},
    ).to_dict()


def make_run(
    root: Path,
    name: str,
    *,
    seed: int = 0,
    method: str = "pgd_at",
    lr: float = 0.1,
    y: Sequence[int] = (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2),
    clean: Sequence[int] = (0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 0),
    adv: Sequence[int] = (0, 1, 1, 1, 1, 1, 0, 0, 2, 0, 0, 0),
    analysis: bool = False,
    folder: str | None = None,
    extra: bool = False,
    classes: Sequence[str] = CLASSES,
    sanity: str = "fail",
) -> Path:
    """sanity: "fail" (a failed large-eps check), "pass" (every check passed) or "none" (no record)."""
    run = root / (folder or f"{name}_s{seed}")
    run.mkdir(parents=True)
    config = {
        "name": name,
        "seed": seed,
        "data": {"name": "toy"},
        "model": {"name": "mlp"},
        "method": {"name": method, "eps": 0.1},
        "optim": {"lr": lr},
        "train": {"epochs": 3},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "meta.json").write_text(json.dumps({"robustfair": "test"}))
    records = []
    for epoch in range(1, 4):
        records.append(
            {
                "epoch": epoch,
                "lr": lr,
                "loss": 2.0 / epoch,
                "images_per_s": 100.0,
                "method": {"l0": [0.1 * epoch, 0.2, 0.0], "w0": [1.0, 1.0 + 0.1 * epoch, 1.0], "a1": 0.5 * epoch},
                "val": {
                    "summary": {
                        "avg_std_err": 30.0 / epoch,
                        "worst_std_err": 50.0 / epoch,
                        "avg_bndy_err": 20.0,
                        "worst_bndy_err": 30.0,
                        "avg_rob_err": 60.0 / epoch,
                        "worst_rob_err": 80.0 / epoch,
                    },
                    "clean_acc": [70.0, 80.0, 60.0 + epoch],
                    "robust_acc": [30.0, 40.0, 20.0 + epoch],
                },
            }
        )
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results = make_result(y, clean, adv, classes=classes)
    results["best"] = {**make_result(y, clean, adv, classes=classes), "epoch": 2}
    if extra:
        results["extra_attacks"] = {
            "autoattack": make_result(y, clean, [0] * len(y), attack="autoattack", classes=classes)
        }
    if sanity != "none":
        results["sanity"] = {
            "passed": sanity == "pass",
            "checks": [
                {"name": "robust_not_above_clean", "passed": True, "measured": {}, "message": "ok"},
                {
                    "name": "large_eps_near_zero",
                    "passed": sanity == "pass",
                    "measured": {"accuracy": 40.0},
                    "message": "40.0% accuracy at eps 1",
                },
            ],
        }
    results["run"] = {"name": name, "method": method, "model": "mlp", "epochs": 3, "seed": seed, "train_time_s": 12.5}
    (run / "results.json").write_text(json.dumps(results))
    if analysis:
        (run / "analysis.json").write_text(json.dumps(linear_analysis()))
    return run


def linear_analysis() -> dict[str, Any]:
    """A real analysis record: the 3-class linear model of tests/test_analysis.py."""
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]]))
        model.bias.copy_(torch.tensor([0.0, -1.0, -0.5]))
    x = torch.tensor(
        [(0.305, 0.1), (0.1, 0.395), (0.1, 0.1), (0.6, 0.1), (0.605, 0.1), (0.8, 0.45), (0.1, 0.85), (0.45, 0.6)]
    )
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    return fairness_analysis(
        model,
        [(x, y)],
        num_classes=3,
        classes=CLASSES,
        eps=0.3,
        steps=50,
        step_size=0.01,
        target_steps=25,
        target_step_size=0.01,
        dataset_name="toy",
    )


# ---- tests ------------------------------------------------------------------------------------

import base64  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from robustfair.cli import main  # noqa: E402
from robustfair.errors import ConfigError, DataError  # noqa: E402
from robustfair.report import plots  # noqa: E402
from robustfair.report.compare import (  # noqa: E402
    comparison_notes,
    comparison_text,
    config_key,
    group_runs,
    per_class_rows,
    summary_rows,
)
from robustfair.report.html import render_report  # noqa: E402
from robustfair.report.runs import expand_run_paths, load_run, load_runs, read_metrics  # noqa: E402
from robustfair.report.tables import Number, format_table, mean_std  # noqa: E402

# Seed 1 of "pgd": robust on 2, 3, 2 of the 4 samples per class (seed 0: 1, 2, 1).
ADV_SEED1 = (0, 0, 1, 1, 1, 1, 1, 0, 2, 2, 0, 0)


@pytest.fixture
def three_runs(tmp_path):
    make_run(tmp_path, "pgd", seed=0, analysis=True, extra=True)
    make_run(tmp_path, "pgd", seed=1, adv=ADV_SEED1)
    make_run(tmp_path, "trades", seed=0, method="trades")
    return tmp_path


@pytest.fixture
def ranked_runs(tmp_path):
    """three_runs whose sanity checks all passed: their rows compete for bold."""
    make_run(tmp_path, "pgd", seed=0, analysis=True, extra=True, sanity="pass")
    make_run(tmp_path, "pgd", seed=1, adv=ADV_SEED1, sanity="pass")
    make_run(tmp_path, "trades", seed=0, method="trades", sanity="pass")
    return tmp_path


def test_summary_of_one_run_matches_hand_computed_errors(three_runs):
    run = load_run(three_runs / "pgd_s0")
    s = run.result()["summary"]
    # Class errors (clean, robust): cat (25, 75), dog (0, 50), bird (25, 75); 12 samples.
    assert s["avg_std_err"] == pytest.approx(100 * 2 / 12) and s["worst_std_err"] == pytest.approx(25)
    assert s["avg_rob_err"] == pytest.approx(100 * 8 / 12) and s["worst_rob_err"] == pytest.approx(75)
    assert s["avg_bndy_err"] == pytest.approx(50) and s["worst_bndy_err"] == pytest.approx(50)


def test_runs_differing_only_in_seed_are_grouped_with_mean_and_std(ranked_runs):
    runs = load_runs([str(ranked_runs / "*")])
    groups = group_runs(runs)
    assert [(g.label, len(g.runs)) for g in groups] == [("pgd", 2), ("trades", 1)]
    assert groups[0].seeds == [0, 1]
    header, rows = summary_rows(groups)
    assert header[:2] == ["run", "runs"] and len(header) == 8
    pgd = dict(zip(header, rows[0]))
    # avg robust error: seed 0 8/12, seed 1 5/12 -> mean 54.17, sample std 25 / sqrt(2).
    assert pgd["Avg. Rob."].value == pytest.approx(100 * 6.5 / 12)
    assert pgd["Avg. Rob."].std == pytest.approx(25 / math.sqrt(2))
    assert pgd["Worst Rob."].value == pytest.approx(62.5) and pgd["Worst Rob."].n == 2
    assert pgd["Avg. Std."].std == pytest.approx(0.0)
    trades = dict(zip(header, rows[1]))
    assert trades["runs"] == "1" and trades["Avg. Rob."].std is None
    assert pgd["Avg. Rob."].bold and not trades["Avg. Rob."].bold  # 54.2 vs 66.7
    ungrouped = group_runs(runs, group=False)
    assert [g.label for g in ungrouped] == ["pgd@pgd_s0", "pgd@pgd_s1", "trades"]


def test_ignored_keys_decide_the_grouping(tmp_path):
    make_run(tmp_path, "pgd", seed=0, lr=0.1)
    make_run(tmp_path, "pgd", seed=1, lr=0.05)
    runs = load_runs([str(tmp_path / "*")])
    assert len(group_runs(runs)) == 2
    assert len(group_runs(runs, ignored=("seed", "name", "optim.lr"))) == 1
    assert config_key({"seed": 1, "optim": {"lr": 1}}, ("seed", "optim.lr")) == config_key({"optim": {}}, ())


def test_per_class_rows_are_mean_errors_per_class(three_runs):
    groups = group_runs(load_runs([str(three_runs / "*")]))
    header, rows = per_class_rows(groups)
    assert header == ["run", "error", "cat", "dog", "bird"]
    assert [r[:2] for r in rows] == [["pgd", "clean"], ["pgd", "robust"], ["trades", "clean"], ["trades", "robust"]]
    assert [c.value for c in rows[0][2:]] == pytest.approx([25.0, 0.0, 25.0])
    # robust error, seed 0 (75, 50, 75) and seed 1 (50, 25, 50)
    assert [c.value for c in rows[1][2:]] == pytest.approx([62.5, 37.5, 62.5])


def test_formats_markdown_csv_latex(ranked_runs):
    groups = group_runs(load_runs([str(ranked_runs / "*")]))
    markdown = comparison_text(groups, fmt="markdown")
    assert "| pgd | 2 | **16.67 ± 0.00** | **25.00 ± 0.00** | **37.50 ± 17.68** |" in markdown
    assert "| trades | 1 | **16.67** | **25.00** | 50.00 | 50.00 | 66.67 | 75.00 |" in markdown  # ties: both bold
    assert "| pgd | robust | 62.5 ± 17.7 | 37.5 ± 17.7 | 62.5 ± 17.7 |" in markdown
    csv_text = comparison_text(groups, fmt="csv", per_class=False)
    lines = csv_text.splitlines()
    assert lines[0].startswith("run,runs,Avg. Std.,Avg. Std. std,")
    values = lines[1].split(",")
    assert values[0] == "pgd" and float(values[values.index("pgd") + 2]) == pytest.approx(100 * 2 / 12)
    assert "**" not in csv_text and "±" not in csv_text
    latex = comparison_text(groups, fmt="latex", per_class=False)
    assert r"\begin{tabular}{llrrrrrr}" in latex and r"\textbf{$54.17 \pm 17.68$}" in latex
    assert latex.rstrip().endswith(r"\end{tabular}")
    with pytest.raises(ConfigError, match="format"):
        format_table(["a"], [["x"]], "xlsx")


def test_format_table_escapes_and_marks_missing():
    rows = [["a_b & c|d", Number(None)], ["x", Number(1.0, bold=True)]]
    assert r"a\_b \& c|d & -- \\" in format_table(["name", "v"], rows, "latex")
    assert r"| a_b & c\|d | - |" in format_table(["name", "v"], rows, "markdown")
    html = format_table(["name", "v"], [["<script>", Number(2.5)]], "html")
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert mean_std([1.0, None, 3.0]) == Number(2.0, math.sqrt(2.0), 2)
    assert mean_std([None]).missing


def test_result_selection_best_and_extra_attacks(three_runs):
    run = load_run(three_runs / "pgd_s0")
    assert run.result("best")["epoch"] == 2
    assert run.result(attack="autoattack")["attack"]["name"] == "autoattack"
    assert run.result(attack="pgd20") is run.results
    assert run.available_attacks() == ["pgd20", "autoattack"]
    with pytest.raises(DataError, match="available: pgd20, autoattack"):
        run.result(attack="cw20")
    with pytest.raises(DataError, match="pgd20"):
        run.result("best", attack="autoattack")
    header, rows = summary_rows(group_runs([run]), attack="autoattack")
    assert dict(zip(header, rows[0]))["Avg. Rob."].value == pytest.approx(100 * 9 / 12)


def test_loading_errors_and_globs(tmp_path):
    make_run(tmp_path, "pgd")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("name: x\n")
    assert [p.name for p in expand_run_paths([str(tmp_path / "*")])] == ["pgd_s0"]  # unfinished skipped
    with pytest.raises(DataError, match="training has not finished"):
        load_run(tmp_path / "unfinished")
    with pytest.raises(DataError, match="matches no finished run"):
        expand_run_paths([str(tmp_path / "nothing*")])
    with pytest.raises(DataError, match="not a run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "pgd_s0" / "metrics.jsonl").open("a").write('{"epoch": 4, "lo')  # killed mid-write
    assert [r["epoch"] for r in read_metrics(tmp_path / "pgd_s0" / "metrics.jsonl")] == [1, 2, 3]


def test_notes_flag_runs_evaluated_differently(tmp_path):
    make_run(tmp_path, "pgd")
    make_run(tmp_path, "small", y=(0, 1, 2), clean=(0, 1, 2), adv=(0, 1, 0))
    notes = comparison_notes(group_runs(load_runs([str(tmp_path / "*")])))
    assert len(notes) == 1 and "samples" in notes[0] and "12: pgd" in notes[0] and "3: small" in notes[0]


def test_compare_command(three_runs, capsys):
    assert main(["compare", str(three_runs / "*"), "--format", "csv", "--no-per-class"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("run,runs,") and len(out.splitlines()) == 3
    target = three_runs / "table.tex"
    assert (
        main(
            [
                "compare",
                str(three_runs / "pgd_s0"),
                str(three_runs / "trades_s0"),
                "--format",
                "latex",
                "--which",
                "best",
                "--out",
                str(target),
            ]
        )
        == 0
    )
    assert r"\toprule" in target.read_text()
    assert main(["compare", str(three_runs / "nope")]) == 2
    assert "robustfair: error:" in capsys.readouterr().err


def _png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_figures_render_to_png():
    analysis = linear_analysis()
    metrics = [
        {
            "epoch": 1,
            "lr": 0.1,
            "loss": 1.0,
            "method": {"l0": [0.1, 0.2, 0.3], "a1": 0.5},
            "val": {"summary": {"avg_rob_err": 50.0}, "robust_acc": [40.0, 50.0, 60.0]},
        }
    ]
    figures = [
        plots.per_class_error_figure(["a", "b"], CLASSES, [[1, 2, 3], [2, 3, None]], [[10, 20, 30], [5, 5, 5]]),
        plots.confusion_figure([[3, 1, 0], [0, 0, 0], [1, 1, 2]], CLASSES, title="t"),
        plots.steps_to_flip_figure(analysis),
        plots.target_figure(analysis),
        plots.training_figure(metrics, CLASSES),
        plots.method_state_figure(metrics, CLASSES),
    ]
    for fig in figures:
        width, height = _png_size(plots.figure_png(fig))
        assert width > 200 and height > 150
    assert plots.training_figure([]) is None
    assert plots.method_state_figure([{"epoch": 1, "loss": 1.0}]) is None


def test_class_tick_labels_are_cut_but_never_made_ambiguous():
    names = ["American alligator", "American black bear", "automobile", "cat"]
    fig = plots.confusion_figure([[1.0] * 4] * 4, names)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    # cut at 8, both would read "America."; the width grows until they differ
    assert ticks == ["American a.", "American b.", "automobile", "cat"]
    assert plots._short(["automobile", "truck"], 8) == ["automob.", "truck"]
    assert plots._short(["ab_1", "ab_2"], 3) == ["ab_1", "ab_2"]  # no cut keeps them apart: the full names


def test_html_report_is_self_contained_with_tables_and_images(three_runs):
    runs = load_runs([str(three_runs / "*")])
    runs[2].label = "<trades>"  # names are escaped
    text = render_report(runs)
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', text)
    # bars + per run (2 confusion + training + method state) x 3 + analysis (2) for pgd_s0
    assert len(images) == 1 + 3 * 4 + 2
    for data in images:
        assert _png_size(base64.b64decode(data))[0] > 200
    assert "http://" not in text and "https://" not in text and "<script" not in text.lower()
    assert "&lt;trades&gt;" in text and "<trades>" not in text
    for caption in (
        "last model, pgd20 (eps 0.1, 20 steps)",
        "best-on-validation model",
        "last model under autoattack",
        "error % per class, last model",
        "correlation with class-wise robust accuracy",
        "per class",
    ):
        assert f"<caption>{caption}" in text
    assert text.count('<td class="fail">FAIL</td>') == 3  # every run's failed large-eps check
    assert "warning: pgd@pgd_s0: large_eps_near_zero: 40.0% accuracy at eps 1" in text
