"""The distinctive formulas of the peer methods, pinned to hand or brute-force computations."""

import math

import numpy as np
import pytest
import torch

from robustfair.errors import ConfigError
from robustfair.losses.peers import (
    cfa_class_beta,
    cfa_class_eps_scale,
    classwise_counts,
    classwise_sums,
    dafa_class_weights,
    error_margins,
    faal_class_weights,
    gairat_weights,
    hedge_weights,
    inverse_accuracy_weights,
    margin_adjusted_logits,
)


def test_gairat_weights_by_hand():
    kappa = torch.tensor([0.0, 5.0, 10.0, 3.0])
    # K = 10, lambda = -1: raw w = (1 + tanh(-1 + (5 - kappa) * 5 / 5)) / 2 = (1 + tanh(4 - kappa)) / 2
    raw = [(1 + math.tanh(4.0)) / 2, (1 + math.tanh(-1.0)) / 2, (1 + math.tanh(-6.0)) / 2, (1 + math.tanh(1.0)) / 2]
    expected = [r * 4 / sum(raw) for r in raw]
    got = gairat_weights(kappa, steps=10, lam=-1.0)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    assert got.mean().item() == pytest.approx(1.0, rel=1e-6)
    # the most attackable sample (kappa 0) weighs the most, the most guarded the least
    assert got[0] > got[3] > got[1] > got[2]


def test_gairat_odd_steps_use_floor_half_like_the_code():
    # K = 5: h = 2, raw w = (1 + tanh(0 + (2 - kappa) * 5 / 2)) / 2
    kappa = torch.tensor([1.0, 4.0])
    raw = [(1 + math.tanh(2.5)) / 2, (1 + math.tanh(-5.0)) / 2]
    got = gairat_weights(kappa, steps=5, lam=0.0)
    assert got.tolist() == pytest.approx([r * 2 / sum(raw) for r in raw], rel=1e-6)


def test_gairat_infinite_lambda_is_uniform_and_bad_steps_rejected():
    assert gairat_weights(torch.tensor([0.0, 9.0]), steps=10, lam=math.inf).tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="steps"):
        gairat_weights(torch.tensor([0.0]), steps=1, lam=-1.0)


def test_cfa_eps_and_beta_by_hand():
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    assert cfa_class_eps_scale(t).tolist() == pytest.approx([0.7, 1.0, 1.3])
    # beta_k = (0.5 + t_k) 6 / (1 + (0.5 + t_k) 6)
    assert cfa_class_beta(t, beta=6.0).tolist() == pytest.approx([4.2 / 5.2, 6.0 / 7.0, 7.8 / 8.8])
    # t = 0.5 everywhere recovers TRADES' beta / (1 + beta) normalisation
    assert cfa_class_beta(torch.full((2,), 0.5), beta=1.0).tolist() == pytest.approx([0.5, 0.5])


def test_hedge_step_by_hand():
    # two classes + the mean loss; two epochs of validation costs accumulate
    first = torch.tensor([1.0, 2.0, 1.5], dtype=torch.float64)
    second = torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)
    cumulative = first + second  # [1.5, 2.0, 2.5]
    e = [math.exp(0.1 * 1.5), math.exp(0.1 * 2.0), math.exp(0.1 * 2.5)]
    expected = [2 * v / sum(e) for v in e]
    got = hedge_weights(cumulative, eta=0.1, num_classes=2)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    assert got.sum().item() == pytest.approx(2.0)
    with pytest.raises(ConfigError, match=r"\[3\]"):
        hedge_weights(torch.zeros(2), eta=0.1, num_classes=2)


P = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.25, 0.25, 0.5]]


def _dafa_by_loops(p, lam, rule):
    c = len(p)
    w = [1.0] * c
    for i in range(c):
        for j in range(c):
            if i == j:
                continue
            if p[i][i] < p[j][j]:
                w[i] += lam * p[i][j] * p[j][j]
            elif rule == "early_code":
                w[i] -= lam * p[i][j] * p[j][j]
            else:  # the current official code (rucy74/DAFA@74657cd) and the paper
                w[i] -= lam * p[j][i] * p[i][i]
    return w


@pytest.mark.parametrize("rule", ["code", "paper", "early_code"])
def test_dafa_weights_match_explicit_double_loop(rule):
    got = dafa_class_weights(torch.tensor(P, dtype=torch.float64), lam=1.0, rule=rule)
    assert got.tolist() == pytest.approx(_dafa_by_loops(P, 1.0, rule), rel=1e-12)


