"""Group-fairness gaps, accuracy and balanced accuracy against hand computations."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustfair.errors import ConfigError
from robustfair.group.metrics import (
    accuracy,
    balanced_accuracy,
    demographic_parity_gap,
    equal_opportunity_gap,
    equalized_odds_gap,
    fairness_gap,
    group_mean_difference,
    group_metrics,
)

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
        mean_gap(lambda r: r[1] == 0) + mean_gap(lambda r: r[1] == 1), abs=1e-9
    )


# ---- evaluation-level numbers: per-group rates, direction, undefined gaps ----


def test_per_group_rates_and_direction_by_hand():
    m = group_metrics(P, Y, S, group_names=("a", "b"))
    # decisions [1,1,0,0 | 1,0,0,0]: group a selects 2/4, TPR 2/2, FPR 0/2; group b 1/4, TPR 1/3, FPR 0/1
    a, b = m["groups"]["0"], m["groups"]["1"]
    assert (a["name"], a["rows"], a["positives"], b["rows"], b["positives"]) == ("a", 4, 2, 4, 3)
    assert a["hard"] == {"selection_rate": 0.5, "tpr": 1.0, "fpr": 0.0, "accuracy": 1.0}
    assert b["hard"] == pytest.approx({"selection_rate": 0.25, "tpr": 1 / 3, "fpr": 0.0, "accuracy": 0.5})
    assert a["soft"] == pytest.approx({"selection_rate": 0.55, "tpr": 0.8, "fpr": 0.3})
    assert b["soft"] == pytest.approx({"selection_rate": 0.375, "tpr": 1 / 3, "fpr": 0.5})
    # hard: a higher everywhere it differs; soft EOdds: TPR favours a, FPR favours b
    assert m["direction"]["hard"] == {"dp": "a", "eopp": "a", "eodds": "a"}
    assert m["direction"]["soft"] == {"dp": "a", "eopp": "a", "eodds": "mixed"}
    assert m["undefined"] == {}
    equal = group_metrics(torch.tensor([0.9, 0.1, 0.9, 0.1]), torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]))
    assert equal["direction"]["hard"]["dp"] == "none" and equal["gaps_hard"]["dp"] == 0.0


def test_an_empty_stratum_is_undefined_with_a_reason_never_zero():
    s = torch.tensor([0, 0, 1, 1])
    y = torch.tensor([1, 0, 0, 0])  # no positive row in group 1
    m = group_metrics(torch.tensor([0.9, 0.2, 0.3, 0.1]), y, s, group_names=("a", "b"))
    assert m["gaps"]["eopp"] is None and m["gaps_hard"]["eodds"] is None
    assert m["gaps_hard"]["dp"] == pytest.approx(0.5)  # DP still defined
    assert m["undefined"] == {
        "eopp": "no positive rows (y=1) of group 'b' (s=1) in this set",
        "eodds": "no positive rows (y=1) of group 'b' (s=1) in this set",
    }
    assert m["groups"]["1"]["hard"]["tpr"] is None and m["direction"]["hard"]["eopp"] is None


# ---- bootstrap intervals ----


def _table(n, seed):
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(n, generator=g) < 0.4).long()
    y = (torch.rand(n, generator=g) < 0.3 + 0.3 * s).long()
    p = (0.25 + 0.3 * s + 0.3 * y + 0.2 * torch.rand(n, generator=g)).clamp(0, 1).double()
    return p.numpy(), (p.numpy() > 0.5).astype(float), y.numpy(), s.numpy()


def test_bootstrap_interval_matches_an_independent_computation():
    import numpy as np

    from robustfair.group.bootstrap import bootstrap_intervals, resample_weights

    p, pred, y, s = _table(300, 0)
    got = bootstrap_intervals({"c": (p, pred)}, y, s, resamples=200, seed=7, level=0.9)["c"]
    weights = np.concatenate(list(resample_weights(300, 200, 7)))
    assert weights.shape == (200, 300) and (weights.sum(1) == 300).all()

    def rate(w, v, keep):
        return (w * v * keep).sum() / (w * keep).sum()

    point = rate(np.ones(300), pred, s == 1) - rate(np.ones(300), pred, s == 0)
    draws = [np.sign(point) * (rate(w, pred, s == 1) - rate(w, pred, s == 0)) for w in weights]
    tpr = [rate(w, p, (s == 1) & (y == 1)) - rate(w, p, (s == 0) & (y == 1)) for w in weights]
    low, high = np.quantile(draws, [0.05, 0.95])
    assert got["hard"]["dp"] == pytest.approx([max(low, 0), high])
    soft_point = rate(np.ones(300), p, (s == 1) & (y == 1)) - rate(np.ones(300), p, (s == 0) & (y == 1))
    low, high = np.quantile(np.sign(soft_point) * np.array(tpr), [0.05, 0.95])
    assert got["soft"]["eopp"] == pytest.approx([max(low, 0), high])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_interval_contains_the_point_estimate_and_shrinks_with_more_rows(seed):
    from robustfair.group.bootstrap import bootstrap_intervals, point_gaps

    widths = []
    for n in (400, 6400):
        p, pred, y, s = _table(n, seed)
        intervals = bootstrap_intervals({"c": (p, pred)}, y, s, resamples=400, seed=seed, level=0.95)["c"]
        point = point_gaps(p, pred, y, s)
        for kind in ("hard", "soft"):
            for notion in ("dp", "eopp", "eodds"):
                low, high = intervals[kind][notion]
                assert low <= point[kind][notion] <= high, (n, kind, notion)
        widths.append(intervals["hard"]["dp"][1] - intervals["hard"]["dp"][0])
    assert widths[1] < 0.5 * widths[0]  # 16x the rows: about 1/4 the width


def test_bootstrap_is_seeded():
    from robustfair.group.bootstrap import bootstrap_intervals

    p, pred, y, s = _table(300, 3)
    run = [bootstrap_intervals({"c": (p, pred)}, y, s, resamples=100, seed=k, level=0.95)["c"] for k in (1, 1, 2)]
    assert run[0] == run[1] and run[0] != run[2]


# ---- cross-check with fairlearn (test-time only; robustfair never imports it) ----


def test_hard_and_soft_gaps_agree_with_fairlearn():
    metrics = pytest.importorskip("fairlearn.metrics", reason="fairlearn not installed (a test-time cross-check)")
    import numpy as np

    p, pred, y, s = _table(500, 4)
    m = group_metrics(torch.from_numpy(p), torch.from_numpy(y), torch.from_numpy(s))
    kw = {"sensitive_features": s}
    assert m["gaps_hard"]["dp"] == pytest.approx(metrics.demographic_parity_difference(y, pred, **kw), abs=1e-12)
    assert m["gaps_hard"]["eopp"] == pytest.approx(metrics.equal_opportunity_difference(y, pred, **kw), abs=1e-12)
    # robustfair's EOdds is the SUM of the TPR and FPR differences: twice fairlearn's mean form
    assert m["gaps_hard"]["eodds"] == pytest.approx(
        2 * metrics.equalized_odds_difference(y, pred, agg="mean", **kw), abs=1e-12
    )
    frame = metrics.MetricFrame(
        metrics={"sel": metrics.selection_rate, "tpr": metrics.true_positive_rate, "fpr": metrics.false_positive_rate},
        y_true=y,
        y_pred=pred,
        **kw,
    )
    for g in (0, 1):
        hard = m["groups"][str(g)]["hard"]
        assert [hard["selection_rate"], hard["tpr"], hard["fpr"]] == pytest.approx(
            list(frame.by_group.loc[g, ["sel", "tpr", "fpr"]]), abs=1e-12
        )
    mean = metrics.MetricFrame(metrics=lambda yt, yp: float(np.mean(yp)), y_true=y, y_pred=p, **kw)
    assert m["gaps"]["dp"] == pytest.approx(mean.difference(), abs=1e-12)
