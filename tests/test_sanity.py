"""Evaluation sanity checks: they pass on an honest model and fail, with a warning, on broken ones."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustfair.errors import ConfigError
from robustfair.metrics import classwise_result, sanity
from robustfair.metrics.sanity import class_balanced_sample, run_sanity_checks

NUM_CLASSES = 3


def blobs(n_per_class: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three separable clusters in [0, 1]^2 around (0.2, 0.2), (0.8, 0.2), (0.5, 0.8)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]])
    x = (centres.repeat_interleave(n_per_class, 0) + 0.03 * torch.randn(3 * n_per_class, 2, generator=g)).clamp(0, 1)
    return x, torch.arange(3).repeat_interleave(n_per_class)


def nearest_centre_model() -> nn.Module:
    """Logits -||x - c_j||^2 (up to a constant): a linear classifier with honest gradients."""
    centres = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]])
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(2 * centres * 10)
        model.bias.copy_(-(centres**2).sum(1) * 10)
    return model


class Softmaxed(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


class Quantised(nn.Module):
    """Gradient masking: rounds its input to 2 levels first (zero gradient everywhere)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 2) / 2)


def clean_result(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    with torch.no_grad():
        pred = model(x).argmax(1)
    return classwise_result(y, pred, pred, num_classes=NUM_CLASSES)


def run(model, x, y, **kwargs):
    messages = []
    record = run_sanity_checks(
        model,
        [(x[i : i + 16], y[i : i + 16]) for i in range(0, len(y), 16)],
        result=kwargs.pop("result", clean_result(model, x, y)),
        eps=kwargs.pop("eps", 0.1),
        num_classes=NUM_CLASSES,
        device="cpu",
        log=messages.append,
        **kwargs,
    )
    return record, messages, {c["name"]: c for c in record["checks"]}


def test_an_honest_model_passes_every_check_silently():
    x, y = blobs()
    record, messages, checks = run(nearest_centre_model(), x, y, max_samples=30)
    assert record["passed"] and messages == []
    assert set(checks) == {
        "robust_not_above_clean",
        "outputs_are_logits",
        "input_gradients_nonzero",
        "more_steps_not_weaker",
        "large_eps_near_zero",
    }
    assert record["num_samples"] == 30
    assert checks["large_eps_near_zero"]["measured"]["accuracy"] == 0.0
    assert checks["input_gradients_nonzero"]["measured"]["zero_fraction"] == 0.0
    assert all(c["threshold"] for c in record["checks"])
    strong = checks["more_steps_not_weaker"]["measured"]["strong"]
    assert strong["steps"] == 50 and strong["restarts"] == 2
    json.dumps(record)  # stored in results.json


def test_probabilities_instead_of_logits_fail_with_a_warning():
    x, y = blobs()
    model = Softmaxed(nearest_centre_model())
    record, messages, checks = run(model, x, y, max_samples=30)
    assert not record["passed"]
    assert not checks["outputs_are_logits"]["passed"]
    assert any(m.startswith("warning: sanity check outputs_are_logits failed") for m in messages)


def test_gradient_masking_fails_the_gradient_and_large_eps_checks():
    x, y = blobs()
    model = Quantised(nearest_centre_model())
    record, messages, checks = run(model, x, y, max_samples=30)
    assert not checks["input_gradients_nonzero"]["passed"]
    assert checks["input_gradients_nonzero"]["measured"]["zero_fraction"] == 1.0
    assert not checks["large_eps_near_zero"]["passed"]
    assert len(messages) == sum(not c["passed"] for c in record["checks"]) >= 2


def test_attack_that_fixes_mistakes_fails_robust_not_above_clean():
    # Class 0: 2 of 4 correct clean, 3 of 4 correct under "attack".
    result = classwise_result(
        [0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], num_classes=2, classes=["cat", "dog"]
    )
    check = sanity.robust_not_above_clean(result)
    assert not check["passed"] and check["measured"]["classes_above_clean"] == ["cat"]
    assert check["measured"]["adversarial_acc"] == [75.0, 100.0]
    assert sanity.robust_not_above_clean(result.to_dict())["passed"] is False  # results.json form too
    honest = classwise_result([0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 1, 0], num_classes=2)
    assert sanity.robust_not_above_clean(honest)["passed"]


def test_more_steps_check_compares_integer_counts_against_the_tolerance(monkeypatch):
    x, y = blobs(n_per_class=100)  # 300 samples: the tolerance is 1% (3 samples)
    robust = {20: 120, 50: 124}
    monkeypatch.setattr(sanity, "_robust_count", lambda *a, steps, **k: robust[steps])
    check = sanity.more_steps_not_weaker(nearest_centre_model(), x, y, eps=0.1)
    assert not check["passed"] and check["measured"]["tolerance"] == 3
    assert "+ 3 samples (1% of 300, at least 1)" in check["threshold"]
    robust[50] = 123  # exactly at the tolerance
    assert sanity.more_steps_not_weaker(nearest_centre_model(), x, y, eps=0.1)["passed"]


def test_more_steps_check_ties_at_one_sample_on_100_images(monkeypatch):
    """The reported false alarm: 54 vs 53 robust of 100 compared as float32 percentages."""
    x, y = blobs(n_per_class=34)
    x, y = x[:100], y[:100]
    robust = {20: 53, 50: 54}
    monkeypatch.setattr(sanity, "_robust_count", lambda *a, steps, **k: robust[steps])
    check = sanity.more_steps_not_weaker(nearest_centre_model(), x, y, eps=0.1)
    assert check["passed"], check["message"]
    assert check["measured"]["tolerance"] == 1 and check["measured"]["strong"]["robust_acc"] == 54.0
    robust[50] = 55
    assert not sanity.more_steps_not_weaker(nearest_centre_model(), x, y, eps=0.1)["passed"]


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.15)])
def test_a_healthy_model_passes_at_100_images_with_a_tie_at_the_tolerance(monkeypatch, norm, eps):
    """Every check runs for real on 100 images in the evaluated norm; the strong PGD is made to
    leave exactly one more sample robust than the weak one, the tolerance at n = 100."""
    x, y = blobs(n_per_class=34)
    x, y = x[:100], y[:100]
    real = sanity._robust_count
    counts = {}

    def one_more_for_the_strong_attack(*args, steps, **kwargs):
        counts[steps] = real(*args, steps=steps, **kwargs) + (1 if steps == 50 else 0)
        return counts[steps]

    monkeypatch.setattr(sanity, "_robust_count", one_more_for_the_strong_attack)
    model = nearest_centre_model()
    result = classwise_result(
        y,
        model(x).argmax(1),
        model(x).argmax(1),
        num_classes=NUM_CLASSES,
        attack={"name": "pgd20", "eps": eps, "norm": norm},
    )
    record, messages, checks = run(model, x, y, result=result, eps=None, max_samples=100)
    assert record["passed"] and messages == [], messages
    assert record["norm"] == norm and record["eps"] == eps and record["num_samples"] == 100
    assert counts[50] == counts[20] + 1 and checks["more_steps_not_weaker"]["measured"]["tolerance"] == 1
    assert all(c["threshold"] for c in record["checks"])
    large = checks["large_eps_near_zero"]["measured"]
    assert large["norm"] == norm and large["eps"] == (1.0 if norm == "linf" else pytest.approx(2**0.5))


