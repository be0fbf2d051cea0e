"""Early-stopped PGD against a plain one-sample-at-a-time reference loop.

The reference follows FAT's and BAT's official semantics literally (METHODS.md: FAT, BAT):
classify x^k, stop (counter 0) or decrement, then step; only steps 0..K-1 decide.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from prototype_data import NUM_CLASSES, make_data, trained_mlp
from robustfair.attacks import early_stopped_pgd, pgd
from robustfair.errors import ConfigError
from robustfair.losses import cross_entropy, trades_kl

EPS, STEP, K = 0.15, 0.02, 8


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    """Trained on the prototype data, then cast to float64 so batched and one-sample
    forward passes agree to rounding and sign steps cannot diverge between them."""
    return trained_mlp().double()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, x0): 30 samples, 3 of them mislabelled (wrong at the start), and a TRADES start."""
    x, y = make_data(30, seed=2)
    x = x.double()
    y[:3] = (y[:3] + 1) % NUM_CLASSES
    x0 = (x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)).clamp(0, 1)
    return x, y, x0


@dataclass
class Reference:
    flip_step: list[int]
    last_clean: torch.Tensor
    first_adv: torch.Tensor
    passes: int
    kappa: list[int]
    predictions: torch.Tensor


def reference_early_stop(
    model, x, y, x0, *, loss, tau, eps=EPS, step=STEP, steps=K, noises=None, early_stop=True
) -> Reference:
    """One sample at a time, straight from the written semantics."""
    flips, kappas, last_cleans, first_advs, pred_rows = [], [], [], [], []
    passes = 0
    for i in range(len(x)):
        xi, yi = x[i : i + 1], y[i : i + 1]
        with torch.no_grad():
            clean_logits = model(xi)
        cur = x0[i : i + 1].clone()
        counter, flip, kappa = tau, -1, 0
        last_clean, first_adv, stopped = None, None, False
        preds = []
        for k in range(steps):
            cur.requires_grad_(True)
            logits = model(cur)
            pred = int(logits.argmax(1))
            preds.append(pred)
            wrong = pred != int(yi)
            if not wrong:
                kappa += 1
                if flip < 0:
                    last_clean = cur.detach().clone()
            elif flip < 0:
                flip = k
                if k == 0:
                    last_clean = cur.detach().clone()
            if wrong and not stopped:
                if counter == 0:
                    stopped = True
                    first_adv = cur.detach().clone()
                    if early_stop:
                        break
                else:
                    counter -= 1
            value = cross_entropy(logits, yi) if loss == "ce" else trades_kl(clean_logits, logits)
            (grad,) = torch.autograd.grad(value.sum(), cur)
            nxt = cur.detach() + step * grad.sign()
            if noises is not None:
                nxt = nxt + noises[k][i : i + 1]
            cur = torch.min(torch.max(nxt, xi - eps), xi + eps).clamp(0, 1)
            passes += 1
        else:
            with torch.no_grad():
                final_pred = int(model(cur).argmax(1))
            preds.append(final_pred)
            if flip < 0 and final_pred != int(yi):
                flip = steps
            if first_adv is None:
                first_adv = cur.detach()
        if flip < 0 or flip == steps:
            last_clean = cur.detach()
        preds += [preds[-1]] * (steps + 1 - len(preds))
        flips.append(flip)
        kappas.append(kappa)
        last_cleans.append(last_clean)
        first_advs.append(first_adv)
        pred_rows.append(preds)
    return Reference(flips, torch.cat(last_cleans), torch.cat(first_advs), passes, kappas, torch.tensor(pred_rows).T)


@pytest.mark.parametrize("loss", ["ce", "kl"])
@pytest.mark.parametrize("tau", [0, 1, 2])
def test_matches_per_sample_reference(mlp, batch, loss, tau):
    x, y, x0 = batch
    result = early_stopped_pgd(
        mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss=loss, start=x0, tau=tau, record_predictions=True
    )
    ref = reference_early_stop(mlp, x, y, x0, loss=loss, tau=tau)
    assert result.flip_step.tolist() == ref.flip_step
    # The data exercise every case: wrong at the start, flips in between, at K and never.
    flips = set(ref.flip_step)
    assert {0, -1}.issubset(flips) and len(flips & set(range(1, K))) >= 3
    assert torch.allclose(result.last_clean, ref.last_clean, rtol=0, atol=1e-12)
    assert torch.allclose(result.first_adv, ref.first_adv, rtol=0, atol=1e-12)
    assert result.passes == ref.passes
    assert result.correct_steps.tolist() == ref.kappa
    assert torch.equal(result.predictions, ref.predictions)
    stopped = result.flip_step >= 0
    assert result.gradient_evaluations >= result.passes
    assert (result.last_clean - x).abs().amax() <= EPS + 1e-12
    assert result.passes < K * len(x)  # early stopping saved work
    if tau == 0:
        # x_lc is one step before x_fa for samples that flipped after the start.
        inner = stopped & (result.flip_step > 0) & (result.flip_step < K)
        assert ((result.first_adv[inner] - result.last_clean[inner]).flatten(1).abs().amax(1) <= STEP + 1e-12).all()


