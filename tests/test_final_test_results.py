"""final_test_results evaluates the selected ("best") model again only when its weights differ
from the last model's: when the selected epoch is the last one, the last model's numbers are
reused (the same weights under the same seeded attack give the same numbers)."""

from __future__ import annotations

import torch
from torch import nn

from robustfair.engine.checkpoint import save_checkpoint
from robustfair.engine.run_evaluation import final_test_results


class Scored:
    def __init__(self, value: float):
        self.value = value

    def to_dict(self) -> dict:
        return {"summary": {"avg_rob_err": self.value}, "per_class": [{"rob": self.value}]}


def run(tmp_path, model: nn.Module, best_state: dict) -> tuple[dict, list[float]]:
    calls: list[float] = []

    def evaluate(core: nn.Module, attack: str) -> Scored:
        first = float(next(core.parameters()).detach().flatten()[0])
        calls.append(first)
        return Scored(first)

    checkpoint = save_checkpoint(tmp_path / "best.safetensors", {"model": best_state, "epoch": 3})
    results = final_test_results(
        model,
        (),
        attack="pgd20",
        extra_attacks=(),
        evaluate=evaluate,
        best_checkpoint=checkpoint,
        best_epoch=3,
        averaged_state=None,
        averaged_label="",
        device=torch.device("cpu"),
        sanity=None,
    )
    return results, calls


def test_best_equal_to_last_is_not_evaluated_twice(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    same = {k: v.clone() for k, v in model.state_dict().items()}
    results, calls = run(tmp_path, model, same)
    assert len(calls) == 1
    assert results["best"]["summary"] == results["summary"]
    assert results["best"]["epoch"] == 3 and "selected_by" in results["best"]
    assert "model_selection" not in results["best"]
    results["best"]["per_class"][0]["rob"] = -1.0  # a copy, not the last model's dict
    assert results["per_class"][0]["rob"] != -1.0


def test_best_with_other_weights_is_evaluated_on_its_own_weights(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    other = {k: v.clone() + 1.0 for k, v in model.state_dict().items()}
    last_first = float(model.weight.flatten()[0])
    results, calls = run(tmp_path, model, other)
    assert len(calls) == 2
    assert results["summary"]["avg_rob_err"] == last_first
    assert abs(results["best"]["summary"]["avg_rob_err"] - (last_first + 1.0)) < 1e-6
    assert float(model.weight.flatten()[0]) == last_first  # the last weights are put back
