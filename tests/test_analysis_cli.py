"""`analyze`, `compare` and `report` on a real (tiny) run trained by the engine.

The run also shows the engine storing `run_sanity_checks`' record in results.json.
"""

from __future__ import annotations

import json

import pytest
import torch

from robustfair.cli import main
from robustfair.commands.analyze import default_output
from robustfair.engine.config import load_config
from robustfair.engine.trainer import train

TINY = [
    "train.epochs=2",
    "data.train_per_class=20",
    "data.val_per_class=4",
    "data.test_per_class=6",
    "train.batch_size=50",
    "method.steps=3",
    "schedule.milestones=[2]",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test thread setting
    run = tmp_path_factory.mktemp("runs") / "digits_pgd_at"
    train(load_config("digits_pgd_at", TINY), run, quiet=True, progress=False)
    return run


def test_engine_records_the_sanity_checks(run_dir):
    sanity = json.loads((run_dir / "results.json").read_text())["sanity"]
    assert {c["name"] for c in sanity["checks"]} == {
        "robust_not_above_clean",
        "outputs_are_logits",
        "input_gradients_nonzero",
        "more_steps_not_weaker",
        "large_eps_near_zero",
    }
    assert all(isinstance(c["passed"], bool) and c["message"] for c in sanity["checks"])
    assert sanity["num_samples"] == 60 and sanity["passed"] == all(c["passed"] for c in sanity["checks"])


def test_analyze_writes_analysis_json_and_prints_the_table(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--steps", "40", "--target-steps", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert (
        "| class | n | mean steps | steps if flipped | never flipped % | clean acc % | robust acc % | misclassified |"
        in out
    )
    assert "mean steps to misclassify" in out and f"wrote {run_dir / 'analysis.json'}" in out
    record = json.loads((run_dir / "analysis.json").read_text())
    assert record["num_samples"] == 60 and len(record["classes"]) == 10
    assert record["source"]["attack"]["steps"] == 40
    assert record["source"]["attack"]["step_size"] == pytest.approx(0.1 / 20)  # eps / 20, BAT's 0.4/255 at 8/255
    assert record["target"]["attack"]["step_size"] == pytest.approx(0.1 / 4)
    assert len(record["target"]["confusion_by_step"]) == 4
    assert sum(record["per_class"]["count"]) == 60
    assert record["run"]["which"] == "last" and record["run"]["method"] == "pgd_at"
    flips = record["source"]["flip_step"]
    assert len(flips) == 60 and all(-1 <= f <= 40 for f in flips)


def test_compare_and_report_on_the_run(run_dir, tmp_path, capsys):
    assert main(["compare", str(run_dir), "--which", "best"]) == 0
    assert "| digits_pgd_at |" in capsys.readouterr().out
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("<img ") >= 4 and "Sanity checks" in text


def test_bad_options_are_one_line_errors(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--steps", "0"]) == 2
    assert "--steps: 0 must be >= 1" in capsys.readouterr().err
    assert main(["analyze", str(run_dir / "nothing")]) == 2


def test_default_output_paths(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    best = run / "checkpoints" / "best.safetensors"
    assert default_output(run, best, "best") == run / "analysis_best.json"
    assert default_output(best, best, "last") == run / "analysis_best.json"
    assert (
        default_output(run / "checkpoints" / "last.safetensors", run / "checkpoints" / "last.safetensors", "last")
        == run / "analysis.json"
    )
    loose = tmp_path / "model.safetensors"
    assert default_output(loose, loose, "last") == tmp_path / "model.analysis.json"
