"""PGD restarts: the masked (fixed-shape, sync-free: CUDA) and compact (CPU) variants agree.

The compact variant re-attacks only the samples not yet fooled (gathered with
`torch.nonzero`, one host synchronisation per restart); the masked one re-attacks the
whole batch and keeps results by mask. Both draw each restart's start for the whole batch,
so they must return exactly the same points and logits (float64, batch-independent
rounding: `prototype_data.rowwise_mlp`).
"""

from __future__ import annotations

import pytest
import torch

from prototype_data import NUM_CLASSES, make_data, rowwise_mlp
from robustfair.attacks import pgd
from robustfair.errors import ConfigError


@pytest.fixture(scope="module")
def setup():
    x, y = make_data(40, seed=5)
    return rowwise_mlp(), x.double(), y


def _run(model, x, y, variant, **kwargs):
    generator = torch.Generator().manual_seed(3)
    return pgd(model, x, y, generator=generator, restart_variant=variant, return_logits=True, **kwargs)


@pytest.mark.parametrize(
    "options",
    [
        dict(eps=0.08, step_size=0.02, steps=4, restarts=4),
        dict(eps=0.08, step_size=0.02, steps=3, restarts=3, loss="margin"),
        dict(eps=0.08, step_size=0.02, steps=3, restarts=3, loss="kl", start="normal"),
        dict(eps=0.5, step_size=0.1, steps=3, restarts=3, norm="l2"),
        dict(eps=0.1, step_size=0.03, steps=3, restarts=3, targeted=True),
    ],
    ids=["ce", "margin", "kl", "l2", "targeted"],
)
def test_restart_variants_return_the_same_points(setup, options):
    model, x, y = setup
    if options.get("targeted"):
        options = dict(options, target=(y + 1) % NUM_CLASSES)
    x_c, logits_c = _run(model, x, y, "compact", **options)
    x_m, logits_m = _run(model, x, y, "masked", **options)
    assert torch.equal(x_c, x_m) and torch.equal(logits_c, logits_m)
    # Restarts mattered: some samples resisted the first run and were fooled by a later one.
    first, _ = pgd(
        model, x, y, generator=torch.Generator().manual_seed(3), return_logits=True, **dict(options, restarts=1)
    )
    assert not torch.equal(first, x_c)


def test_per_sample_budgets_and_bad_variant(setup):
    model, x, y = setup
    eps = torch.full((len(x),), 0.08, dtype=torch.float64)
    eps[::2] = 0.04
    a = _run(model, x, y, "compact", eps=eps, step_size=eps / 4, steps=3, restarts=3)
    b = _run(model, x, y, "masked", eps=eps, step_size=eps / 4, steps=3, restarts=3)
    assert torch.equal(a[0], b[0])
    with pytest.raises(ConfigError, match="restart_variant"):
        pgd(model, x, y, eps=0.1, step_size=0.02, steps=1, restart_variant="lazy")
    with pytest.raises(ConfigError, match="finite"):
        pgd(model, x, y, eps=torch.full((len(x),), float("nan")), step_size=0.01, steps=1)
