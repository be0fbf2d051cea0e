"""The five group-fairness trainings: their losses, determinism and effect on a synthetic table."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from robustfair.errors import TrainingDivergedError
from robustfair.group.attacks import accuracy_attack, fairness_attack
from robustfair.group.config import TRAINING_NAMES, AttackConfig, ModelConfig, TrainConfig
from robustfair.group.evaluation import evaluate_group_model
from robustfair.group.metrics import fairness_gap
from robustfair.group.models import build_group_model
from robustfair.group.synthetic import synthetic_group_data
from robustfair.group.tabular import TabularSplit
from robustfair.group.training import TRAININGS, Batch, TrainingContext, attack_arguments, train_group_model

ZERO_START = AttackConfig(eps=0.3, step_size=0.1, steps=5, start="zero")


@pytest.fixture(scope="module")
def data():
    return synthetic_group_data(n_train=400, n_test=300, seed=1)


def test_registry_matches_the_config_choices():
    assert tuple(TRAININGS) == TRAINING_NAMES


@pytest.mark.parametrize("method", TRAINING_NAMES)
def test_each_loss_is_its_formula(data, method):
    torch.manual_seed(0)
    model = build_group_model("mlp", data.layout.num_features, (8,))
    config = TrainConfig(method=method, notion="eodds", lam=2.5, attack=ZERO_START)
    args = attack_arguments(ZERO_START, data.layout)
    batch = Batch(data.train.x[:100], data.train.y[:100], data.train.s[:100])
    loss, logs = TRAININGS[method](model, batch, TrainingContext(config, args, torch.Generator().manual_seed(0)))

    x, y, s = batch.x, batch.y, batch.s
    x_acc = accuracy_attack(model, x, y, **args)
    x_fair = fairness_attack(model, x, y, s, notion="eodds", **args)
    ce_x = F.binary_cross_entropy_with_logits(model(x), y.float())
    ce_acc = F.binary_cross_entropy_with_logits(model(x_acc), y.float())
    gap_x = fairness_gap("eodds", torch.sigmoid(model(x)), y, s)
    gap_fair = fairness_gap("eodds", torch.sigmoid(model(x_fair)), y, s)
    expected = {
        "erm": ce_x,
        "fair_erm": ce_x + 2.5 * gap_x,
        "acc_at": ce_acc,
        "fair_at": ce_x + 2.5 * gap_fair,
        "joint": ce_acc + 2.5 * gap_fair,
    }[method]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert ("gap" in logs) == (method in ("fair_erm", "fair_at", "joint"))
    assert gap_fair.item() > gap_x.item()  # the attack in the formula really widens the gap


@pytest.mark.parametrize("method", TRAINING_NAMES)
def test_training_is_seeded(data, method):
    config = TrainConfig(method=method, epochs=2, batch_size=100, seed=3, attack=AttackConfig(steps=2))
    first = train_group_model(data, ModelConfig("mlp", (8,)), config)
    second = train_group_model(data, ModelConfig("mlp", (8,)), config)
    other = train_group_model(data, ModelConfig("mlp", (8,)), dataclasses.replace(config, seed=4))
    for (name, a), b, _ in zip(
        first.model.state_dict().items(), second.model.state_dict().values(), other.model.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert any(
        not torch.equal(a, c) for a, c in zip(first.model.state_dict().values(), other.model.state_dict().values())
    )
    assert len(first.history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in first.history)
    assert not first.model.training


def test_trainings_move_the_numbers_they_target(data):
    """On the synthetic table: the gap penalty shrinks the clean gap, accuracy AT raises accuracy
    under attack, and joint training shrinks the gap under the fairness attack, each against ERM."""
    attack = AttackConfig(eps=0.3, step_size=0.075, steps=10)
    results = {}
    for method in TRAINING_NAMES:
        config = TrainConfig(
            method=method, notion="dp", lam=2.0, epochs=40, batch_size=0, lr=0.01, seed=0, attack=attack
        )
        model = train_group_model(data, ModelConfig("logistic", ()), config).model
        results[method] = evaluate_group_model(model, data.test, data.layout, attack, seed=0)
    erm = results["erm"]
    assert results["fair_erm"]["clean"]["gaps"]["dp"] < erm["clean"]["gaps"]["dp"] - 0.05
    assert results["acc_at"]["accuracy_attack"]["accuracy"] > erm["accuracy_attack"]["accuracy"]
    for method in ("fair_at", "joint"):
        assert (
            results[method]["fairness_attack"]["dp"]["gaps"]["dp"] < erm["fairness_attack"]["dp"]["gaps"]["dp"] - 0.05
        )


def test_a_non_finite_loss_names_epoch_and_step(data):
    x = data.train.x.clone()
    x[150, 0] = float("nan")
    broken = dataclasses.replace(data, train=TabularSplit(x, data.train.y, data.train.s))
    config = TrainConfig(method="erm", epochs=1, batch_size=100, seed=0)
    with pytest.raises(TrainingDivergedError, match="epoch 1, step"):
        train_group_model(broken, ModelConfig("logistic", ()), config)
