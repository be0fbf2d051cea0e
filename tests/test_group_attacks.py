"""Accuracy attack, unified fairness attack and per-notion direct gap attacks."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from robustfair.errors import ConfigError
from robustfair.group.attacks import accuracy_attack, direct_gap_attack, fairness_attack, pgd_ascent, unified_weights
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
    args = {
        "eps": 0.3,
        "step_size": 0.05,
        "steps": 10,
        "norm": "linf",
        "start": "zero",
        "continuous_mask": data.layout.continuous_mask(),
    }
    args.update(overrides)
    return args


def test_unified_weights_by_hand():
    # DP: s=0 favoured (0.55 > 0.375) -> +1/4 for s=0, -1/4 for s=1
    assert torch.allclose(unified_weights(P, Y, S, "dp"), torch.tensor([0.25] * 4 + [-0.25] * 4))
    # EOpp: only y=1 rows; s=0 favoured (0.8 > 1/3): +1/2 rows 0,1; -1/3 rows 4,5,7; y=0 rows weight 0
    third = 1 / 3
    assert torch.allclose(unified_weights(P, Y, S, "eopp"), torch.tensor([0.5, 0.5, 0, 0, -third, -third, 0, -third]))
    # EOdds: y=1 stratum as EOpp; y=0 stratum s=1 favoured (0.5 > 0.3): +1 row 6, -1/2 rows 2,3
    assert torch.allclose(
        unified_weights(P, Y, S, "eodds"), torch.tensor([0.5, 0.5, -0.5, -0.5, -third, -third, 1.0, -third])
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.01, 0.99), st.integers(0, 1), st.integers(0, 1)), min_size=4, max_size=24),
    st.sampled_from(NOTIONS),
)
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
@given(
    eps=st.floats(0.0, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
    steps=st.integers(0, 4),
    step_size=st.floats(0.0, 2.0),
    start=st.sampled_from(["zero", "uniform"]),
    changes=st.integers(0, 2),
    which=st.sampled_from(["accuracy", "dp", "eopp", "eodds"]),
    seed=st.integers(0, 3),
)
def test_attacks_never_leave_their_budget(eps, norm, steps, step_size, start, changes, which, seed):
    data = synthetic_group_data(n_train=40, n_test=30, seed=seed, include_sensitive=True)
    torch.manual_seed(seed)
    model = build_group_model("mlp", data.layout.num_features, (8,))
    x, y, s = data.test.x, data.test.y, data.test.s
    mask = data.layout.continuous_mask()
    args = dict(
        eps=eps,
        step_size=step_size,
        steps=steps,
        norm=norm,
        start=start,
        continuous_mask=mask,
        blocks=data.layout.perturbable_blocks(),
        max_categorical_changes=changes,
        generator=torch.Generator().manual_seed(seed),
    )
    if which == "accuracy":
        x_adv = accuracy_attack(model, x, y, **args)
    else:
        x_adv = fairness_attack(model, x, y, s, notion=which, **args)
    delta = (x_adv - x)[:, mask]
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    changed_blocks = torch.zeros(len(y), dtype=torch.long)
    for block in data.layout.blocks:
        part = x_adv[:, block.start : block.stop]
        assert torch.equal(part.sum(dim=1), torch.ones(len(y)))  # still one-hot
        assert bool(((part == 0) | (part == 1)).all())
        moved = (part != x[:, block.start : block.stop]).any(dim=1)
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
        accuracy_attack(
            trained,
            data.test.x,
            data.test.y,
            max_categorical_changes=1,
            **budget(data, blocks=data.layout.perturbable_blocks()),
        )
        assert trained.training
        assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in trained.parameters())
    finally:
        trained.eval()
        for p in trained.parameters():
            p.grad = None


def test_zero_budget_returns_the_input(data, trained):
    x_adv = fairness_attack(
        trained, data.test.x, data.test.y, data.test.s, notion="eodds", **budget(data, eps=0.0, start="uniform")
    )
    assert torch.equal(x_adv, data.test.x)


@pytest.mark.parametrize(
    "field,value,match",
    [("norm", "l1", "attack.norm"), ("eps", -0.1, "attack.eps"), ("start", "gaussian", "attack.start")],
)
def test_invalid_budgets_name_the_field(data, field, value, match):
    args = budget(data, **{field: value})
    with pytest.raises(ConfigError, match=match):
        pgd_ascent(data.test.x, lambda z: z.sum(dim=1), **args)


# ---- the feature domain ----


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    """A CSV table with whole-number (age, duration) and fractional (amount) continuous columns."""
    from group_tables import credit_csv
    from robustfair.group.config import DataConfig
    from robustfair.group.data import load_group_data_from_config

    path = credit_csv(tmp_path_factory.mktemp("credit") / "credit.csv", n=600)
    return load_group_data_from_config(
        DataConfig(
            name="credit",
            csv=str(path),
            label="credit",
            positive="good",
            sensitive="sex",
            privileged="male",
            drop=("id",),
        )
    )


@pytest.fixture(scope="module")
def credit_model(credit):
    config = TrainConfig(method="erm", epochs=30, batch_size=0, lr=0.02, seed=0)
    return train_group_model(credit, ModelConfig("mlp", (16,)), config).model


def raw_values(data, x):
    """x [N, D] back in raw units on the continuous columns [N, C] (float64)."""
    cols = list(data.layout.continuous)
    return x[:, cols].double() * torch.tensor(data.layout.std, dtype=torch.float64) + torch.tensor(
        data.layout.mean, dtype=torch.float64
    )


@pytest.mark.parametrize("which", ["accuracy", "dp", "eopp", "eodds"])
@pytest.mark.parametrize("norm,eps", [("linf", 0.5), ("l2", 0.8)])
def test_bounded_attacks_keep_rows_in_the_training_range_with_whole_numbers(credit, credit_model, which, norm, eps):
    from robustfair.group.domain import FeatureDomain, domain_violations

    x, y, s = credit.train.x, credit.train.y, credit.train.s
    args = dict(
        eps=eps,
        step_size=eps / 4,
        steps=10,
        norm=norm,
        start="uniform",
        continuous_mask=credit.layout.continuous_mask(),
        generator=torch.Generator().manual_seed(0),
    )
    attack = (
        (lambda **a: accuracy_attack(credit_model, x, y, **a))
        if which == "accuracy"
        else (lambda **a: fairness_attack(credit_model, x, y, s, notion=which, **a))
    )
    bounded = attack(domain=FeatureDomain.from_layout(credit.layout), **args)
    raw = raw_values(credit, bounded)
    low, high = torch.tensor(credit.layout.low), torch.tensor(credit.layout.high)
    assert bool(((raw >= low - 1e-6 * (1 + low.abs())) & (raw <= high + 1e-6 * (1 + high.abs()))).all())
    for k, whole in enumerate(credit.layout.integer):
        if whole:
            assert bool(((raw[:, k] - raw[:, k].round()).abs() < 1e-3).all()), credit.layout.names[k]
    delta = (bounded - x)[:, credit.layout.continuous_mask()]
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert not torch.equal(bounded, x)  # it still moves
    assert domain_violations(x, bounded, credit.layout)["rows_out_of_range"] == 0.0
    unbounded = attack(domain=None, **args)
    report = domain_violations(x, unbounded, credit.layout)
    assert report["rows_out_of_range"] > 0 and report["rows_non_integer"] > 0.5


def test_whole_number_shifts_reach_the_nearest_integer_inside_the_ball():
    from robustfair.group.domain import FeatureDomain
    from robustfair.group.tabular import FeatureLayout

    layout = FeatureLayout(("n",), (0,), (), mean=(10.0,), std=(4.0,), low=(0.0,), high=(30.0,), integer=(True,))
    domain = FeatureDomain.from_layout(layout)
    x = torch.tensor([[0.0], [0.0], [0.0], [-2.5]])  # raw 10, 10, 10, 0 (at the lower bound)
    # raw shifts 1.6, -2.6, 3.9 and -3: eps 0.8 reaches 3.2 raw units -> 2, -3, 3 and (bound) 0
    x_adv = x + torch.tensor([[0.4], [-0.65], [0.975], [-0.75]])
    rounded = domain.round(domain.clamp(x_adv, x), x, eps=0.8, norm="linf")
    assert (rounded * 4 + 10).flatten().tolist() == pytest.approx([12.0, 7.0, 13.0, 0.0])
    l2 = domain.round(x_adv, x, eps=0.8, norm="l2")  # towards zero: never a longer perturbation
    assert (l2 * 4 + 10).flatten().tolist()[:3] == pytest.approx([11.0, 8.0, 13.0])


def test_a_test_row_beyond_the_training_range_is_never_pushed_further_out():
    from robustfair.group.domain import FeatureDomain
    from robustfair.group.tabular import FeatureLayout

    layout = FeatureLayout(("a",), (0,), (), mean=(0.0,), std=(1.0,), low=(-1.0,), high=(1.0,), integer=(False,))
    domain = FeatureDomain.from_layout(layout)
    x = torch.tensor([[2.0], [0.9]])
    clamped = domain.clamp(torch.tensor([[2.5], [1.2]]), x)
    assert clamped.flatten().tolist() == pytest.approx([2.0, 1.0])
    assert domain.clamp(torch.tensor([[1.5], [0.0]]), x).flatten().tolist() == pytest.approx([1.5, 0.0])


@pytest.mark.parametrize("notion", NOTIONS)
def test_unified_and_direct_attacks_coincide_inside_the_domain(credit, credit_model, notion):
    from robustfair.group.domain import FeatureDomain

    x, y, s = credit.test.x, credit.test.y, credit.test.s
    args = dict(
        eps=0.5,
        step_size=0.1,
        steps=5,
        norm="linf",
        start="zero",
        continuous_mask=credit.layout.continuous_mask(),
        domain=FeatureDomain.from_layout(credit.layout),
    )
    unified = fairness_attack(credit_model, x, y, s, notion=notion, **args)
    direct = direct_gap_attack(credit_model, x, y, s, notion=notion, **args)
    assert torch.allclose(unified, direct, atol=1e-6)


def test_the_bounded_domain_needs_domain_information():
    from robustfair.group.domain import FeatureDomain
    from robustfair.group.tabular import FeatureLayout

    with pytest.raises(ConfigError, match="attack.domain=unbounded"):
        FeatureDomain.from_layout(FeatureLayout(("a",), (0,), ()))