def test_flip_at_k_is_detected_by_the_final_check_only(mlp, batch):
    x, y, x0 = batch
    ref = reference_early_stop(mlp, x, y, x0, loss="ce", tau=0)
    assert K in ref.flip_step
    result = early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="ce", start=x0, check_final=False)
    expected = [-1 if f == K else f for f in ref.flip_step]
    assert result.flip_step.tolist() == expected
    assert torch.allclose(result.last_clean, ref.last_clean, rtol=0, atol=1e-12)


def test_start_normal_with_generator_reproduces_the_drawn_start(mlp, batch):
    x, y, x0 = batch
    # start="normal" draws x + 0.001 * N(0, I) from the generator: the same start as x0.
    result = early_stopped_pgd(
        mlp,
        x,
        y,
        eps=EPS,
        step_size=STEP,
        steps=K,
        loss="kl",
        start="normal",
        start_scale=0.001,
        tau=1,
        generator=torch.Generator().manual_seed(4),
    )
    explicit = early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="kl", start=x0, tau=1)
    assert torch.equal(result.first_adv, explicit.first_adv)
    assert torch.equal(result.flip_step, explicit.flip_step)


def test_results_do_not_depend_on_batch_composition(mlp, batch):
    x, y, x0 = batch
    full = early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="kl", start=x0, tau=1)
    for rows in (torch.arange(len(x)).flip(0), torch.tensor([5, 17, 2, 29, 11]), torch.tensor([8])):
        part = early_stopped_pgd(
            mlp, x[rows], y[rows], eps=EPS, step_size=STEP, steps=K, loss="kl", start=x0[rows], tau=1
        )
        assert torch.equal(part.flip_step, full.flip_step[rows])
        assert torch.allclose(part.last_clean, full.last_clean[rows], rtol=0, atol=1e-12)
        assert torch.allclose(part.first_adv, full.first_adv[rows], rtol=0, atol=1e-12)


def test_per_sample_budgets_and_noise_match_reference(mlp, batch):
    x, y, x0 = batch
    eps = torch.full((len(x),), EPS, dtype=torch.float64)
    eps[::3] = 0.05
    step = eps / 7
    noise_std = 0.004
    result = early_stopped_pgd(
        mlp,
        x,
        y,
        eps=eps,
        step_size=step,
        steps=K,
        loss="ce",
        start=x0,
        tau=1,
        noise_std=noise_std,
        generator=torch.Generator().manual_seed(9),
    )
    # The noise is drawn for the whole batch at every step, one draw per step.
    g = torch.Generator().manual_seed(9)
    noises = [noise_std * torch.randn(x.shape, generator=g, dtype=x.dtype) for _ in range(K)]
    passes = 0
    for value in (0.05, EPS):
        rows = torch.nonzero(eps == value).squeeze(1)
        ref = reference_early_stop(
            mlp,
            x[rows],
            y[rows],
            x0[rows],
            loss="ce",
            tau=1,
            eps=value,
            step=value / 7,
            noises=[n[rows] for n in noises],
        )
        assert result.flip_step[rows].tolist() == ref.flip_step
        assert torch.allclose(result.first_adv[rows], ref.first_adv, rtol=0, atol=1e-12)
        assert torch.allclose(result.last_clean[rows], ref.last_clean, rtol=0, atol=1e-12)
        passes += ref.passes
    assert result.passes == passes
    assert ((result.first_adv - x).flatten(1).abs().amax(1) <= eps + 1e-12).all()


