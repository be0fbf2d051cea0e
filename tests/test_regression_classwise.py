"""Slow regression test: short digits runs reproduce their stored class-wise numbers.

`tests/reference/regression_digits.json` holds, for PGD-AT, TRADES, BAT and DAFA trained 3
epochs on digits (seed 0, one thread), the first epoch's mean training loss and each class's
clean and robust correct counts on the 450 test images (`tests/regression_reference.py`
made it, and says how to regenerate it when a change is meant to alter the numbers).

Tolerance, stated: the first-epoch loss within a relative 1e-4 (float rounding across BLAS
builds and CPUs stays far below this; a change in a method's attack start, forward order or
loss moves it by more), and every class's clean and robust counts within 1 image of the
stored ones (a different summation order can flip a sample sitting exactly on a decision
boundary; a change in what a method computes moves several classes by more).
"""

from __future__ import annotations

import json

import pytest

from regression_reference import CASES, REFERENCE, measure

pytestmark = pytest.mark.slow
LOSS_RTOL = 1e-4
COUNT_TOLERANCE = 1


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.fail(f"{REFERENCE} is missing: run `python tests/regression_reference.py --write`")
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_short_run_reproduces_its_stored_classwise_numbers(name, reference, tmp_path):
    stored = reference[name]
    now = measure(name, tmp_path)
    assert now["count"] == stored["count"]
    assert now["first_epoch_loss"] == pytest.approx(stored["first_epoch_loss"], rel=LOSS_RTOL), (
        "the first epoch's training loss moved: the method computes something else"
    )
    for key in ("clean_correct", "robust_correct"):
        moved = [(c, a, b) for c, (a, b) in enumerate(zip(now[key], stored[key])) if abs(a - b) > COUNT_TOLERANCE]
        assert not moved, f"{key}: classes (class, now, stored) moved by more than {COUNT_TOLERANCE}: {moved}"


def test_the_tolerance_catches_a_changed_method(reference, tmp_path):
    """The check is not vacuous: TRADES with beta 1 instead of 6 fails it."""
    import regression_reference

    original = dict(regression_reference.CASES)
    regression_reference.CASES["trades"] = ("digits_trades", ("method.beta=1.0",))
    try:
        changed = measure("trades", tmp_path)
    finally:
        regression_reference.CASES.clear()
        regression_reference.CASES.update(original)
    stored = reference["trades"]
    loss_moved = changed["first_epoch_loss"] != pytest.approx(stored["first_epoch_loss"], rel=LOSS_RTOL)
    counts_moved = any(
        abs(a - b) > COUNT_TOLERANCE
        for key in ("clean_correct", "robust_correct")
        for a, b in zip(changed[key], stored[key])
    )
    assert loss_moved and counts_moved
