"""Class-wise metrics: hand-computed errors, JSON round trip, and evaluate_classwise with stub attacks."""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustfair.errors import ConfigError, DataError
from robustfair.metrics import ClasswiseResult, classwise_result, evaluate_classwise

# 3 classes, 10 samples. Sample 3 (class 0) is wrong clean but right under attack, and so is
# sample 6 (class 1): neither counts as robust.
Y = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
CLEAN = [0, 0, 0, 1, 1, 1, 0, 2, 2, 2]
ADV = [0, 1, 2, 0, 1, 0, 1, 2, 0, 1]


def hand_result() -> ClasswiseResult:
    return classwise_result(
        Y,
        CLEAN,
        ADV,
        num_classes=3,
        classes=["cat", "dog", "frog"],
        dataset="toy",
        attack={"name": "pgd20", "eps": 8 / 255},
    )


def test_hand_computed_per_class_numbers():
    result = hand_result()
    # class 0: clean right {0,1,2} of 4; robust (clean & adv right) {0}; class 1: clean {4,5} of 3,
    # robust {4}; class 2: clean {7,8,9} of 3, robust {7}
    np.testing.assert_array_equal(result.count, [4, 3, 3])
    np.testing.assert_allclose(result.clean_acc, [3 / 4, 2 / 3, 1.0])
    np.testing.assert_allclose(result.robust_acc, [1 / 4, 1 / 3, 1 / 3])
    np.testing.assert_allclose(result.boundary_err, [2 / 4, 1 / 3, 2 / 3])
    np.testing.assert_allclose(result.clean_err, [1 / 4, 1 / 3, 0.0])
    np.testing.assert_allclose(result.robust_err, [3 / 4, 2 / 3, 2 / 3])
    # plain adversarial accuracy counts samples 3 and 6 too
    np.testing.assert_allclose(result.adversarial_acc, [2 / 4, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(result.clean_confusion, [[3, 1, 0], [1, 2, 0], [0, 0, 3]])
    np.testing.assert_array_equal(result.adversarial_confusion, [[2, 1, 1], [1, 2, 0], [1, 1, 1]])
    np.testing.assert_array_equal(result.robust_correct, [1, 1, 1])


def test_hand_computed_summary_in_percent():
    summary = hand_result().summary()
    # clean right 8/10, robust 3/10 over the whole set
    assert summary["avg_std_err"] == pytest.approx(20.0)
    assert summary["avg_rob_err"] == pytest.approx(70.0)
    assert summary["avg_bndy_err"] == pytest.approx(50.0)
    assert summary["worst_std_err"] == pytest.approx(100 / 3)  # class 1
    assert summary["worst_rob_err"] == pytest.approx(75.0)  # class 0
    assert summary["worst_bndy_err"] == pytest.approx(200 / 3)  # class 2
    result = hand_result()
    assert result.average_clean_err == pytest.approx(0.2)
    assert result.average_boundary_err == pytest.approx(0.5)
    assert result.average_robust_err == pytest.approx(0.7)


def test_to_dict_shape_and_json_round_trip():
    result = hand_result()
    data = result.to_dict()
    assert {"dataset", "classes", "attack", "per_class", "summary", "confusion"} <= set(data)
    assert {"clean_acc", "robust_acc", "boundary_err", "count"} <= set(data["per_class"])
    assert set(data["summary"]) == {
        "avg_std_err",
        "worst_std_err",
        "avg_bndy_err",
        "worst_bndy_err",
        "avg_rob_err",
        "worst_rob_err",
    }
    assert set(data["confusion"]) == {"clean", "adversarial"}
    assert data["dataset"] == "toy" and data["classes"] == ["cat", "dog", "frog"]
    assert data["attack"] == {"name": "pgd20", "eps": 8 / 255}
    assert data["per_class"]["clean_acc"] == pytest.approx([75.0, 200 / 3, 100.0])
    assert data["per_class"]["count"] == [4, 3, 3]
    assert data["confusion"]["clean"] == [[3, 1, 0], [1, 2, 0], [0, 0, 3]]
    text = json.dumps(data)
    restored = ClasswiseResult.from_dict(json.loads(text))
    assert restored == result
    assert restored.to_dict() == data


def test_from_dict_without_robust_counts_recovers_them_from_percentages():
    data = hand_result().to_dict()
    del data["per_class"]["robust_correct"]
    np.testing.assert_array_equal(ClasswiseResult.from_dict(data).robust_correct, [1, 1, 1])
    del data["confusion"]
    with pytest.raises(DataError, match="confusion"):
        ClasswiseResult.from_dict(data)


def test_empty_class_is_null_in_json_and_ignored_by_worst():
    result = classwise_result([0, 0, 1], [0, 1, 1], [0, 1, 0], num_classes=3)
    data = result.to_dict()
    assert data["per_class"]["clean_acc"][2] is None and data["per_class"]["count"][2] == 0
    assert data["summary"]["worst_std_err"] == pytest.approx(50.0)
    assert data["summary"]["worst_rob_err"] == pytest.approx(100.0)
    assert data["classes"] == ["0", "1", "2"]
    json.dumps(data, allow_nan=False)
    assert ClasswiseResult.from_dict(json.loads(json.dumps(data))) == result


def test_clean_only_has_zero_boundary_error():
    result = classwise_result(Y, CLEAN, None, num_classes=3)
    np.testing.assert_allclose(result.robust_acc, result.clean_acc)
    assert result.summary()["worst_bndy_err"] == 0.0
    assert result.attack == {"name": "none"}


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="adv_pred"):
        classwise_result([0, 1], [0, 1], [0, 3], num_classes=3)
    with pytest.raises(DataError, match="clean_pred"):
        classwise_result([0, 1], [0], [0, 1], num_classes=3)
    with pytest.raises(ConfigError, match="classes"):
        classwise_result([0, 1], [0, 1], [0, 1], num_classes=3, classes=["a", "b"])
    with pytest.raises(ConfigError, match="num_classes"):
        classwise_result([0], [0], [0], num_classes=0)
    with pytest.raises(DataError, match="robust_correct"):
        ClasswiseResult(np.eye(2, dtype=int), np.eye(2, dtype=int), np.array([2, 0]), ("a", "b"))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda c: st.tuples(
            st.just(c),
            st.lists(
                st.tuples(st.integers(0, c - 1), st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=40
            ),
        )
    )
)
def test_properties_on_random_predictions(case):
    num_classes, rows = case
    y, clean, adv = (np.array(col) for col in zip(*rows))
    result = classwise_result(y, clean, adv, num_classes=num_classes)
    present = result.count > 0
    assert (result.robust_acc[present] <= result.clean_acc[present]).all()
    assert (result.boundary_err[present] >= 0).all()
    assert result.count.sum() == len(y) == result.adversarial_confusion.sum()
    # the average is the sample-weighted mean of the class values
    weights = result.count[present] / len(y)
    assert result.average_clean_err == pytest.approx(float((weights * result.clean_err[present]).sum()))
    assert result.average_robust_err == pytest.approx(float((weights * result.robust_err[present]).sum()))
    summary = result.summary()
    assert summary["avg_bndy_err"] == pytest.approx(summary["avg_rob_err"] - summary["avg_std_err"])
    assert summary["worst_rob_err"] >= summary["avg_rob_err"] - 1e-9