class LogitsTimes1e4(nn.Module):
    """Gradient masking by saturation: huge logits make the softmax one-hot and CE's gradient exactly 0."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * 1e4


MASKED = {
    "rounded inputs": (Quantised, {"input_gradients_nonzero", "large_eps_near_zero"}),
    "logits x 1e4": (LogitsTimes1e4, {"input_gradients_nonzero"}),
    "softmax outputs": (Softmaxed, {"outputs_are_logits"}),
}


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("masking", sorted(MASKED))
def test_masked_models_fail_in_l2_as_in_linf(masking, norm):
    wrapper, expected = MASKED[masking]
    x, y = blobs(n_per_class=34)
    x, y = x[:100], y[:100]
    model = wrapper(nearest_centre_model())
    eps = {"linf": 0.1, "l2": 0.15}[norm]
    with torch.no_grad():
        pred = model(x).argmax(1)
    result = classwise_result(y, pred, pred, num_classes=NUM_CLASSES, attack={"name": "x", "eps": eps, "norm": norm})
    record, messages, checks = run(model, x, y, result=result, eps=None, max_samples=100)
    failed = {name for name, c in checks.items() if not c["passed"]}
    assert not record["passed"] and expected <= failed, (masking, norm, failed)
    assert record["norm"] == norm
    assert len(messages) == len(failed)


def test_the_threat_model_comes_from_the_result_or_must_be_given():
    x, y = blobs()
    model = nearest_centre_model()
    with torch.no_grad():
        pred = model(x).argmax(1)
    bare = classwise_result(y, pred, pred, num_classes=NUM_CLASSES)  # a clean-only result: no eps recorded
    with pytest.raises(ConfigError, match="eps"):
        run(model, x, y, result=bare, eps=None)
    record, _, _ = run(model, x, y, result=bare, eps=0.1, norm="l2", max_samples=30)
    assert record["norm"] == "l2"


def test_a_check_that_crashes_is_reported_not_raised(monkeypatch):
    x, y = blobs()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sanity, "large_eps_near_zero", broken)
    record, messages, checks = run(nearest_centre_model(), x, y, max_samples=30)
    assert not checks["large_eps_near_zero"]["passed"]
    assert "could not run: RuntimeError: boom" in checks["large_eps_near_zero"]["message"]
    assert any("large_eps_near_zero" in m for m in messages)


def test_class_balanced_sample_takes_the_first_of_each_class():
    x = torch.arange(12, dtype=torch.float32).view(12, 1).repeat(1, 2)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    xs, ys = class_balanced_sample(batches, num_classes=3, max_samples=6, device=torch.device("cpu"))
    assert ys.tolist() == [0, 0, 1, 1, 2, 2]
    assert xs[:, 0].tolist() == [0, 1, 6, 7, 9, 10]
    assert class_balanced_sample([], num_classes=3, max_samples=6, device=torch.device("cpu")) == (None, None)


def test_bad_arguments_name_the_field():
    x, y = blobs()
    with pytest.raises(ConfigError, match="max_samples"):
        run(nearest_centre_model(), x, y, max_samples=0)
    with pytest.raises(ConfigError, match="eps"):
        run(nearest_centre_model(), x, y, eps=float("nan"))
    with pytest.raises(ConfigError, match="norm"):
        run(nearest_centre_model(), x, y, norm="l1")


class Constant(nn.Module):
    """Predicts class 1 everywhere (an undertrained model), with honest gradients."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 3)
        with torch.no_grad():
            self.linear.weight.fill_(0.1)
            self.linear.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))

    def forward(self, x):
        return self.linear(x)


def test_a_constant_classifier_is_named_as_such_at_large_eps():
    x, y = blobs()
    check = sanity.large_eps_near_zero(Constant(), x, y)
    assert not check["passed"]
    assert check["measured"]["accuracy"] == pytest.approx(100 / 3)
    assert check["measured"]["majority_prediction"] == 1 and check["measured"]["majority_share"] == 100.0
    assert "constant classifier" in check["message"]
    masked = sanity.large_eps_near_zero(Quantised(nearest_centre_model()), x, y)
    assert "gradient masking" in masked["message"]
