"""Accuracy attack, unified fairness attack and per-notion direct gap attacks."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from robustfair.errors import ConfigError
from robustfair.group.attacks import (accuracy_attack, direct_gap_attack, fairness_attack, pgd_ascent,
                                      unified_weights)
from robustfair.group.config import ModelConfig, TrainConfig
from robustfair.group.metrics import NOTIONS, fairness_gap
from robustfair.group.models import build_group_model
from robustfair.group.synthetic import synthetic_group_data
from robustfair.group.training import train_group_model

P = torch.tensor([0.9, 0.7, 0.4, 0.2, 0.6, 0.3, 0.5, 0.1])
S = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
Y = torch.tensor([1, 1, 0, 0, 1, 1, 0, 1])


@pytest.fixture(scope="module")
def data():
    return synthetic_group_data(n_train=400, n_test=200, seed=0, include_sensitive=True)


@pytest.fixture(scope="module")
def trained(data):
    """A fixed ERM-trained MLP: the model every attack below is pointed at."""
    config = TrainConfig(method="erm", epochs=60, batch_size=0, lr=0.01, seed=0)
    return train_group_model(data, ModelConfig("mlp", (16,)), config).model


def relabel(s, y, groups):
    """The group labels as given, swapped, or swapped only on y = 0 rows (so EOdds's two strata
    favour different groups): the attacks must follow the signs, whichever group is ahead."""
    if groups == "as_is":
        return s
    if groups == "swapped":
        return 1 - s
    return torch.where(y == 0, 1 - s, s)


GROUPINGS = ["as_is", "swapped", "swapped_on_negatives"]


def budget(data, **overrides):
    args = {"eps": 0.3, "step_size": 0.05, "steps": 10, "norm": "linf", "start": "zero",
            "continuous_mask": data.layout.continuous_mask()}
    args.update(overrides)
    return args


def test_unified_weights_by_hand():
    # DP: s=0 favoured (0.55 > 0.375) -> +1/4 for s=0, -1/4 for s=1
    assert torch.allclose(unified_weights(P, Y, S, "dp"), torch.tensor([0.25] * 4 + [-0.25] * 4))
    # EOpp: only y=1 rows; s=0 favoured (0.8 > 1/3): +1/2 rows 0,1; -1/3 rows 4,5,7; y=0 rows weight 0
    third = 1 / 3
    assert torch.allclose(unified_weights(P, Y, S, "eopp"),
                          torch.tensor([0.5, 0.5, 0, 0, -third, -third, 0, -third]))
    # EOdds: y=1 stratum as EOpp; y=0 stratum s=1 favoured (0.5 > 0.3): +1 row 6, -1/2 rows 2,3
    assert torch.allclose(unified_weights(P, Y, S, "eodds"),
                          torch.tensor([0.5, 0.5, -0.5, -0.5, -third, -third, 1.0, -third]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 0.99), st.integers(0, 1), st.integers(0, 1)), min_size=4, max_size=24),
       st.sampled_from(NOTIONS))
def test_weighted_sum_equals_the_gap_and_has_its_gradient(rows, notion):
    p = torch.tensor([r[0] for r in rows], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([r[1] for r in rows])
    s = torch.tensor([r[2] for r in rows])
    w = unified_weights(p, y, s, notion)
    unified = (w * p).sum()
    gap = fairness_gap(notion, p, y, s)
    assert unified.item() == pytest.approx(gap.item(), abs=1e-12)
    (g_unified,) = torch.autograd.grad(unified, p)
    (g_gap,) = torch.autograd.grad(fairness_gap(notion, p, y, s), p)
    assert torch.allclose(g_unified, g_gap, atol=1e-12)


@pytest.mark.parametrize("notion", NOTIONS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("start", ["zero", "uniform"])
@pytest.mark.parametrize("groups", GROUPINGS)
def test_unified_attack_has_the_same_iterates_as_the_direct_gap_attack(data, trained, notion, norm, start, groups):
    x, y = data.test.x, data.test.y
    s = relabel(data.test.s, y, groups)
    for steps in range(1, 7):  # every iterate, not only the last
        args = budget(data, norm=norm, start=start, steps=steps, eps=0.3 if norm == "linf" else 0.6)
        unified = fairness_attack(trained, x, y, s, notion=notion, generator=torch.Generator().manual_seed(5), **args)
        direct = direct_gap_attack(trained, x, y, s, notion=notion, generator=torch.Generator().manual_seed(5), **args)
        assert torch.allclose(unified, direct, atol=1e-6), (notion, norm, start, steps)
        assert not torch.equal(unified, x)


@pytest.mark.parametrize("notion", NOTIONS)
@pytest.mark.parametrize("groups", GROUPINGS)
def test_fixed_signs_coincide_with_adaptive_signs_when_widening(data, trained, notion, groups):
    x, y = data.test.x, data.test.y
    s = relabel(data.test.s, y, groups)
    adaptive = fairness_attack(trained, x, y, s, notion=notion, **budget(data))
    fixed = fairness_attack(trained, x, y, s, notion=notion, fix_signs=True, **budget(data))
    assert torch.equal(adaptive, fixed)


@pytest.mark.parametrize("notion", NOTIONS)
@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 0.5)])
@pytest.mark.parametrize("groups", GROUPINGS)
def test_fairness_attack_widens_the_targeted_gap_on_a_trained_model(data, trained, notion, norm, eps, groups):
    x, y = data.test.x, data.test.y
    s = relabel(data.test.s, y, groups)
    with torch.no_grad():
        clean = fairness_gap(notion, torch.sigmoid(trained(x)), y, s).item()
    x_adv = fairness_attack(trained, x, y, s, notion=notion, **budget(data, norm=norm, eps=eps, step_size=eps / 4))
    with torch.no_grad():
        attacked = fairness_gap(notion, torch.sigmoid(trained(x_adv)), y, s).item()
    assert attacked > clean + 0.05, (clean, attacked)


def test_equal_opportunity_attack_leaves_negative_rows_alone(data, trained):
    x, y, s = data.test.x, data.test.y, data.test.s
    x_adv = fairness_attack(trained, x, y, s, notion="eopp", **budget(data))
    assert torch.equal(x_adv[y == 0], x[y == 0])  # weight 0 for y = 0: no gradient, zero start
    assert not torch.equal(x_adv[y == 1], x[y == 1])


def test_accuracy_attack_lowers_accuracy_on_a_trained_model(data, trained):
    x, y = data.test.x, data.test.y
    x_adv = accuracy_attack(trained, x, y, **budget(data))
    with torch.no_grad():
        clean = ((trained(x) > 0).long() == y).float().mean().item()
        attacked = ((trained(x_adv) > 0).long() == y).float().mean().item()
    assert attacked < clean - 0.1, (clean, attacked)


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0.0, 1.0), norm=st.sampled_from(["linf", "l2"]), steps=st.integers(0, 4),
       step_size=st.floats(0.0, 2.0), start=st.sampled_from(["zero", "uniform"]), changes=st.integers(0, 2),
       which=st.sampled_from(["accuracy", "dp", "eopp", "eodds"]), seed=st.integers(0, 3))
def test_attacks_never_leave_their_budget(eps, norm, steps, step_size, start, changes, which, seed):
    data = synthetic_group_data(n_train=40, n_test=30, seed=seed, include_sensitive=True)
    torch.manual_seed(seed)
    model = build_group_model("mlp", data.layout.num_features, (8,))
    x, y, s = data.test.x, data.test.y, data.test.s
    mask = data.layout.continuous_mask()
    args = dict(eps=eps, step_size=step_size, steps=steps, norm=norm, start=start, continuous_mask=mask,
                blocks=data.layout.perturbable_blocks(), max_categorical_changes=changes,
                generator=torch.Generator().manual_seed(seed))
    if which == "accuracy":
        x_adv = accuracy_attack(model, x, y, **args)
    else:
        x_adv = fairness_attack(model, x, y, s, notion=which, **args)
    delta = (x_adv - x)[:, mask]
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    changed_blocks = torch.zeros(len(y), dtype=torch.long)
    for block in data.layout.blocks:
        part = x_adv[:, block.start:block.stop]
        assert torch.equal(part.sum(dim=1), torch.ones(len(y)))  # still one-hot
        assert bool(((part == 0) | (part == 1)).all())
        moved = (part != x[:, block.start:block.stop]).any(dim=1)
        if block.name == data.layout.protected_block:
            assert not bool(moved.any())  # the sensitive attribute is never changed
        changed_blocks += moved.long()
    assert bool((changed_blocks <= changes).all())


def test_switching_a_category_only_ever_raises_each_rows_loss(data, trained):
    x, y = data.test.x, data.test.y
    args = budget(data, blocks=data.layout.perturbable_blocks())
    plain = accuracy_attack(trained, x, y, **args)
    switched = accuracy_attack(trained, x, y, max_categorical_changes=1, **args)
    with torch.no_grad():
        loss_plain = F.binary_cross_entropy_with_logits(trained(plain), y.float(), reduction="none")
        loss_switched = F.binary_cross_entropy_with_logits(trained(switched), y.float(), reduction="none")
    changed = (switched != plain).any(dim=1)
    assert bool(changed.any())
    assert bool((loss_switched[changed] > loss_plain[changed]).all())
    assert torch.equal(loss_switched[~changed], loss_plain[~changed])


def test_attacks_restore_the_model_mode_and_leave_parameter_gradients_alone(data, trained):
    trained.train()
    for p in trained.parameters():
        p.grad = torch.full_like(p, 7.0)
    try:
        fairness_attack(trained, data.test.x, data.test.y, data.test.s, notion="dp", **budget(data))
        accuracy_attack(trained, data.test.x, data.test.y, max_categorical_changes=1,
                        **budget(data, blocks=data.layout.perturbable_blocks()))
        assert trained.training
        assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in trained.parameters())
    finally:
        trained.eval()
        for p in trained.parameters():
            p.grad = None


def test_zero_budget_returns_the_input(data, trained):
    x_adv = fairness_attack(trained, data.test.x, data.test.y, data.test.s, notion="eodds",
                            **budget(data, eps=0.0, start="uniform"))
    assert torch.equal(x_adv, data.test.x)


@pytest.mark.parametrize("field,value,match", [("norm", "l1", "attack.norm"), ("eps", -0.1, "attack.eps"),
                                               ("start", "gaussian", "attack.start")])
def test_invalid_budgets_name_the_field(data, field, value, match):
    args = budget(data, **{field: value})
    with pytest.raises(ConfigError, match=match):
        pgd_ascent(data.test.x, lambda z: z.sum(dim=1), **args)
