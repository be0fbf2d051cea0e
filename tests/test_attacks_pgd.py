"""FGSM and PGD: threat-model geometry, strength ordering, modes, gradients, options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prototype_data import NUM_CLASSES, make_data, trained_mlp
from robustfair.attacks import crafting_mode, fgsm, pgd
from robustfair.errors import ConfigError
from robustfair.losses import trades_kl


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    """A small ReLU network trained (deterministically) on the prototype data."""
    return trained_mlp()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return make_data(40, seed=2)


def conv_bn_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(64, NUM_CLASSES),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def linf(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).abs().amax(1)


def l2(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("start", ["uniform", "normal", "none"])
def test_pgd_stays_in_ball_and_box_with_float_eps(mlp, batch, norm, start):
    x, y = batch
    eps = 0.1 if norm == "linf" else 0.5
    x_adv = pgd(
        mlp,
        x,
        y,
        eps=eps,
        step_size=eps / 3,
        steps=5,
        norm=norm,
        start=start,
        generator=torch.Generator().manual_seed(0),
    )
    size = linf(x_adv - x) if norm == "linf" else l2(x_adv - x)
    assert (size <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    # The attack is not idle: some sample reached (nearly) the boundary of the ball.
    assert size.max() > 0.9 * eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_per_sample_budgets_including_zero(mlp, batch, norm):
    x, y = batch
    scale = 0.2 if norm == "linf" else 1.0
    eps = scale * (torch.arange(len(x)) % 4).float() / 3  # 0, 1/3, 2/3, 1 times scale
    step = eps / 4
    for start in ("uniform", "normal"):
        x_adv = pgd(mlp, x, y, eps=eps, step_size=step, steps=6, norm=norm, start=start)
        size = linf(x_adv - x) if norm == "linf" else l2(x_adv - x)
        assert (size <= eps + 1e-6).all()
        zero = eps == 0
        assert torch.equal(x_adv[zero], x[zero])
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        # Larger budgets are used: the biggest class of budget moves further on average.
        assert size[eps == scale].mean() > size[(eps > 0) & (eps < 0.5 * scale)].mean()


def test_pgd_l2_uniform_start_is_inside_ball(batch):
    x, _ = batch
    identity = nn.Sequential(nn.Flatten(), nn.Linear(48, NUM_CLASSES))
    y = torch.zeros(len(x), dtype=torch.long)
    x_start = pgd(
        identity,
        x,
        y,
        eps=0.5,
        step_size=0.1,
        steps=0,
        norm="l2",
        start="uniform",
        clamp=None,
        generator=torch.Generator().manual_seed(0),
    )
    radius = l2(x_start - x)
    assert (radius <= 0.5 + 1e-6).all() and (radius > 0).all()
    # Uniform in the ball's volume in 48 dimensions: radius = 0.5 * U^(1/48), mostly near 0.5.
    assert radius.median() > 0.45


def test_pgd20_at_least_as_strong_as_fgsm(mlp, batch):
    x, y = batch
    eps = 0.1
    clean = accuracy(mlp, x, y)
    acc_fgsm = accuracy(mlp, fgsm(mlp, x, y, eps=eps), y)
    acc_pgd = accuracy(
        mlp, pgd(mlp, x, y, eps=eps, step_size=eps / 4, steps=20, generator=torch.Generator().manual_seed(0)), y
    )
    assert clean == 1.0
    assert acc_fgsm < clean
    assert acc_pgd <= acc_fgsm


def test_fgsm_is_one_sign_step_of_eps(mlp, batch):
    x, y = batch
    x = x.clamp(0.2, 0.8)  # away from the box so no coordinate is clipped
    x_adv = fgsm(mlp, x, y, eps=0.05)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(mlp(xg), y, reduction="sum"), xg)
    assert torch.allclose(x_adv, x + 0.05 * grad.sign(), atol=1e-7)
    x_l2 = fgsm(mlp, x, y, eps=0.5, norm="l2")
    assert torch.allclose(l2(x_l2 - x), torch.full((len(x),), 0.5), atol=1e-5)


def test_huge_eps_drives_accuracy_to_zero(mlp, batch):
    x, y = batch
    x_adv = pgd(mlp, x, y, eps=1.0, step_size=0.1, steps=20, generator=torch.Generator().manual_seed(0))
    assert accuracy(mlp, x_adv, y) == 0.0


def test_more_steps_with_restarts_never_weaker(mlp, batch):
    x, y = batch
    single = pgd(mlp, x, y, eps=0.08, step_size=0.02, steps=10, generator=torch.Generator().manual_seed(5))
    multi = pgd(mlp, x, y, eps=0.08, step_size=0.02, steps=10, restarts=4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fooled_single = mlp(single).argmax(1) != y
        fooled_multi = mlp(multi).argmax(1) != y
    # The first restart draws the same start as the single run: its successes are kept as is.
    assert torch.equal(multi[fooled_single], single[fooled_single])
    assert (fooled_multi | ~fooled_single).all()
    assert fooled_multi.sum() >= fooled_single.sum()
    assert (linf(multi - x) <= 0.08 + 1e-6).all()


def test_return_logits_are_the_eval_logits_of_x_adv(mlp, batch):
    x, y = batch
    x_adv, logits = pgd(mlp, x, y, eps=0.05, step_size=0.01, steps=3, return_logits=True)
    with torch.no_grad():
        assert torch.allclose(logits, mlp(x_adv), atol=1e-6)
    x_adv, logits = pgd(mlp, x, y, eps=0.05, step_size=0.01, steps=3, restarts=2, return_logits=True)
    with torch.no_grad():
        assert torch.allclose(logits, mlp(x_adv), atol=1e-6)


def test_generator_makes_pgd_deterministic(mlp, batch):
    x, y = batch
    a = pgd(mlp, x, y, eps=0.05, step_size=0.01, steps=3, generator=torch.Generator().manual_seed(7))
    b = pgd(mlp, x, y, eps=0.05, step_size=0.01, steps=3, generator=torch.Generator().manual_seed(7))
    c = pgd(mlp, x, y, eps=0.05, step_size=0.01, steps=3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_targeted_pgd_raises_target_probability(mlp, batch):
    x, y = batch
    target = (y + 2) % NUM_CLASSES
    x_adv = pgd(
        mlp,
        x,
        y,
        eps=0.1,
        step_size=0.02,
        steps=10,
        targeted=True,
        target=target,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        before = mlp(x).softmax(1).gather(1, target[:, None]).squeeze(1)
        after = mlp(x_adv).softmax(1).gather(1, target[:, None]).squeeze(1)
        hits = (mlp(x_adv).argmax(1) == target).float().mean()
    assert (after > before).all()
    assert hits > 0.2
    # An untargeted attack with the same budget hits this particular target less often.
    untargeted = pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (mlp(untargeted).argmax(1) == target).float().mean() < hits


def test_kl_loss_with_normal_start_moves_the_point_and_increases_kl(mlp, batch):
    x, y = batch
    g = torch.Generator().manual_seed(0)
    x_adv = pgd(mlp, x, y, eps=8 / 255, step_size=0.007, steps=10, loss="kl", start="normal", generator=g)
    # The TRADES start point, drawn from the same seed: x + 0.001 * N(0, I), clamped.
    x_start = (x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with torch.no_grad():
        kl_start = trades_kl(mlp(x), mlp(x_start))
        kl_adv = trades_kl(mlp(x), mlp(x_adv))
    assert (linf(x_adv - x) > 0.02).all()
    assert (linf(x_adv - x) <= 8 / 255 + 1e-6).all()
    assert (kl_adv > 10 * kl_start).all()


def test_margin_and_callable_losses(mlp, batch):
    x, y = batch
    x_cw = pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=10, loss="margin", generator=torch.Generator().manual_seed(0))
    assert accuracy(mlp, x_cw, y) < accuracy(mlp, x, y)

    seen = {}

    def negative_true_logit(logits_adv, labels, logits_clean):
        seen["clean"] = logits_clean
        return -logits_adv.gather(1, labels[:, None]).squeeze(1)

    x_cb = pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=5, loss=negative_true_logit, start="none")
    assert seen["clean"] is None
    with torch.no_grad():
        assert (mlp(x_cb).gather(1, y[:, None]) < mlp(x).gather(1, y[:, None])).all()

    def kl_like(logits_adv, labels, logits_clean):
        seen["clean"] = logits_clean
        return trades_kl(logits_clean, logits_adv)

    kl_like.needs_clean_logits = True
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = pgd(mlp, x, y, eps=0.03, step_size=0.007, steps=4, loss=kl_like, start="normal", generator=g1)
    b = pgd(mlp, x, y, eps=0.03, step_size=0.007, steps=4, loss="kl", start="normal", generator=g2)
    assert seen["clean"] is not None and seen["clean"].shape == (len(x), NUM_CLASSES)
    assert torch.equal(a, b)


@pytest.mark.parametrize("initial_mode", ["train", "eval"])
def test_mode_restored_and_no_parameter_grads(batch, initial_mode):
    x, y = batch
    model = conv_bn_net()
    model.train(initial_mode == "train")
    bn = model[1]
    running_mean = bn.running_mean.clone()
    pgd(model, x, y, eps=0.05, step_size=0.01, steps=3)
    fgsm(model, x, y, eps=0.05)
    # Crafting ran in eval mode: BatchNorm's running statistics never moved.
    assert torch.equal(bn.running_mean, running_mean)
    assert all(m.training == (initial_mode == "train") for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_bn_mode_train_uses_train_mode_and_restores(batch):
    x, y = batch
    model = conv_bn_net().eval()
    running_mean = model[1].running_mean.clone()
    pgd(model, x, y, eps=0.05, step_size=0.01, steps=2, bn_mode="train")
    assert not torch.equal(model[1].running_mean, running_mean)
    assert not any(m.training for m in model.modules())


def test_mixed_modes_and_exceptions_restore_every_module(batch):
    x, y = batch
    model = conv_bn_net().train()
    model[1].eval()  # a frozen BatchNorm inside a training model

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, t):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("boom")
            return t

    model.append(Boom())
    with pytest.raises(RuntimeError, match="boom"):
        pgd(model, x, y, eps=0.05, step_size=0.01, steps=3)
    assert model.training and model[0].training and not model[1].training
    with crafting_mode(model):
        assert not any(m.training for m in model.modules())
    assert not model[1].training and model[2].training


def test_pgd_under_bf16_autocast_and_no_grad(mlp, batch):
    x, y = batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=5, generator=torch.Generator().manual_seed(0))
    assert x_adv.dtype == torch.float32
    assert (linf(x_adv - x) <= 0.1 + 1e-6).all()
    assert accuracy(mlp, x_adv, y) < accuracy(mlp, x, y)
    with torch.no_grad():
        x_ng = pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        x_im = pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=5, generator=torch.Generator().manual_seed(0))
    reference = pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_ng, reference) and torch.equal(x_im, reference)


def test_tabular_inputs_without_clamp():
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    x = 3 * torch.randn(16, 6)  # standardised features outside [0, 1]
    y = torch.randint(0, 2, (16,))
    x_adv = pgd(model, x, y, eps=0.5, step_size=0.2, steps=5, clamp=None, start="none")
    assert torch.allclose(linf(x_adv - x), torch.full((16,), 0.5), atol=1e-6)  # linear: every coordinate saturates
    clamped = pgd(model, x, y, eps=0.5, step_size=0.2, steps=5, start="none")
    assert clamped.min() >= 0 and clamped.max() <= 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(eps=-0.1), "eps"),
        (dict(eps=math.nan), "eps"),
        (dict(eps=torch.ones(3)), "eps"),
        (dict(step_size=-1.0), "step_size"),
        (dict(steps=2.5), "steps"),
        (dict(norm="l1"), "norm"),
        (dict(loss="hinge"), "loss"),
        (dict(start="gauss"), "start"),
        (dict(restarts=0), "restarts"),
        (dict(restarts=2, start="none"), "restarts"),
        (dict(clamp=(1.0, 0.0)), "clamp"),
        (dict(bn_mode="frozen"), "bn_mode"),
        (dict(targeted=True), "target"),
        (dict(targeted=True, target=torch.zeros(40, dtype=torch.long), loss="kl"), "loss"),
    ],
)
def test_pgd_rejects_bad_arguments_naming_the_field(mlp, batch, kwargs, field):
    x, y = batch
    options = dict(eps=0.1, step_size=0.01, steps=2)
    options.update(kwargs)
    with pytest.raises(ConfigError, match=field):
        pgd(mlp, x, y, **options)


def test_bad_labels_and_fgsm_kl_rejected(mlp, batch):
    x, y = batch
    with pytest.raises(ConfigError, match="y"):
        pgd(mlp, x, y[:-1], eps=0.1, step_size=0.01, steps=1)
    with pytest.raises(ConfigError, match="y"):
        pgd(mlp, x, y.float(), eps=0.1, step_size=0.01, steps=1)
    with pytest.raises(ConfigError, match="kl"):
        fgsm(mlp, x, y, eps=0.1, loss="kl")