def test_mode_last_clean_matches_shared_trajectory_and_saves_work(mlp, batch):
    x, y, x0 = batch
    shared = early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="kl", start=x0, tau=1, mode="both")
    lc_only = early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="kl", start=x0, mode="last_clean")
    fa_only = early_stopped_pgd(
        mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="kl", start=x0, tau=1, mode="first_adv"
    )
    assert torch.equal(lc_only.flip_step, shared.flip_step)
    assert torch.equal(lc_only.last_clean, shared.last_clean)
    assert torch.equal(fa_only.first_adv, shared.first_adv)
    assert lc_only.passes < shared.passes
    with pytest.raises(ConfigError, match="tau"):
        early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, mode="last_clean", tau=1)


def test_without_early_stop_gives_gairat_kappa_and_the_pgd_iterate(mlp, batch):
    x, y, x0 = batch
    result = early_stopped_pgd(
        mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="ce", start=x0, early_stop=False, record_predictions=True
    )
    ref = reference_early_stop(mlp, x, y, x0, loss="ce", tau=0, early_stop=False)
    assert result.correct_steps.tolist() == ref.kappa
    assert result.flip_step.tolist() == ref.flip_step
    assert torch.allclose(result.first_adv, ref.first_adv, rtol=0, atol=1e-12)
    assert torch.allclose(result.last_clean, ref.last_clean, rtol=0, atol=1e-12)
    assert torch.equal(result.predictions, ref.predictions)
    assert result.passes == K * len(x) == ref.passes
    plain = pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="ce", start=x0)
    assert torch.allclose(result.last_iterate, plain, rtol=0, atol=1e-12)
    # With early stopping the first adversarial points are the same (same trajectory until then).
    stopped = early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=K, loss="ce", start=x0)
    assert torch.equal(stopped.first_adv, result.first_adv)
    assert torch.equal(stopped.last_iterate, stopped.first_adv)


def test_zero_steps_and_everyone_wrong(mlp, batch):
    x, y, x0 = batch
    none = early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=0, loss="ce", start=x0, record_predictions=True)
    with torch.no_grad():
        wrong = mlp(x0).argmax(1) != y
    assert torch.equal(none.flip_step, torch.where(wrong, 0, -1))
    assert torch.equal(none.last_clean, x0) and torch.equal(none.first_adv, x0)
    assert none.passes == 0 and none.predictions.shape == (1, len(x))
    bad = (y + 1) % NUM_CLASSES
    with torch.no_grad():
        bad_wrong = mlp(x0).argmax(1) != bad
    everyone = early_stopped_pgd(
        mlp, x, bad, eps=EPS, step_size=STEP, steps=K, loss="ce", start=x0, record_predictions=True
    )
    flipped_at_start = everyone.flip_step == 0
    assert torch.equal(flipped_at_start, bad_wrong)
    assert torch.equal(everyone.last_clean[flipped_at_start], x0[flipped_at_start])
    assert everyone.predictions.shape == (K + 1, len(x))


def test_mode_restored_and_no_parameter_grads(batch):
    x, y, _ = batch
    torch.manual_seed(0)
    model = (
        nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, NUM_CLASSES))
        .double()
        .train()
    )
    running_mean = model[2].running_mean.clone()
    early_stopped_pgd(model, x, y, eps=EPS, step_size=STEP, steps=4, tau=1, generator=torch.Generator().manual_seed(0))
    assert all(m.training for m in model.modules())
    assert torch.equal(model[2].running_mean, running_mean)
    assert all(p.grad is None for p in model.parameters())


def test_rejects_bad_arguments(mlp, batch):
    x, y, _ = batch
    base = dict(eps=EPS, step_size=STEP, steps=K)
    for kwargs, field in [
        (dict(tau=-1), "tau"),
        (dict(noise_std=-0.1), "noise_std"),
        (dict(mode="all"), "mode"),
        (dict(loss="kl2"), "loss"),
        (dict(start=x[:2]), "start"),
    ]:
        with pytest.raises(ConfigError, match=field):
            early_stopped_pgd(mlp, x, y, **base, **kwargs)


def test_a_float64_model_keeps_float64_clean_logits_in_both_attacks(mlp, batch):
    x, y, x0 = batch
    seen = []

    def kl_recording(logits_adv, labels, logits_clean):
        seen.append((logits_adv.dtype, logits_clean.dtype))
        return trades_kl(logits_clean, logits_adv)

    kl_recording.needs_clean_logits = True
    early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=2, loss=kl_recording, start=x0)
    given = mlp(x).detach()
    early_stopped_pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=2, loss=kl_recording, start=x0, logits_clean=given)
    pgd(mlp, x, y, eps=EPS, step_size=STEP, steps=2, loss=kl_recording, start=x0)
    assert seen and set(seen) == {(torch.float64, torch.float64)}
