"""The masked (fixed-shape, sync-free: CUDA) and compact (CPU) early-stopped attacks agree.

Both variants of `early_stopped_pgd` must return the same points, flip steps, counters,
counts and predictions for every objective and option, and the methods built on them
(BAT, FAT, GAIRAT, the fairness analysis) must compute the same losses and logs. Run on
the CPU in float64 with a network whose layers reduce row by row (`RowwiseLinear`): a
sample's outputs and gradients are then bit-for-bit independent of which other samples
share its batch (a BLAS matmul's rounding can depend on the batch size), so the two
variants are compared for exact equality.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prototype_data import NUM_CLASSES, make_data, rowwise_mlp
from robustfair.attacks import early_stop_variant, early_stopped_pgd
from robustfair.attacks.early_stop import resolve_variant
from robustfair.errors import ConfigError
from robustfair.methods import METHODS

EPS, STEP, K = 0.15, 0.02, 8
FIELDS = (
    "flip_step",
    "last_clean",
    "first_adv",
    "last_iterate",
    "correct_steps",
    "passes_count",
    "gradient_evaluations_count",
)


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    return rowwise_mlp()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = make_data(30, seed=2)
    x = x.double()
    y[:3] = (y[:3] + 1) % NUM_CLASSES  # wrong at the start
    x0 = (x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)).clamp(0, 1)
    return x, y, x0


def _both(model, x, y, **kwargs):
    """Run both variants with identical generator seeds; returns (compact, masked)."""
    results = []
    for variant in ("compact", "masked"):
        options = dict(kwargs)
        if "seed" in options:
            options["generator"] = torch.Generator().manual_seed(options.pop("seed"))
        results.append(early_stopped_pgd(model, x, y, variant=variant, **options))
    return results


def _assert_identical(compact, masked) -> None:
    assert compact.variant == "compact" and masked.variant == "masked"
    for name in FIELDS:
        a, b = getattr(compact, name), getattr(masked, name)
        assert torch.equal(a, b), name
    if compact.predictions is None:
        assert masked.predictions is None
    else:
        assert torch.equal(compact.predictions, masked.predictions)
    assert compact.passes == masked.passes and compact.gradient_evaluations == masked.gradient_evaluations


def _margin_callable(logits_adv, labels, logits_clean):
    other = logits_adv.clone()
    other[torch.arange(len(labels)), labels] = -torch.inf
    return other.amax(1) - logits_adv.gather(1, labels[:, None]).squeeze(1)


def _clean_kl_callable(logits_adv, labels, logits_clean):
    p = logits_clean.softmax(1)
    return (p * (logits_clean.log_softmax(1) - logits_adv.log_softmax(1))).sum(1)


_clean_kl_callable.needs_clean_logits = True

OBJECTIVES = ["ce", "kl", "margin", _margin_callable, _clean_kl_callable]


@pytest.mark.parametrize("loss", OBJECTIVES, ids=lambda v: v if isinstance(v, str) else v.__name__)
@pytest.mark.parametrize("tau,mode", [(0, "both"), (1, "both"), (2, "first_adv"), (0, "last_clean")])
@pytest.mark.parametrize(
    "early_stop,check_final,record",
    [(True, True, False), (True, False, True), (False, True, True), (False, False, False)],
)
def test_variants_agree_for_every_objective_and_option(mlp, batch, loss, tau, mode, early_stop, check_final, record):
    x, y, x0 = batch
    compact, masked = _both(
        mlp,
        x,
        y,
        eps=EPS,
        step_size=STEP,
        steps=K,
        loss=loss,
        start=x0,
        tau=tau,
        mode=mode,
        early_stop=early_stop,
        check_final=check_final,
        record_predictions=record,
    )
    _assert_identical(compact, masked)
    # The data exercise every case: wrong at the start, flips in between, never.
    flips = set(compact.flip_step.tolist())
    assert 0 in flips and len(flips - {0, -1, K}) >= 2


@pytest.mark.parametrize("norm,clamp", [("linf", (0.0, 1.0)), ("l2", (0.0, 1.0)), ("linf", None), ("l2", None)])
@pytest.mark.parametrize("start", ["normal", "uniform", "none"])
def test_variants_agree_on_norms_starts_budgets_and_noise(mlp, batch, norm, clamp, start):
    x, y, _ = batch
    eps = torch.full((len(x),), EPS if norm == "linf" else 0.6, dtype=torch.float64)
    eps[::3] *= 0.4  # per-sample budgets (FRL, CFA, DAFA gather them by class)
    step = eps / 6
    compact, masked = _both(
        mlp,
        x,
        y,
        eps=eps,
        step_size=step,
        steps=K,
        loss="ce",
        norm=norm,
        clamp=clamp,
        start=start,
        tau=1,
        noise_std=0.003,
        seed=7,
        record_predictions=True,
    )
    _assert_identical(compact, masked)


def test_variants_agree_with_given_clean_logits_zero_steps_and_everyone_wrong(mlp, batch):
    x, y, x0 = batch
    with torch.no_grad():
        logits = mlp(x)
    _assert_identical(
        *_both(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="kl", start=x0, tau=1, logits_clean=logits)
    )
    _assert_identical(*_both(mlp, x, y, eps=EPS, step_size=STEP, steps=0, loss="ce", start=x0, record_predictions=True))
    wrong = (y + 1) % NUM_CLASSES
    everyone = _both(mlp, x, wrong, eps=EPS, step_size=STEP, steps=K, loss="ce", start=x0, record_predictions=True)
    _assert_identical(*everyone)


def test_masked_variant_keeps_shapes_fixed(mlp, batch):
    """Every forward of the masked variant sees the whole batch (no compaction)."""
    x, y, x0 = batch
    sizes: dict[str, list[int]] = {"compact": [], "masked": []}
    for variant in sizes:
        handle = mlp.register_forward_pre_hook(lambda module, args, v=variant: sizes[v].append(args[0].shape[0]))
        try:
            early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="ce", start=x0, variant=variant)
        finally:
            handle.remove()
    assert set(sizes["masked"]) == {len(x)} and len(sizes["masked"]) == K + 1
    assert min(sizes["compact"]) < len(x)  # the compact variant shrinks the batch


def test_variant_selection_by_device_and_block():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_variant("auto", cpu) == "compact" and resolve_variant("auto", cuda) == "masked"
    assert resolve_variant("masked", cpu) == "masked"
    with early_stop_variant("masked"):
        assert resolve_variant("auto", cpu) == "masked"
        assert resolve_variant("compact", cpu) == "compact"
        with early_stop_variant("auto"):
            assert resolve_variant("auto", cuda) == "masked"
    assert resolve_variant("auto", cpu) == "compact"
    with pytest.raises(ConfigError, match="variant"):
        resolve_variant("sparse", cpu)
    with pytest.raises(ConfigError, match="variant"):
        with early_stop_variant("fast"):
            pass


# ---- the methods built on it -------------------------------------------------------------------


def _method_outputs(name: str, options: dict, x, y, *, epoch: int = 0):
    outputs = {}
    for variant in ("compact", "masked"):
        model = rowwise_mlp()
        method = METHODS[name](METHODS[name].Config(**options), num_classes=NUM_CLASSES)
        method.epoch = epoch
        torch.manual_seed(11)
        with early_stop_variant(variant):
            out = method.loss(model, x, y)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        outputs[variant] = (out.loss.detach(), {k: v.detach() for k, v in out.logs.items()}, grads)
    return outputs


@pytest.mark.parametrize(
    "name,options,epoch",
    [
        ("bat", {}, 0),
        ("bat", {"shared_trajectory": True}, 0),
        ("bat", {"target_term": "fixed_step"}, 0),
        ("fat_at", {}, 0),
        ("fat_at", {"tau": 1}, 0),
        ("fat_trades", {}, 60),
        ("gairat", {"begin_epoch": 1}, 0),
    ],
)
def test_methods_compute_the_same_loss_under_both_variants(batch, name, options, epoch):
    x, y, _ = batch
    outputs = _method_outputs(name, {"eps": 0.1, "step_size": 0.02, **options}, x, y, epoch=epoch)
    (loss_c, logs_c, grads_c), (loss_m, logs_m, grads_m) = outputs["compact"], outputs["masked"]
    assert torch.equal(loss_c, loss_m)
    assert logs_c.keys() == logs_m.keys()
    for key in logs_c:
        assert torch.equal(logs_c[key], logs_m[key]), key
    assert all(torch.equal(a, b) for a, b in zip(grads_c, grads_m))
    # Early stopping really happened: some samples stopped, not all at once.
    spread = {"flip_rate": (0.0, 1.0), "attack_steps": (0.0, 10.0), "kappa": (0.0, 10.0)}
    key = next(k for k in spread if k in logs_c)
    assert spread[key][0] < float(logs_c[key]) < spread[key][1]


def test_fairness_analysis_flip_steps_agree(mlp, batch):
    from robustfair.metrics.analysis import steps_to_flip

    x, y, _ = batch
    found = {}
    for variant in ("compact", "masked"):
        with early_stop_variant(variant):
            found[variant] = steps_to_flip(mlp, x, y, eps=EPS, step_size=0.01, steps=20)
    assert torch.equal(found["compact"][0], found["masked"][0])
    assert found["compact"][1] == found["masked"][1]