# ---- evaluate_classwise --------------------------------------------------------------------


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, -1.0, 0.0, 0.5], [-1.0, 2.0, 0.5, 0.0], [0.0, 0.0, 1.0, 1.0]]))
        model[1].bias.copy_(torch.tensor([0.0, 0.1, -0.8]))
    return model


def toy_data(n: int = 37) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n, 4, generator=generator)
    y = torch.randint(0, 3, (n,), generator=generator)
    return x, y


def batches(x, y, size=8):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def test_clean_evaluation_equals_the_pure_function():
    model = linear_model()
    x, y = toy_data()
    pred = model(x).argmax(1)
    result = evaluate_classwise(model, batches(x, y), attack=None, num_classes=3, dataset_name="toy")
    expected = classwise_result(y, pred, pred, num_classes=3, dataset="toy")
    assert result == expected
    assert result.attack == {"name": "none"}
    assert 0 < result.summary()["avg_std_err"] < 100  # a case with both right and wrong predictions


def test_identity_attack_gives_robust_equal_clean_and_runs_in_eval_mode():
    model = linear_model()
    dropout = nn.Dropout(0.5)
    model.append(dropout)
    model.train()
    dropout.eval()  # a mixed-mode model: each module's own mode must come back
    seen_modes = []

    def identity_attack(m, x, y):
        seen_modes.append(m.training)
        return x.clone()

    x, y = toy_data()
    result = evaluate_classwise(model, batches(x, y), attack=identity_attack, num_classes=3)
    np.testing.assert_array_equal(result.robust_correct, np.diag(result.clean_confusion))
    np.testing.assert_array_equal(result.adversarial_confusion, result.clean_confusion)
    assert result.summary()["avg_bndy_err"] == 0.0
    assert seen_modes and not any(seen_modes)
    assert model.training and model[0].training and not dropout.training
    assert result.attack["name"] == "identity_attack"


