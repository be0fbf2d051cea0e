"""Evaluation a researcher can reproduce and trust: seeded and repeatable, the threat model kept,
the [0, 1] input contract enforced, a shareable leaderboard entry, progress on long phases.

Most tests share one small run trained by the engine (ERM on 8x8 digits, a few seconds),
whose PGD-20 result depends on the random start (another seed changes it), so equality is
a real test of the seeding.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from robustfair.attacks import budget, make_attack
from robustfair.cli import main
from robustfair.data.input_range import InputRangeError, RangeWatch
from robustfair.engine import progress
from robustfair.engine.config import TrainConfig, load_config, resolve_method_config
from robustfair.engine.run_evaluation import eval_attack_overrides, run_attack_budget
from robustfair.engine.trainer import train
from robustfair.errors import RobustfairError
from robustfair.metrics import evaluate_classwise
from robustfair.metrics.leaderboard import SCHEMA

TINY = [
    "train.epochs=4",
    "data.train_per_class=40",
    "data.val_per_class=4",
    "data.test_per_class=10",
    "train.batch_size=20",
    "schedule.milestones=[4]",
    "train.eval_batch_size=32",
    "optim.lr=0.1",
]
CLASSWISE = ("classes", "num_samples", "per_class", "summary", "confusion", "attack")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test thread setting
    run = tmp_path_factory.mktemp("runs") / "digits_erm"
    train(load_config("digits_erm", TINY), run, quiet=True, progress=False)
    return run


def eval_json(run_dir, path, *args) -> dict:
    assert main(["eval", str(run_dir), "--device", "cpu", "--quiet", "--json", str(path), *args]) == 0
    return json.loads(path.read_text())


def without_timing(text: str) -> str:
    return re.sub(r'"seconds": [0-9.eE+-]+', '"seconds": T', text)


# ---- reproducible --------------------------------------------------------------------------


def test_eval_with_defaults_equals_the_runs_results_json(run_dir, tmp_path, capsys):
    results = json.loads((run_dir / "results.json").read_text())
    assert results["attack"]["seed"] == 0 and results["run"]["eval_seed"] == 0
    out = eval_json(run_dir, tmp_path / "last.json")
    for key in CLASSWISE:
        assert out[key] == results[key], key
    assert {k: v for k, v in out["sanity"].items() if k != "seconds"} == {
        k: v for k, v in results["sanity"].items() if k != "seconds"
    }
    assert 0 < results["summary"]["avg_bndy_err"]  # the attack moves predictions: the seed matters here
    best = eval_json(run_dir, tmp_path / "best.json", "--which", "best", "--no-sanity")
    for key in CLASSWISE:
        assert best[key] == results["best"][key], key
    printed = capsys.readouterr().out
    assert "attack pgd20: linf eps 0.1 (the run's linf eps 0.1), step 0.025, 20 steps" in printed
    assert "seed 0 (robustfair " in printed


def test_two_evals_with_one_seed_are_byte_identical_apart_from_timing(run_dir, tmp_path):
    first = eval_json(run_dir, tmp_path / "a.json", "--seed", "3")
    eval_json(run_dir, tmp_path / "b.json", "--seed", "3")
    a, b = (tmp_path / "a.json").read_text(), (tmp_path / "b.json").read_text()
    assert a != b or first["seconds"] == json.loads(b)["seconds"]  # only the timing may differ ...
    assert without_timing(a) == without_timing(b)  # ... byte for byte
    assert (tmp_path / "a.leaderboard.json").read_bytes() == (tmp_path / "b.leaderboard.json").read_bytes()
    assert first["attack"]["seed"] == 3 and first["evaluation"]["seed"] == 3 and first["sanity"]["seed"] == 3
    default = json.loads((run_dir / "results.json").read_text())
    assert first["confusion"]["adversarial"] != default["confusion"]["adversarial"]  # another seed, other starts


def test_a_test_subset_is_drawn_with_the_seed(run_dir, tmp_path):
    one = eval_json(run_dir, tmp_path / "one.json", "--test-per-class", "3", "--seed", "1", "--no-sanity")
    two = eval_json(run_dir, tmp_path / "two.json", "--test-per-class", "3", "--seed", "2", "--no-sanity")
    again = eval_json(run_dir, tmp_path / "again.json", "--test-per-class", "3", "--seed", "1", "--no-sanity")
    assert one["num_samples"] == 30 and one["evaluation"]["subset_seed"] == 1
    assert one["confusion"] == again["confusion"]
    assert two["evaluation"]["subset_seed"] == 2


def test_evaluate_classwise_restores_the_callers_random_stream():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = evaluate_classwise(model, [(x, y)], attack="pgd20", eps=0.3, num_classes=3, seed=7)
    assert torch.equal(torch.rand(3), expected)
    assert first == evaluate_classwise(model, [(x, y)], attack="pgd20", eps=0.3, num_classes=3, seed=7)
    assert first.attack["seed"] == 7 and first.attack["step_size"] == pytest.approx(0.075)


# ---- the threat model -----------------------------------------------------------------------


def test_run_budget_applies_the_runs_eps_only_to_attacks_of_its_norm():
    assert eval_attack_overrides("pgd20", 0.3) == {"eps": 0.3, "step_size": 0.075}
    assert eval_attack_overrides("cw20", 0.3) == {"eps": 0.3, "step_size": 0.075}
    assert eval_attack_overrides("pgd20_trades", 0.3) == {"eps": 0.3}  # keeps the repository's 0.003
    assert eval_attack_overrides("autoattack", 0.3) == {"eps": 0.3}
    overrides, note = run_attack_budget("pgd20_l2", 0.3, "linf")
    assert overrides == {} and "does not apply" in note and "l2 eps 0.5" in note
    assert eval_attack_overrides("autoattack_l2", 0.3) == {}
    assert make_attack("pgd20_l2").spec["eps"] == 0.5  # eps 8/255 would be an L2 radius of 0.031
    assert budget("pgd20_l2", eps=1.0) == {"eps": 1.0, "step_size": 2.5 * 1.0 / 20}
    assert budget("pgd20", eps=0.3, step_size=0.01) == {"eps": 0.3, "step_size": 0.01}


def test_pgd20_l2_keeps_its_radius_and_eps_changes_it(run_dir, tmp_path, capsys):
    kept = eval_json(run_dir, tmp_path / "l2.json", "--attack", "pgd20_l2")
    assert (kept["attack"]["norm"], kept["attack"]["eps"], kept["attack"]["step_size"]) == ("l2", 0.5, 0.0625)
    assert "does not apply" in kept["attack"]["eps_from"]
    assert (kept["sanity"]["norm"], kept["sanity"]["eps"]) == ("l2", 0.5)  # checked in the evaluated norm
    large = {c["name"]: c for c in kept["sanity"]["checks"]}["large_eps_near_zero"]["measured"]
    assert large["norm"] == "l2" and large["eps"] == pytest.approx(8.0)  # sqrt(64 pixels)
    assert "the run's linf eps 0.1 does not apply, so it keeps its preset's l2 eps 0.5" in capsys.readouterr().out
    moved = eval_json(run_dir, tmp_path / "l2b.json", "--attack", "pgd20_l2", "--eps", "1.0", "--no-sanity")
    assert (moved["attack"]["eps"], moved["attack"]["step_size"]) == (1.0, 0.125)
    stepped = eval_json(
        run_dir, tmp_path / "l2c.json", "--attack", "pgd20_l2", "--eps", "1.0", "--step-size", "0.2", "--no-sanity"
    )
    assert stepped["attack"]["step_size"] == 0.2
    assert kept["summary"]["avg_rob_err"] <= moved["summary"]["avg_rob_err"]  # a larger ball is no weaker


def test_results_json_records_the_full_threat_model(run_dir):
    attack = json.loads((run_dir / "results.json").read_text())["attack"]
    for key in ("norm", "eps", "step_size", "steps", "restarts", "seed", "implementation", "eps_from"):
        assert attack[key] is not None, key


# ---- the input contract ---------------------------------------------------------------------


def linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and isinstance(err, RobustfairError)
    return text


@pytest.mark.parametrize(
    "low, high, advice", [(-2.0, 2.0, "robustfair.models.Normalize(mean, std)"), (0.0, 255.0, "divide by 255")]
)
def test_a_loader_outside_unit_range_fails_with_one_line(low, high, advice):
    g = torch.Generator().manual_seed(0)
    batches = [(low + (high - low) * torch.rand(8, 3, 2, 2, generator=g), torch.arange(8) % 3) for _ in range(3)]
    with pytest.raises(InputRangeError) as err:
        evaluate_classwise(linear_model(), batches, attack="pgd20", eps=0.1, num_classes=3)
    text = one_line(err.value)
    assert "batch 1" in text and advice in text and "robustfair.models.Normalize" in text


def test_uint8_is_converted_and_a_late_bad_batch_is_caught_at_the_end():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 2, 2), dtype=torch.uint8, generator=g)
    result = evaluate_classwise(linear_model(), [(images, torch.arange(8) % 3)], attack=None, num_classes=3)
    assert result.num_samples == 8
    good = [(torch.rand(8, 3, 2, 2, generator=g), torch.arange(8) % 3) for _ in range(3)]
    bad = good + [(good[0][0] * 255, good[0][1])]
    with pytest.raises(InputRangeError, match="a batch after batch 2"):
        evaluate_classwise(linear_model(), bad, attack=None, num_classes=3)
    features = [(torch.randn(8, 12), torch.arange(8) % 3)]  # standardised tabular data: opt out
    assert evaluate_classwise(linear_model(), features, attack=None, num_classes=3, input_range=False).num_samples == 8


def test_the_range_watch_syncs_only_for_its_first_batches(monkeypatch):
    synced = []
    original = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: synced.append(1) or original(self))
    watch = RangeWatch("data", eager=2)
    for _ in range(10):
        watch.batch(torch.rand(4, 3))
    assert len(synced) == 2
    watch.finish()
    assert len(synced) == 3  # one read for the eight later batches together


def test_the_eval_command_prints_the_one_line_error(run_dir, monkeypatch, capsys):
    import robustfair.engine.run_data as run_data

    real = run_data.eval_batches

    def normalised_in_the_loader(dataset, batch_size, device, *args):
        return [((x - 0.5) / 0.25, y) for x, y in real(dataset, batch_size, device, *args)]

    monkeypatch.setattr(run_data, "eval_batches", normalised_in_the_loader)
    assert main(["eval", str(run_dir), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustfair: error: evaluation data")
    assert "found values in [-2" in err[0] and "robustfair.models.Normalize(mean, std)" in err[0]


def test_training_checks_its_first_batch_of_each_epoch():
    from robustfair.engine.epoch_loop import run_epoch
    from robustfair.methods import METHODS

    model = linear_model()
    method = METHODS["erm"](resolve_method_config({"name": "erm"}), num_classes=3)
    loader = [(torch.rand(4, 3, 2, 2) * 255, torch.arange(4) % 3)]
    with pytest.raises(InputRangeError, match=r"training data, epoch 1: .*divide by 255"):
        run_epoch(
            model=model,
            parameters=model.parameters(),
            method=method,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loader=loader,
            cfg=TrainConfig(),
            device=torch.device("cpu"),
            epoch=0,
            world_size=1,
            show_progress=False,
        )


def test_a_dataset_outside_unit_range_names_the_fix():
    from robustfair.data.dataset import ArrayDataset, validate_dataset

    data = ArrayDataset(np.full((4, 1, 2, 2), 200.0, dtype=np.float32), np.arange(4) % 2, ["a", "b"], name="toy")
    with pytest.raises(InputRangeError, match=r"found range \[200, 200\]; they look like \[0, 255\] pixels"):
        validate_dataset(data)


# ---- the shareable result -------------------------------------------------------------------


def test_json_writes_a_leaderboard_entry(run_dir, tmp_path, capsys):
    out = eval_json(run_dir, tmp_path / "r.json", "--no-sanity")
    entry = json.loads((tmp_path / "r.leaderboard.json").read_text())
    assert entry["schema"] == SCHEMA
    assert set(entry) == {
        "schema",
        "model",
        "dataset",
        "threat_model",
        "units",
        "clean_accuracy",
        "robust_accuracy",
        "worst_class_clean_accuracy",
        "worst_class_robust_accuracy",
        "per_class",
        "attack",
        "evaluation",
        "code",
    }
    assert entry["model"]["name"] == "small_cnn" and entry["model"]["method"] == "erm"
    assert entry["dataset"]["num_samples"] == 100 and len(entry["dataset"]["classes"]) == 10
    assert entry["threat_model"] == {"norm": "linf", "eps": 0.1, "eps_from": "the run's linf eps 0.1"}
    assert entry["clean_accuracy"] == pytest.approx(100 - out["summary"]["avg_std_err"])
    assert entry["robust_accuracy"] == pytest.approx(100 - out["summary"]["avg_rob_err"])
    assert entry["worst_class_robust_accuracy"] == pytest.approx(100 - out["summary"]["worst_rob_err"])
    assert entry["per_class"]["robust_accuracy"] == out["per_class"]["robust_acc"]
    assert entry["code"]["robustfair"] and entry["code"]["attack_implementation"].startswith("robustfair")
    assert f"wrote {tmp_path / 'r.json'} and {tmp_path / 'r.leaderboard.json'}" in capsys.readouterr().out


# ---- progress -------------------------------------------------------------------------------


def test_progress_is_drawn_when_asked_and_quiet_otherwise(capsys):
    model, x, y = linear_model(), torch.rand(8, 12), torch.arange(8) % 3
    evaluate_classwise(model, [(x, y)] * 3, attack="pgd10", eps=0.1, num_classes=3)
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
    evaluate_classwise(model, [(x, y)] * 3, attack="pgd10", eps=0.1, num_classes=3, progress=True)
    drawn = capsys.readouterr().err
    assert "eval pgd10" in drawn and "3/3" in drawn
    progress.set_quiet(True)
    try:
        evaluate_classwise(model, [(x, y)] * 3, attack="pgd10", eps=0.1, num_classes=3, progress=True)
        assert capsys.readouterr().err == ""
    finally:
        progress.set_quiet(False)


def test_progress_iter_counts_skipped_items(capsys):
    seen = []
    for item in progress.progress_iter(range(4), "sweep", unit="run", enabled=True):
        if item % 2:
            continue
        seen.append(item)
    assert seen == [0, 2] and "4/4" in capsys.readouterr().err


def test_eval_prints_the_component_table_and_the_sanity_thresholds(capsys):
    from robustfair.commands.eval import print_result
    from robustfair.metrics import classwise_result

    result = classwise_result(
        [0, 0, 1, 1],
        [0, 1, 1, 1],
        [0, 1, 0, 1],
        num_classes=2,
        attack={
            "name": "autoattack",
            "eps": 0.1,
            "norm": "linf",
            "version": "standard",
            "components": ["apgd-ce", "square"],
            "seed": 0,
            "implementation": "pyautoattack 0.2.0",
        },
    ).to_dict()
    result["broken_by"] = {"misclassified_clean": [1, 0], "apgd-ce": [0, 1], "square": [0, 0], "robust": [1, 1]}
    result["sanity"] = {
        "passed": True,
        "norm": "linf",
        "eps": 0.1,
        "num_samples": 4,
        "seed": 0,
        "checks": [
            {"name": "large_eps_near_zero", "passed": True, "threshold": "at most 0 of 4", "message": "0 of 4 correct"}
        ],
    }
    print_result(result, title="t")
    out = capsys.readouterr().out
    assert "| class | n | clean wrong | APGD-CE | Square | robust |" in out
    assert "| 0 | 2 | 1 | 0 | 0 | 1 |" in out and "| all | 4 | 1 | 1 | 0 | 2 |" in out
    assert "| large_eps_near_zero | yes | at most 0 of 4 | 0 of 4 correct |" in out
    assert "attack autoattack: linf eps 0.1, AutoAttack standard: apgd-ce, square, seed 0 (pyautoattack 0.2.0)" in out


def test_extra_attacks_on_a_class_balanced_subset_are_reproduced_by_eval(tmp_path):
    """eval.extra_attacks_per_class: an expensive extra attack on n images per class, drawn with
    eval.seed; `eval RUN --attack A --test-per-class n` repeats it exactly."""
    torch.set_num_threads(1)
    run = tmp_path / "run"
    overrides = [*TINY, "data.test_per_class=null", "eval.extra_attacks=[pgd10]", "eval.extra_attacks_per_class=3"]
    results = train(load_config("digits_erm", overrides), run, quiet=True, progress=False)
    extra = results["extra_attacks"]["pgd10"]
    assert extra["per_class"]["count"] == [3] * 10
    assert sum(results["per_class"]["count"]) == 450  # the main attack keeps the whole test split
    out = eval_json(run, tmp_path / "extra.json", "--attack", "pgd10", "--test-per-class", "3", "--no-sanity")
    for key in ("per_class", "summary", "confusion"):
        assert out[key] == extra[key], key