def test_dafa_weights_hand_values():
    # default (current official code = paper), class 0 (p00 = 0.6): harder than class 1
    # (0.7): + p01 p11 = 0.3 * 0.7 = 0.21; easier than class 2 (0.5): - p20 p00 = 0.25 * 0.6
    # = 0.15 -> 1.06. Class 1 (easiest): - p01 p11 - p21 p11 = -(0.3 + 0.25) * 0.7 -> 0.615.
    # Class 2: + p20 p00 + p21 p11 = 0.25 * 0.6 + 0.25 * 0.7 -> 1.325. Total 3.
    for rule in ("code", "paper"):
        weights = dafa_class_weights(torch.tensor(P, dtype=torch.float64), lam=1.0, rule=rule)
        assert weights.tolist() == pytest.approx([1.06, 0.615, 1.325])
        assert weights.sum().item() == pytest.approx(3.0)  # weight moves between classes, the total stays
    assert dafa_class_weights(torch.tensor(P, dtype=torch.float64), lam=1.0).tolist() == pytest.approx(
        [1.06, 0.615, 1.325]
    )
    # the code before September 2024, class 0: + 0.21 - p02 p22 = 0.1 * 0.5 = 0.05 -> 1.16
    early = dafa_class_weights(torch.tensor(P, dtype=torch.float64), lam=1.0, rule="early_code")
    assert early[0].item() == pytest.approx(1.16)
    with pytest.raises(ConfigError, match="weight_rule"):
        dafa_class_weights(torch.tensor(P), lam=1.0, rule="other")


def _kl_uniform(p):
    c = p.shape[-1]
    return -math.log(c) - np.log(p).mean(axis=-1)


@pytest.mark.parametrize(
    "scores,radius",
    [
        ([0.3, -0.2, 1.1], 0.5),
        ([2.0, 2.5, 0.0], 0.1),
        ([-1.0, 0.4, 0.45], 1.5),
    ],
)
def test_faal_matches_brute_force_grid_on_the_simplex(scores, radius):
    step = 0.001
    a = np.arange(step, 1.0, step)
    p0, p1 = np.meshgrid(a, a, indexing="ij")
    p2 = 1.0 - p0 - p1
    keep = p2 > step / 2
    grid = np.stack([p0[keep], p1[keep], p2[keep]], axis=1)
    feasible = grid[_kl_uniform(grid) <= radius]
    m = np.array(scores)
    best = (feasible @ m).max()

    p = faal_class_weights(torch.tensor(scores), radius).numpy()
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p > 0).all()
    assert _kl_uniform(p) <= radius + 1e-9  # feasible
    value = p @ m
    spread = m.max() - m.min()
    assert value >= best - 1e-9  # at least as good as every feasible grid point
    assert value <= best + 0.01 * spread  # and the grid gets within its resolution
    assert _kl_uniform(p) == pytest.approx(radius, abs=1e-6)  # the constraint is active


def test_faal_absent_classes_equal_uniform_and_zero_radius():
    scores = torch.tensor([0.3, 5.0, -0.2, 1.1])
    present = torch.tensor([True, False, True, True])
    p = faal_class_weights(scores, 0.5, present)
    assert p[1].item() == 0.0
    three = faal_class_weights(torch.tensor([0.3, -0.2, 1.1]), 0.5)
    assert p[[0, 2, 3]].tolist() == pytest.approx(three.tolist(), rel=1e-9)
    assert faal_class_weights(torch.tensor([1.0, 1.0, 1.0]), 0.5).tolist() == pytest.approx([1 / 3] * 3)
    assert faal_class_weights(torch.tensor([0.0, 1.0]), 0.0).tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(ConfigError, match="radius"):
        faal_class_weights(scores, -1.0)


def test_inverse_accuracy_weights_and_margins_by_hand():
    w = inverse_accuracy_weights(torch.tensor([0.5, 0.25, 1.0]), floor=0.05)
    assert w.tolist() == pytest.approx([6 / 7, 12 / 7, 3 / 7])  # raw [2, 4, 1], mean 7/3
    assert inverse_accuracy_weights(torch.tensor([0.0, 0.1]), floor=0.05).tolist() == pytest.approx([4 / 3, 2 / 3])
    assert error_margins(torch.tensor([0.2, 0.4, 0.0]), max_margin=0.5).tolist() == pytest.approx([0.25, 0.5, 0.0])
    assert error_margins(torch.zeros(3), max_margin=0.5).tolist() == [0.0, 0.0, 0.0]
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    out = margin_adjusted_logits(logits, torch.tensor([2, 0]), torch.tensor([0.1, 0.2, 0.3]))
    assert out.flatten().tolist() == pytest.approx([1.0, 2.0, 2.7, -0.1, 0.0, 0.0])


def test_classwise_sums_and_counts():
    y = torch.tensor([0, 2, 2, 0, 2])
    assert classwise_sums(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), y, 3).tolist() == [5.0, 0.0, 10.0]
    probs = torch.eye(3)[[1, 0, 0, 1, 2]]
    assert classwise_sums(probs, y, 3).tolist() == [[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 1.0]]
    assert classwise_counts(y, 3).tolist() == [2.0, 0.0, 3.0]