def test_attack_predictions_are_counted_like_the_pure_function():
    model = linear_model()
    x, y = toy_data()

    def flip(m, x_batch, y_batch):
        return 1.0 - x_batch

    result = evaluate_classwise(model, batches(x, y, 5), attack=flip, num_classes=3)
    expected = classwise_result(
        y, model(x).argmax(1), model(1 - x).argmax(1), num_classes=3, attack={"name": "flip", "seed": 0}
    )
    assert result == expected
    assert result.summary()["avg_bndy_err"] > 0

    def shift(m, x_batch, y_batch, *, amount):
        return (x_batch + amount).clamp(0, 1)

    bound = evaluate_classwise(model, batches(x, y), attack=functools.partial(shift, amount=0.5), num_classes=3)
    assert bound.attack == {"name": "shift", "params": {"amount": 0.5}, "seed": 0}


def test_gradient_attack_works_under_no_grad():
    model = linear_model()
    x, y = toy_data()

    def one_step(m, x_batch, y_batch):
        x_batch = x_batch.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(m(x_batch), y_batch)
        (grad,) = torch.autograd.grad(loss, x_batch)
        return (x_batch + 0.5 * grad.sign()).clamp(0, 1).detach()

    with torch.no_grad():
        result = evaluate_classwise(model, batches(x, y), attack=one_step, num_classes=3)
    assert result.summary()["avg_rob_err"] >= result.summary()["avg_std_err"]


def test_dataset_object_is_batched_and_uint8_scaled():
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (21, 1, 2, 2), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (21,), generator=generator)
    dataset = SimpleNamespace(x=images.numpy(), y=labels.numpy(), classes=["a", "b", "c"], name="tiny")
    model = linear_model()
    result = evaluate_classwise(model, dataset, attack=None, num_classes=3, batch_size=4)
    pred = model(images.float() / 255).argmax(1)
    assert result == classwise_result(labels, pred, pred, num_classes=3, classes=["a", "b", "c"], dataset="tiny")


def test_reduce_sums_counts_across_ranks():
    model = linear_model()
    x, y = toy_data()
    single = evaluate_classwise(model, batches(x, y), attack=None, num_classes=3)
    calls = []

    def two_identical_ranks(tensor):
        calls.append(tensor.dtype)
        return tensor * 2

    def in_place(tensor):
        tensor.mul_(2)

    for reduce in (two_identical_ranks, in_place):
        doubled = evaluate_classwise(model, batches(x, y), attack=None, num_classes=3, reduce=reduce)
        np.testing.assert_array_equal(doubled.clean_confusion, 2 * single.clean_confusion)
        np.testing.assert_array_equal(doubled.robust_correct, 2 * single.robust_correct)
        assert doubled.summary() == pytest.approx(single.summary())
    assert calls == [torch.int64]  # one all-reduce per evaluation


def test_evaluate_rejects_bad_labels_and_wrong_num_classes():
    model = linear_model()
    x, _ = toy_data(4)
    with pytest.raises(DataError, match="labels outside"):
        evaluate_classwise(model, [(x, torch.tensor([0, 1, 5, 2]))], attack=None, num_classes=3)
    with pytest.raises(ConfigError, match="num_classes"):
        evaluate_classwise(model, [(x, torch.tensor([0, 1, 2, 2]))], attack=None, num_classes=4)
    with pytest.raises(ConfigError, match="attack_overrides"):
        evaluate_classwise(
            model, [(x, torch.tensor([0, 1, 2, 2]))], attack=None, num_classes=3, attack_overrides={"eps": 0.1}
        )
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate_classwise(model, [], attack=None, num_classes=3, batch_size=0)


def _make_attack_or_skip():
    attacks = pytest.importorskip("robustfair.attacks")
    if not hasattr(attacks, "make_attack"):
        pytest.skip("robustfair.attacks has no make_attack yet")
    return attacks


def test_named_fgsm_attack():
    _make_attack_or_skip()
    model = linear_model()
    x, y = toy_data()
    clean = evaluate_classwise(model, batches(x, y), attack=None, num_classes=3)
    zero = evaluate_classwise(model, batches(x, y), attack="fgsm", attack_overrides={"eps": 0.0}, num_classes=3)
    np.testing.assert_array_equal(zero.robust_correct, np.diag(clean.clean_confusion))
    attacked = evaluate_classwise(model, batches(x, y), attack="fgsm", attack_overrides={"eps": 0.25}, num_classes=3)
    assert attacked.attack["name"] == "fgsm" and attacked.attack["overrides"] == {"eps": 0.25}
    assert attacked.attack["eps"] == 0.25  # the attack's own description is recorded
    np.testing.assert_array_equal(attacked.clean_confusion, clean.clean_confusion)
    assert attacked.robust_correct.sum() < clean.robust_correct.sum()
    json.dumps(attacked.to_dict())
