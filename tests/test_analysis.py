"""Source- and target-class fairness statistics pinned on a linear model in closed form.

Model: 3 classes, 2 inputs, logits z0 = 0, z1 = 2 x1 - 1, z2 = x2 - 0.5. For a sample of
class y the cross-entropy input gradient is sum_{j != y} p_j (w_j - w_y), whose sign does
not depend on the probabilities here: class 0 -> (+, +), class 1 -> (-, +), class 2 ->
(+, -). So every L-inf sign step of size a moves each coordinate by exactly a, the logits
move linearly, and the first misclassified step and the predicted class at every step
follow by hand (step a = 0.01, eps = 0.3 so the eps-box binds only for the censored ones):

    sample  y  x0             logits at step k                      flips at  target
    A       0  (0.305, 0.1)   z1 = -0.39 + .02k, z2 = -0.4 + .01k   20        1
    B       0  (0.1, 0.395)   z1 = -0.8 + .02k,  z2 = -0.105 + .01k 11        2
    C       0  (0.1, 0.1)     z1 <= -0.2, z2 <= -0.1 (box at 0.4)   never     -
    D       0  (0.6, 0.1)     z1 = 0.2 at the start                 0         1
    E       1  (0.605, 0.1)   z1 = 0.21 - .02k,  z2 = -0.4 + .01k   11        0
    F       1  (0.8, 0.45)    z1 = 0.6 - .02k,   z2 = -0.05 + .01k  22        2
    G       2  (0.1, 0.85)    z2 >= 0.05 (box at 0.55), z1 <= -0.2  never     -
    H       2  (0.45, 0.6)    z1 = -0.1 + .02k,  z2 = 0.1 - .01k    7         1
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robustfair.attacks import early_stopped_pgd
from robustfair.errors import ConfigError, DataError
from robustfair.metrics.analysis import (
    censored_steps,
    confusion_by_step,
    correlation,
    fairness_analysis,
    kl_to_uniform,
    steps_to_flip,
    steps_to_flip_by_class,
    target_distribution,
)

X0 = [(0.305, 0.1), (0.1, 0.395), (0.1, 0.1), (0.6, 0.1), (0.605, 0.1), (0.8, 0.45), (0.1, 0.85), (0.45, 0.6)]
Y = [0, 0, 0, 0, 1, 1, 2, 2]
FLIPS = [20, 11, -1, 0, 11, 22, -1, 7]
STEP, EPS, STEPS = 0.01, 0.3, 50


def linear_model() -> nn.Module:
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]]))
        model.bias.copy_(torch.tensor([0.0, -1.0, -0.5]))
    return model


def data() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(X0, dtype=torch.float32), torch.tensor(Y)


def closed_form_predictions(steps: int, step: float = STEP) -> np.ndarray:
    """[steps + 1, N] predicted classes along the sign-step trajectories, in float64."""
    directions = {0: (1, 1), 1: (-1, 1), 2: (1, -1)}
    out = np.zeros((steps + 1, len(Y)), dtype=np.int64)
    for i, ((a, b), y) in enumerate(zip(X0, Y)):
        da, db = directions[y]
        for k in range(steps + 1):
            x1 = np.clip(a + da * min(k * step, EPS), 0, 1)
            x2 = np.clip(b + db * min(k * step, EPS), 0, 1)
            logits = np.array([0.0, 2 * x1 - 1, x2 - 0.5])
            out[k, i] = int(np.argmax(logits))
    return out


def test_flip_steps_of_the_linear_model_match_the_hand_computed_ones():
    x, y = data()
    result = early_stopped_pgd(
        linear_model(), x, y, eps=EPS, step_size=STEP, steps=STEPS, loss="ce", start="none", mode="last_clean"
    )
    assert result.flip_step.tolist() == FLIPS


def test_segmented_steps_to_flip_equals_one_plain_run_and_skips_cycles():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    x = torch.rand(24, 1, 6, 6)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 3  # a few wrong at the start
    plain = early_stopped_pgd(
        model, x, y, eps=0.05, step_size=0.004, steps=120, loss="ce", start="none", mode="last_clean"
    )
    flips, evaluations = steps_to_flip(model, x, y, eps=0.05, step_size=0.004, steps=120, segment=10)
    assert flips.tolist() == plain.flip_step.tolist()
    assert (flips == 0).sum() >= 4 and (flips < 0).any() and (flips > 0).any()
    # Never-flipped samples settle into cycles on the eps-box and stop early.
    assert evaluations < plain.gradient_evaluations
    with pytest.raises(ConfigError, match="segment"):
        steps_to_flip(model, x, y, eps=0.05, step_size=0.004, steps=10, segment=3)


def test_steps_to_flip_statistics_per_class():
    stats = steps_to_flip_by_class(FLIPS, Y, num_classes=3, steps=STEPS)
    per_class = stats["per_class"]
    censored = STEPS + 1
    assert stats["censored_value"] == censored
    assert per_class["count"] == [4, 2, 2]
    assert per_class["mean_steps"] == pytest.approx([(20 + 11 + censored + 0) / 4, (11 + 22) / 2, (censored + 7) / 2])
    assert per_class["median_steps"] == pytest.approx([(11 + 20) / 2, 16.5, (7 + censored) / 2])
    assert per_class["mean_steps_clean_correct"] == pytest.approx([(20 + 11 + censored) / 3, 16.5, 29.0])
    assert per_class["mean_steps_flipped"] == pytest.approx([(20 + 11) / 2, 16.5, 7.0])
    assert per_class["never_flipped"] == pytest.approx([0.25, 0.0, 0.5])
    assert per_class["wrong_at_start"] == pytest.approx([0.25, 0.0, 0.0])
    assert stats["overall"]["mean_steps"] == pytest.approx((20 + 11 + 51 + 0 + 11 + 22 + 51 + 7) / 8)
    # Histogram of the flipped samples only: 6 of 8 flipped, class 0 holds 3 of them.
    counts = np.asarray(stats["histogram"]["counts"])
    assert counts.sum(1).tolist() == [3, 2, 1]
    edges = stats["histogram"]["edges"]
    assert edges[0] == 0 and edges[-1] == censored and len(edges) == 21


def test_mean_steps_is_the_sum_of_per_step_accuracy():
    """BAT: the steps measure integrates the per-step robust accuracy over the steps."""
    x, y = data()
    result = early_stopped_pgd(
        linear_model(),
        x,
        y,
        eps=EPS,
        step_size=STEP,
        steps=STEPS,
        loss="ce",
        start="none",
        mode="last_clean",
        record_predictions=True,
    )
    confusion = confusion_by_step(result.predictions, y, num_classes=3)
    per_step_acc = np.diagonal(confusion, axis1=1, axis2=2) / confusion[0].sum(1)
    stats = steps_to_flip_by_class(result.flip_step, y, num_classes=3, steps=STEPS)
    assert per_step_acc.sum(0) == pytest.approx(stats["per_class"]["mean_steps"])


def test_confusion_at_every_step_matches_the_closed_form_trajectories():
    x, y = data()
    result = early_stopped_pgd(
        linear_model(),
        x,
        y,
        eps=EPS,
        step_size=STEP,
        steps=25,
        loss="ce",
        start="none",
        early_stop=False,
        record_predictions=True,
    )
    expected = closed_form_predictions(25)
    assert result.predictions.numpy().tolist() == expected.tolist()
    confusion = confusion_by_step(result.predictions, y, num_classes=3)
    assert confusion.shape == (26, 3, 3)
    assert confusion[0].tolist() == [[3, 1, 0], [0, 2, 0], [0, 0, 2]]  # clean: only D wrong
    assert confusion[25].tolist() == [[1, 2, 1], [1, 0, 1], [0, 1, 1]]  # hand-computed at step 25
    assert (confusion.sum((1, 2)) == 8).all()


def test_target_distribution_and_kl_from_uniform():
    final = target_distribution([[1, 2, 1], [1, 0, 1], [0, 1, 1]])
    # Off-diagonal column sums (1, 3, 2) over 6 misclassifications.
    assert final["distribution"] == pytest.approx([1 / 6, 1 / 2, 1 / 3])
    assert final["kl_to_uniform"] == pytest.approx(1 / 6 * math.log(3 / 6) + 1 / 2 * math.log(3 / 2))
    assert final["per_source"][0] == pytest.approx([0.0, 2 / 3, 1 / 3])
    assert final["per_source"][1] == pytest.approx([0.5, 0.0, 0.5])
    assert final["per_source"][2] == pytest.approx([0.0, 1.0, 0.0])
    # Per source over the C - 1 = 2 other classes.
    assert final["per_source_kl"] == pytest.approx(
        [2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3), 0.0, math.log(2)]
    )
    assert final["top_target"] == [1, 0, 1]  # ties go to the lower index (class 1 splits 0 and 2)
    assert final["misclassified"] == [3, 2, 1]
    assert final["predicted"] == pytest.approx([2 / 8, 3 / 8, 3 / 8])


def test_target_distribution_of_a_class_never_misclassified_is_none():
    final = target_distribution([[5, 0], [2, 3]])
    assert final["per_source"][0] == [None, None]
    assert final["per_source_kl"][0] is None and final["top_target"][0] is None
    assert final["per_source"][1] == [1.0, 0.0] and final["per_source_kl"][1] == 0.0
    assert target_distribution([[4, 0], [0, 4]])["kl_to_uniform"] is None


def test_kl_to_uniform():
    assert kl_to_uniform([0.25, 0.25, 0.25, 0.25]) == pytest.approx(0.0)
    assert kl_to_uniform([1, 0, 0, 0]) == pytest.approx(math.log(4))
    assert kl_to_uniform([2, 2, 0, 0]) == pytest.approx(math.log(2))  # normalised first
    assert math.isnan(kl_to_uniform([0, 0]))


def test_correlation_pearson_spearman_and_undefined_cases():
    r = correlation([1, 2, 3, 4], [2, 4, 6, 8])
    assert r == {"pearson": pytest.approx(1.0), "spearman": pytest.approx(1.0), "n": 4}
    r = correlation([1, 2, 3, 4], [1, 4, 9, 100])  # monotone, not linear
    assert r["spearman"] == pytest.approx(1.0) and r["pearson"] < 0.95
    r = correlation([1, 2, None, 4], [3, 2, 5, 1])  # the None pair is dropped
    assert r["n"] == 3 and r["pearson"] == pytest.approx(-0.9819805060619657)  # scipy.stats.pearsonr
    assert r["spearman"] == pytest.approx(-1.0)
    assert correlation([1, 1, 1], [1, 2, 3])["pearson"] is None
    assert correlation([1, 2], [1, 2])["pearson"] is None
    # Spearman with ties uses average ranks: ranks (1.5, 1.5, 3) vs (1, 2, 3).
    assert correlation([1, 1, 2], [1, 2, 3])["spearman"] == pytest.approx(0.8660254037844387)


def test_fairness_analysis_end_to_end_on_the_linear_model():
    x, y = data()
    record = fairness_analysis(
        linear_model(),
        [(x, y)],
        num_classes=3,
        eps=EPS,
        classes=["a", "b", "c"],
        steps=STEPS,
        step_size=STEP,
        target_steps=25,
        target_step_size=STEP,
    )
    assert record["source"]["flip_step"] == FLIPS and record["source"]["labels"] == Y
    assert record["num_samples"] == 8 and record["classes"] == ["a", "b", "c"]
    per_class = record["per_class"]
    assert per_class["clean_acc"] == pytest.approx([0.75, 1.0, 1.0])
    # Correct clean and at step 25: C (class 0; D is wrong clean), none of class 1, G (class 2).
    assert per_class["robust_acc"] == pytest.approx([0.25, 0.0, 0.5])
    assert per_class["top_target"] == [1, 0, 1] and per_class["misclassified"] == [3, 2, 1]
    assert record["target"]["distribution"] == pytest.approx([1 / 6, 1 / 2, 1 / 3])
    assert len(record["target"]["kl_by_step"]) == 26
    assert record["target"]["kl_by_step"][0] == pytest.approx(math.log(3))  # clean: D's one target, class 1
    expected = correlation(per_class["mean_steps"], per_class["robust_acc"])
    assert record["correlations"]["steps_vs_robust_acc"] == expected
    assert set(record["correlations"]) == {
        "steps_vs_robust_acc",
        "flipped_steps_vs_robust_acc",
        "target_kl_vs_robust_acc",
        "target_share_vs_robust_acc",
    }
    # Per-source KL (0.0566, 0, log 2) against robust accuracy (0.25, 0, 0.5): ranks agree.
    assert record["correlations"]["target_kl_vs_robust_acc"]["spearman"] == pytest.approx(1.0)
    # Early stopping: the source attack evaluated only what each sample needed.
    needed = sum(f + 1 if 0 <= f < STEPS else STEPS for f in FLIPS)
    assert record["source"]["attack"]["gradient_evaluations"] == needed


def test_fairness_analysis_defaults_scale_with_eps_and_reads_datasets():
    class Dataset:
        x = np.array([[int(0.305 * 255), 25], [153, 25]], dtype=np.uint8)
        y = np.array([0, 0])

    record = fairness_analysis(linear_model(), Dataset(), num_classes=3, eps=8 / 255, steps=5, target_steps=2)
    assert record["source"]["attack"]["step_size"] == pytest.approx(0.4 / 255)
    assert record["target"]["attack"]["step_size"] == pytest.approx(2 / 255)
    assert record["source"]["flip_step"][1] == 0  # 153/255 = 0.6: z1 = 0.2 > 0 at the start


def test_bad_input_is_rejected_with_the_field_named():
    x, y = data()
    with pytest.raises(ConfigError, match="steps"):
        fairness_analysis(linear_model(), [(x, y)], num_classes=3, eps=EPS, steps=0)
    with pytest.raises(ConfigError, match="eps"):
        fairness_analysis(linear_model(), [(x, y)], num_classes=3, eps=0.0)
    with pytest.raises(ConfigError, match="kl"):
        fairness_analysis(linear_model(), [(x, y)], num_classes=3, eps=EPS, loss="kl")
    with pytest.raises(DataError, match="flip_step"):
        censored_steps([5, 60], steps=50)
    with pytest.raises(DataError, match="labels"):
        steps_to_flip_by_class([1, 2], [0, 3], num_classes=3, steps=5)
    with pytest.raises(DataError, match="no samples"):
        fairness_analysis(linear_model(), [], num_classes=3, eps=EPS)
