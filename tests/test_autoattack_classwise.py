"""AutoAttack class-wise: which component broke each sample first, per class, checked against
AutoAttack's own runs (skips cleanly without the `autoattack` extra)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from robustfair.metrics import evaluate_classwise

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyautoattack") is None,
    reason="pyautoattack is not installed (pip install robustfair[autoattack])",
)

EPS = 0.05
COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")


class Mixed(nn.Module):
    """Linear logits plus a staircase term whose gradient is zero: gradient attacks see only the
    linear part, Square (gradient-free) also the steps, so different components break different
    samples. x: [B, 3, 2, 2] in [0, 1] -> logits [B, 4]."""

    def __init__(self, seed: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(4, 12, generator=g))
        self.v = nn.Parameter(torch.randn(4, 12, generator=g) * 3)

    def forward(self, x):
        f = x.flatten(1)
        return f @ self.w.T + torch.floor(f * 8) / 8 @ self.v.T


def model_and_data(seed: int = 4):
    """4 samples of each class the model predicts (one relabelled, so one clean mistake)."""
    model = Mixed(seed).eval()
    pool = torch.rand(400, 3, 2, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = model(pool).argmax(1)
    index = torch.cat([torch.nonzero(pred == c).squeeze(1)[:4] for c in range(4)])
    x, y = pool[index], pred[index].clone()
    y[0] = (y[0] + 1) % 4
    return model, x, y


def own_autoattack(model, x, y, attacks):
    """AutoAttack's own `run_standard_evaluation` with the standard settings, the target classes
    capped at C - 1 = 3 as robustfair does, running the first components `attacks`."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=0)
    adversary.apgd_targeted.n_target_classes = 3
    adversary.fab.n_target_classes = 3
    adversary.attacks_to_run = list(attacks)
    with torch.random.fork_rng():
        return adversary.run_standard_evaluation(x, y, batch_size=500)


@pytest.fixture(scope="module")
def result_and_data():
    torch.set_num_threads(1)
    model, x, y = model_and_data()
    result = evaluate_classwise(model, [(x, y)], attack="autoattack", eps=EPS, num_classes=4, device="cpu", seed=0)
    return result, model, x, y


def test_the_per_class_component_table_is_pinned(result_and_data):
    result, _, _, y = result_and_data
    table = result.to_dict()["broken_by"]
    assert list(table) == ["misclassified_clean", *COMPONENTS, "robust"]
    # rows = classes 0..3; measured once with pyautoattack 0.2.0 on this model and seed
    assert {name: list(column) for name, column in table.items()} == {
        "misclassified_clean": [0, 1, 0, 0],
        "apgd-ce": [2, 0, 0, 3],
        "apgd-t": [0, 1, 0, 1],
        "fab-t": [0, 0, 0, 0],
        "square": [1, 1, 0, 0],
        "robust": [0, 2, 4, 0],
    }
    assert np.array_equal(sum(np.asarray(c) for c in table.values()), result.count)
    assert np.array_equal(table["robust"], result.robust_correct)
    assert np.array_equal(table["misclassified_clean"], result.count - np.diag(result.clean_confusion))
    attack = result.attack
    assert attack["components"] == list(COMPONENTS) and attack["seed"] == 0 and attack["norm"] == "linf"
    assert attack["settings"]["apgd-t"]["target_classes"] == 3 and attack["settings"]["square"]["queries"] == 5000
    assert attack["implementation"].startswith("pyautoattack ")


def test_the_table_agrees_with_autoattacks_own_runs(result_and_data):
    """The final robust flags are AutoAttack's, and the robust counts after the first k
    components (AutoAttack run with only those) are the table's cumulative columns."""
    result, model, x, y = result_and_data
    table = result.to_dict()["broken_by"]
    x_adv, y_adv = own_autoattack(model, x, y, COMPONENTS)
    robust = (y_adv == y).numpy()
    assert np.array_equal(np.bincount(y.numpy()[robust], minlength=4), table["robust"])
    with torch.no_grad():
        adversarial = model(x_adv).argmax(1)
    assert np.array_equal(
        np.bincount(y.numpy() * 4 + adversarial.numpy(), minlength=16).reshape(4, 4), result.adversarial_confusion
    )
    for k in (1, 2):
        _, y_prefix = own_autoattack(model, x, y, COMPONENTS[:k])
        still = (y_prefix == y).numpy()
        broken_so_far = sum(np.asarray(table[name]) for name in COMPONENTS[:k])
        expected = result.count - np.asarray(table["misclassified_clean"]) - broken_so_far
        assert np.array_equal(np.bincount(y.numpy()[still], minlength=4), expected), k
