"""Group-fairness gaps, accuracy and balanced accuracy against hand computations."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustfair.errors import ConfigError
from robustfair.group.metrics import (accuracy, balanced_accuracy, demographic_parity_gap, equal_opportunity_gap,
                                      equalized_odds_gap, fairness_gap, group_mean_difference, group_metrics)

# A tiny table: 4 rows in each group.
#   row:  0    1    2    3  |  4    5    6    7
#   s:    0    0    0    0  |  1    1    1    1
#   y:    1    1    0    0  |  1    1    0    1
#   p:   .9   .7   .4   .2  | .6   .3   .5   .1
P = torch.tensor([0.9, 0.7, 0.4, 0.2, 0.6, 0.3, 0.5, 0.1])
S = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
Y = torch.tensor([1, 1, 0, 0, 1, 1, 0, 1])


def test_demographic_parity_gap_by_hand():
    # E[p|s=0] = 2.2/4 = 0.55, E[p|s=1] = 1.5/4 = 0.375
    assert demographic_parity_gap(P, S).item() == pytest.approx(0.175, abs=1e-6)
    assert fairness_gap("dp", P, Y, S).item() == pytest.approx(0.175, abs=1e-6)


def test_equal_opportunity_gap_by_hand():
    # y = 1: s=0 rows 0, 1 -> 0.8; s=1 rows 4, 5, 7 -> 1.0/3
    assert equal_opportunity_gap(P, Y, S).item() == pytest.approx(0.8 - 1 / 3, abs=1e-6)


def test_equalized_odds_gap_is_the_sum_of_both_strata_by_hand():
    # y = 1 gap 0.8 - 1/3 (s=0 favoured); y = 0: s=0 rows 2, 3 -> 0.3, s=1 row 6 -> 0.5 (s=1 favoured)
    assert equalized_odds_gap(P, Y, S).item() == pytest.approx((0.8 - 1 / 3) + 0.2, abs=1e-6)


def test_signed_group_mean_difference():
    assert group_mean_difference(P, S).item() == pytest.approx(0.375 - 0.55, abs=1e-6)
    assert group_mean_difference(P, S, Y == 0).item() == pytest.approx(0.5 - 0.3, abs=1e-6)


def test_hard_prediction_metrics_by_hand():
    m = group_metrics(P, Y, S)
    # pred = p > 0.5 = [1,1,0,0,1,0,0,0]; correct on rows 0,1,2,3,4,6
    assert m["accuracy"] == pytest.approx(6 / 8)
    # TPR: y=1 rows 0,1,4,5,7 -> 3/5; TNR: rows 2,3,6 -> 3/3
    assert m["balanced_accuracy"] == pytest.approx((3 / 5 + 1) / 2)
    assert m["accuracy_by_group"] == {"0": pytest.approx(1.0), "1": pytest.approx(0.5)}
    # rates: DP 2/4 vs 1/4; EOpp 2/2 vs 1/3; EOdds y=0 stratum 0 vs 0
    assert m["gaps_hard"]["dp"] == pytest.approx(0.25)
    assert m["gaps_hard"]["eopp"] == pytest.approx(2 / 3)
    assert m["gaps_hard"]["eodds"] == pytest.approx(2 / 3)
    assert m["gaps"]["dp"] == pytest.approx(0.175, abs=1e-6)


def test_accuracy_and_balanced_accuracy():
    y = torch.tensor([1, 0, 0, 0])
    pred = torch.tensor([0, 0, 0, 0])
    assert accuracy(pred, y) == pytest.approx(0.75)
    assert balanced_accuracy(pred, y) == pytest.approx(0.5)
    assert balanced_accuracy(torch.tensor([0, 0]), torch.tensor([0, 0])) == pytest.approx(1.0)


def test_stratum_missing_a_group_contributes_zero():
    s = torch.tensor([0, 0, 1, 1])
    y = torch.tensor([1, 1, 0, 0])  # no y=1 row in group 1
    p = torch.tensor([0.9, 0.8, 0.1, 0.2], requires_grad=True)
    gap = equal_opportunity_gap(p, y, s)
    assert gap.item() == 0.0
    gap.backward()  # still differentiable, with zero gradient
    assert torch.equal(p.grad, torch.zeros(4))
    # equalized odds keeps only the y=0 stratum, which also lacks group 0: 0
    assert equalized_odds_gap(p, y, s).item() == 0.0


def test_gap_is_differentiable_with_the_group_mean_gradient():
    p = P.clone().requires_grad_(True)
    demographic_parity_gap(p, S).backward()
    # s=0 favoured: d gap / d p_i = +1/4 for s=0 rows, -1/4 for s=1 rows
    assert torch.allclose(p.grad, torch.tensor([0.25] * 4 + [-0.25] * 4))


def test_unknown_notion_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="dp, eopp, eodds"):
        fairness_gap("parity", P, Y, S)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1), st.integers(0, 1)), min_size=4, max_size=30))
def test_gaps_match_an_independent_python_computation(rows):
    p = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    y = torch.tensor([r[1] for r in rows])
    s = torch.tensor([r[2] for r in rows])

    def mean_gap(keep):
        a = [r[0] for r in rows if keep(r) and r[2] == 0]
        b = [r[0] for r in rows if keep(r) and r[2] == 1]
        return abs(sum(a) / len(a) - sum(b) / len(b)) if a and b else 0.0

    assert fairness_gap("dp", p, y, s).item() == pytest.approx(mean_gap(lambda r: True), abs=1e-9)
    assert fairness_gap("eopp", p, y, s).item() == pytest.approx(mean_gap(lambda r: r[1] == 1), abs=1e-9)
    assert fairness_gap("eodds", p, y, s).item() == pytest.approx(
        mean_gap(lambda r: r[1] == 0) + mean_gap(lambda r: r[1] == 1), abs=1e-9)
