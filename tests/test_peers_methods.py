"""Peer methods (FAT, GAIRAT, CFA, WAT, DAFA, FAAL, reweighting) on a tiny model.

Each method's distinctive step is compared with an independent computation written here
(a per-sample reference loop, or the loss recomputed by hand from the same inputs), and
every method's loss must be a finite scalar with gradients and its state must survive a
checkpoint round trip.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfair.engine.checkpoint import load_checkpoint, save_checkpoint
from robustfair.errors import ConfigError
from robustfair.losses.peers import dafa_class_weights, faal_class_weights
from robustfair.methods.base import EpochContext
from robustfair.methods.cfa import CFA, CFAConfig
from robustfair.methods.dafa import DAFA, DAFAConfig
from robustfair.methods.faal import FAAL, FAALConfig
from robustfair.methods.fat import FATAT, FATTRADES, FATATConfig, FATTRADESConfig, fat_tau
from robustfair.methods.gairat import GAIRAT, GAIRATConfig
from robustfair.methods.reweight import ATLogitAdjust, ATLogitAdjustConfig, ATReweight, ATReweightConfig
from robustfair.methods.wat import WAT, WATConfig
from robustfair.metrics import evaluate_classwise

C = 3
D = 12  # inputs [B, 3, 2, 2]


def tiny_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, C)).to(dtype)


def batch(n=12, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 2, 2, generator=g, dtype=dtype)
    y = torch.arange(n) % C
    return x, y


def make_ctx(model, epoch, val=None, num_epochs=100):
    def evaluate(m, loader, attack, **overrides):
        return evaluate_classwise(
            m, loader, attack=attack, num_classes=C, device="cpu", attack_overrides=overrides or None
        )

    return EpochContext(
        epoch=epoch,
        num_epochs=num_epochs,
        model=model,
        device=torch.device("cpu"),
        num_classes=C,
        val_loader=val,
        evaluate=evaluate,
    )


def roundtrip(method, tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.safetensors", {"method": method.state_dict()})
    return load_checkpoint(path)["method"]


def assert_states_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a.cpu(), b.cpu())
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            assert_states_equal(a[k], b[k])
    else:
        assert a == b


# ---- every method: finite loss with gradients, hooks, state round trip ------------------

CASES = [
    (FATAT, FATATConfig()),
    (FATTRADES, FATTRADESConfig()),
    (GAIRAT, GAIRATConfig(begin_epoch=1)),
    (CFA, CFAConfig(begin_epoch=2, fawa_threshold=0.0)),
    (CFA, CFAConfig(base="at", begin_epoch=2, fawa=False)),
    (WAT, WATConfig()),
    (DAFA, DAFAConfig(warmup_epochs=1)),
    (DAFA, DAFAConfig(warmup_epochs=1, similarity_source="val", weight_rule="paper")),
    (FAAL, FAALConfig()),
    (FAAL, FAALConfig(base="trades", score="loss")),
    (ATReweight, ATReweightConfig()),
    (ATLogitAdjust, ATLogitAdjustConfig()),
]


@pytest.mark.parametrize("cls,config", CASES, ids=lambda v: getattr(v, "name", None) or type(v).__name__)
def test_loss_is_finite_with_grads_and_state_round_trips(cls, config, tmp_path):
    model = tiny_model()
    x, y = batch()
    val = [batch(9, seed=5)]
    method = cls(config, num_classes=C)
    for epoch in range(2):  # the second epoch runs each method's calibrated path
        method.on_epoch_start(make_ctx(model, epoch, val))
        model.train()
        out = method.loss(model, x, y)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        model.zero_grad()
        out.loss.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
        assert all(torch.isfinite(v).all() for v in out.logs.values())
        assert model.training  # crafting restored the mode
        method.on_epoch_end(make_ctx(model, epoch, val))
    state = method.state_dict()
    restored = cls(config, num_classes=C)
    restored.load_state_dict(roundtrip(method, tmp_path))
    assert_states_equal(state, restored.state_dict())
    # the restored method computes the same loss from the same random state
    torch.manual_seed(3)
    expected = method.loss(model, x, y).loss
    torch.manual_seed(3)
    restored.epoch = method.epoch
    assert restored.loss(model, x, y).loss.item() == pytest.approx(expected.item(), rel=1e-6)


# ---- FAT -------------------------------------------------------------------------------


def test_fat_tau_schedules_match_the_official_adjust_tau():
    at = {1: 0, 50: 0, 51: 1, 90: 1, 91: 2, 120: 2}
    for epoch, tau in at.items():
        assert fat_tau(epoch, 0, FATATConfig().tau_milestones) == tau
    trades = {1: 0, 30: 0, 31: 1, 50: 1, 51: 2, 70: 2, 71: 3, 85: 3}
    for epoch, tau in trades.items():
        assert fat_tau(epoch, 0, FATTRADESConfig().tau_milestones) == tau
    assert fat_tau(99, 2, ()) == 2  # fixed tau


def fat_reference(model, x, y, eps, step, steps, tau):
    """FAT's earlystop (official per-sample loop), CE objective, no random start, no noise."""
    model.eval()
    current = x.clone()
    control = [tau] * len(y)
    out = [None] * len(y)
    active = list(range(len(y)))
    for _ in range(steps):
        xa = current.clone().requires_grad_(True)
        logits = model(xa)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xa)
        pred = logits.argmax(1)
        keep = []
        for i in active:
            if pred[i] != y[i]:
                if control[i] == 0:
                    out[i] = current[i].clone()
                    continue
                control[i] -= 1
            keep.append(i)
        for i in keep:
            moved = current[i] + step * grad[i].sign()
            current[i] = torch.min(torch.max(moved, x[i] - eps), x[i] + eps).clamp(0, 1)
        active = keep
    for i in active:
        out[i] = current[i]
    return torch.stack(out)


@pytest.mark.parametrize("tau", [0, 1])
def test_fat_stops_like_the_official_loop(tau):
    model = tiny_model(seed=4, dtype=torch.float64)
    x, y = batch(24, seed=2, dtype=torch.float64)
    config = FATATConfig(eps=0.5, step_size=0.1, steps=6, tau=tau, tau_milestones=(), noise_std=0.0, start="none")
    method = FATAT(config, num_classes=C)
    got, passes = method.friendly_adversarial(model, x, y)
    expected = fat_reference(model, x, y, 0.5, 0.1, 6, tau)
    assert torch.allclose(got, expected, atol=1e-12)
    moved = (got - x).flatten(1).abs().amax(1)
    full = (expected - x).flatten(1).abs().amax(1)
    assert passes < 6 * len(y)  # some samples stopped early ...
    assert (moved > 0).any() and (full < 0.5 + 1e-12).all()  # ... others moved, all inside the ball


# ---- GAIRAT ----------------------------------------------------------------------------


def gairat_reference(model, x, y, eps, step, steps):
    model.eval()
    current = x.clone()
    kappa = torch.zeros(len(y))
    for _ in range(steps):
        xa = current.clone().requires_grad_(True)
        logits = model(xa)
        kappa += (logits.argmax(1) == y).float()
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), xa)
        current = torch.min(torch.max(current + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return current.detach(), kappa


def test_gairat_loss_is_the_tanh_weighted_ce_from_begin_epoch():
    model = tiny_model(seed=4, dtype=torch.float64)
    x, y = batch(16, seed=2, dtype=torch.float64)
    config = GAIRATConfig(eps=0.3, step_size=0.1, steps=4, begin_epoch=60, start="none")
    method = GAIRAT(config, num_classes=C)
    x_adv, kappa = gairat_reference(model, x, y, 0.3, 0.1, 4)
    assert len(set(kappa.tolist())) > 1  # a mix of geometry values
    model.train()
    ce = F.cross_entropy(model(x_adv), y, reduction="none")

    method.on_epoch_start(make_ctx(model, 58))  # epoch 59 (from 1): plain CE
    assert method.loss(model, x, y).loss.item() == pytest.approx(ce.mean().item(), rel=1e-6)

    method.on_epoch_start(make_ctx(model, 59))  # epoch 60: reweighted
    raw = [(1 + math.tanh(-1.0 + (2 - k) * 5 / 2)) / 2 for k in kappa.tolist()]  # K = 4, h = 2
    weights = torch.tensor([r * len(raw) / sum(raw) for r in raw], dtype=torch.float64)
    out = method.loss(model, x, y)
    assert out.loss.item() == pytest.approx((weights * ce).mean().item(), rel=1e-6)
    assert out.logs["kappa"].item() == pytest.approx(kappa.mean().item())


# ---- CFA -------------------------------------------------------------------------------


def test_cfa_calibrated_eps_beta_and_loss():
    model = tiny_model()
    x, y = batch()
    method = CFA(CFAConfig(begin_epoch=11), num_classes=C)
    method.train_robust_acc = torch.tensor([0.2, 0.5, 0.8])
    method.on_epoch_start(make_ctx(model, 9))  # epoch 10 (from 1): not yet calibrated
    assert method.class_eps(torch.device("cpu")).tolist() == pytest.approx([8 / 255] * 3)
    assert method.class_beta(torch.device("cpu")).tolist() == pytest.approx([6 / 7] * 3)
    method.on_epoch_start(make_ctx(model, 10))  # epoch 11: calibrated
    assert method.class_eps(torch.device("cpu")).tolist() == pytest.approx([0.7 * 8 / 255, 8 / 255, 1.3 * 8 / 255])
    beta = [4.2 / 5.2, 6 / 7, 7.8 / 8.8]
    assert method.class_beta(torch.device("cpu")).tolist() == pytest.approx(beta)

    # the loss from the same adversarial examples (same seed), recomputed by hand
    from robustfair.attacks import pgd

    torch.manual_seed(7)
    out = method.loss(model, x, y)
    torch.manual_seed(7)
    eps = torch.tensor([0.7, 1.0, 1.3])[y] * 8 / 255
    x_adv = pgd(model, x, y, eps=eps, step_size=2 / 255, steps=10, loss="kl", start="normal", start_scale=0.001)
    logits, logits_adv = model(x), model(x_adv)
    ce = F.cross_entropy(logits, y, reduction="none")
    kl = (F.softmax(logits, 1) * (F.log_softmax(logits, 1) - F.log_softmax(logits_adv, 1))).sum(1)
    b = torch.tensor(beta)[y]
    assert out.loss.item() == pytest.approx((((1 - b) * ce + b * kl).sum() / len(y)).item(), rel=1e-5)

    # t_k for the next epoch: per-class accuracy of the training adversarial predictions
    method.on_epoch_start(make_ctx(model, 11))
    torch.manual_seed(7)
    method.loss(model, x, y)
    correct = (logits_adv.argmax(1) == y).float()
    expected = [correct[y == k].mean().item() for k in range(C)]
    method.config = CFAConfig(begin_epoch=11, fawa=False)
    method.on_epoch_end(make_ctx(model, 11))
    assert method.train_robust_acc.tolist() == pytest.approx(expected)


class _Result:
    def __init__(self, acc):
        self.adversarial_acc = np.array(acc)


def test_cfa_fawa_updates_only_above_threshold():
    model = tiny_model()
    method = CFA(CFAConfig(fawa_threshold=0.2, fawa_decay=0.88), num_classes=C)
    worst = iter([[0.5, 0.1, 0.9], [0.5, 0.3, 0.9], [0.5, 0.25, float("nan")], [0.5, 0.19, 0.9]])

    def ctx():
        c = make_ctx(model, 0, val=[batch(3)])
        c.evaluate = lambda m, loader, attack, **kw: _Result(next(worst))
        return c

    assert method.on_epoch_end(ctx())["fawa_updated"] is False
    assert method.averaged_state() is None
    assert method.on_epoch_end(ctx())["fawa_updated"] is True  # first time: a copy
    first = {k: v.clone() for k, v in model.state_dict().items()}
    assert_states_equal(method.averaged_state(), first)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert method.on_epoch_end(ctx())["fawa_updated"] is True  # NaN class ignored
    for key, value in model.state_dict().items():
        assert torch.allclose(method.averaged_state()[key], 0.88 * first[key] + 0.12 * value)
    before = {k: v.clone() for k, v in method.averaged_state().items()}
    assert method.on_epoch_end(ctx())["fawa_updated"] is False  # below: unchanged
    assert_states_equal(method.averaged_state(), before)


def test_cfa_fawa_needs_a_validation_split():
    method = CFA(CFAConfig(), num_classes=C)
    with pytest.raises(ConfigError, match="val_per_class"):
        method.on_epoch_end(make_ctx(tiny_model(), 0, val=None))


# ---- WAT -------------------------------------------------------------------------------


def test_wat_hedge_update_and_weighted_loss_by_hand():
    model = tiny_model()
    x, y = batch()
    val = [batch(9, seed=5)]
    method = WAT(WATConfig(beta=0.0, eta=0.1, cost_normalization="count"), num_classes=C)
    model.eval()
    with torch.no_grad():
        ce_val = F.cross_entropy(model(val[0][0]), val[0][1], reduction="none")
    yv = val[0][1]
    cost = [ce_val[yv == k].mean().item() for k in range(C)] + [ce_val.mean().item()]
    model.train()
    method.on_epoch_end(make_ctx(model, 0, val))
    method.on_epoch_end(make_ctx(model, 1, val))  # same model: the cumulative cost doubles
    e = [math.exp(0.1 * 2 * v) for v in cost]
    weights = [C * v / sum(e) for v in e]
    assert method.weights.tolist() == pytest.approx(weights, rel=1e-5)
    assert method.cumulative_cost.tolist() == pytest.approx([2 * v for v in cost], rel=1e-6)

    ce = F.cross_entropy(model(x), y, reduction="none")  # beta = 0: the cost is the clean CE
    w = torch.tensor(weights)
    expected = (w[y] * ce).sum() / len(y) + w[C] * ce.mean()
    assert method.loss(model, x, y).loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="val_per_class"):
        method.on_epoch_end(make_ctx(model, 2, None))


def test_wat_validation_cost_is_scaled_like_the_code():
    # The code's validate(): per class C * sum_k / (batches * 128), overall sum / (batches * 128),
    # its validation loader yielding batches of 128 (the last one partial).
    model = tiny_model()
    val = [batch(9, seed=5), batch(6, seed=6)]  # 15 images: one batch of 128 in the code
    method = WAT(WATConfig(beta=0.0, eta=0.1), num_classes=C)
    model.eval()
    with torch.no_grad():
        ce = torch.cat([F.cross_entropy(model(xv), yv, reduction="none") for xv, yv in val])
    yv = torch.cat([b[1] for b in val])
    model.train()
    divisor = 1 * 128
    expected = [C * ce[yv == k].sum().item() / divisor for k in range(C)] + [ce.sum().item() / divisor]
    logs = method.on_epoch_end(make_ctx(model, 0, val))
    assert logs["wat_val_cost"] == pytest.approx(expected, rel=1e-6)
    e = [math.exp(0.1 * v) for v in expected]
    assert method.weights.tolist() == pytest.approx([C * v / sum(e) for v in e], rel=1e-5)

    # the code's own split: 300 per class, 3,000 images in 24 batches of 128 -> 3,072
    from robustfair.methods.wat import wat_validation_costs

    sums = torch.tensor([600.0, 900.0, 1500.0], dtype=torch.float64)
    counts = torch.tensor([1000.0, 1000.0, 1000.0], dtype=torch.float64)
    code = wat_validation_costs(sums, counts, "code", 128)
    assert code.tolist() == pytest.approx([3 * 600 / 3072, 3 * 900 / 3072, 3 * 1500 / 3072, 3000 / 3072])
    exact = wat_validation_costs(sums, counts, "count", 128)
    assert exact.tolist() == pytest.approx([0.6, 0.9, 1.5, 1.0])
    assert (code / exact).tolist() == pytest.approx([3000 / 3072] * 4)  # eta scaled by 0.977


def test_wat_initial_weights_are_ones():
    method = WAT(WATConfig(), num_classes=C)
    assert method.weights.tolist() == [1.0] * (C + 1)


# ---- DAFA ------------------------------------------------------------------------------


def test_dafa_similarity_weights_and_weighted_ce():
    model = tiny_model()
    x, y = batch(15)
    # eps = 0 keeps x' = x, so the recorded adversarial softmax is that of the clean batch
    method = DAFA(DAFAConfig(eps=0.0, warmup_epochs=2, lam=1.0), num_classes=C)
    method.on_epoch_start(make_ctx(model, 0))
    method.loss(model, x, y)
    assert method.on_epoch_end(make_ctx(model, 0)) == {}  # not the last warm-up epoch
    assert method.class_weights is None
    method.on_epoch_start(make_ctx(model, 1))
    method.loss(model, x, y)
    logs = method.on_epoch_end(make_ctx(model, 1))
    with torch.no_grad():
        probs = F.softmax(model(x), 1).double()
    similarity = torch.stack([probs[y == k].mean(0) for k in range(C)])
    expected = dafa_class_weights(similarity, 1.0, "code")
    assert method.class_weights.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert logs["dafa_weights"] == pytest.approx(expected.tolist(), rel=1e-5)

    method.on_epoch_start(make_ctx(model, 2))
    ce = F.cross_entropy(model(x), y, reduction="none")
    w = expected.float()[y]
    assert method.loss(model, x, y).loss.item() == pytest.approx((w * ce).mean().item(), rel=1e-5)


def test_dafa_budgets_scale_with_the_class_weight():
    model = tiny_model()
    x, y = batch(6)
    method = DAFA(DAFAConfig(eps=0.1, step_size=0.05, steps=3), num_classes=C)
    method.class_weights = torch.tensor([0.5, 1.0, 1.5])
    method.on_epoch_start(make_ctx(model, 80))
    seen = {}
    import robustfair.methods.dafa as dafa_module

    original = dafa_module.trades_adversarial

    def spy(model, x, y, *, eps, step_size, steps):
        seen.update(eps=eps, step=step_size)
        return original(model, x, y, eps=eps, step_size=step_size, steps=steps)

    dafa_module.trades_adversarial = spy
    try:
        method.loss(model, x, y)
    finally:
        dafa_module.trades_adversarial = original
    weights = torch.tensor([0.5, 1.0, 1.5])[y]
    assert seen["eps"].tolist() == pytest.approx((weights * 0.1).tolist())
    assert seen["step"].tolist() == pytest.approx((weights * 0.05).tolist())


# ---- FAAL ------------------------------------------------------------------------------


def test_faal_loss_is_the_earlier_class_mean_mixture():
    model = tiny_model()
    x, y = batch(12)
    y = torch.tensor([0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2])  # class 1 absent
    method = FAAL(
        FAALConfig(eps=0.0, radius=0.5, score="logit_margin", objective="class_mean", forward_order="adv"),
        num_classes=C,
    )
    assert FAAL.hot_start
    out = method.loss(model, x, y)
    logits = model(x)
    ce = F.cross_entropy(logits, y, reduction="none")
    other = logits.masked_fill(F.one_hot(y, C).bool(), -math.inf).amax(1)
    margins = other - logits.gather(1, y[:, None]).squeeze(1)
    scores = torch.stack([margins[y == k].mean() if (y == k).any() else torch.tensor(0.0) for k in range(C)])
    p = faal_class_weights(scores.detach(), 0.5, torch.tensor([True, False, True]))
    assert p[1].item() == 0.0
    expected = p[0] * ce[y == 0].mean() + p[2] * ce[y == 2].mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# ---- class reweighting baselines -------------------------------------------------------


def test_at_reweight_and_logit_adjust_losses_by_hand():
    model = tiny_model()
    x, y = batch(12)
    logits = model(x)
    ce = F.cross_entropy(logits, y, reduction="none")

    reweight = ATReweight(ATReweightConfig(eps=0.0), num_classes=C)
    reweight.on_epoch_start(make_ctx(model, 0))
    assert reweight.loss(model, x, y).loss.item() == pytest.approx(ce.mean().item(), rel=1e-6)  # no statistic yet
    reweight.robust_acc = torch.tensor([0.5, 0.25, 1.0])
    reweight.on_epoch_start(make_ctx(model, 1))
    w = torch.tensor([6 / 7, 12 / 7, 3 / 7])[y]
    assert reweight.loss(model, x, y).loss.item() == pytest.approx((w * ce).mean().item(), rel=1e-6)

    adjust = ATLogitAdjust(ATLogitAdjustConfig(eps=0.0, max_margin=0.5), num_classes=C)
    adjust.robust_acc = torch.tensor([0.8, 0.6, 1.0])  # errors 0.2, 0.4, 0 -> margins 0.25, 0.5, 0
    adjust.on_epoch_start(make_ctx(model, 1))
    shifted = logits - F.one_hot(y, C) * torch.tensor([0.25, 0.5, 0.0])[y][:, None]
    expected = F.cross_entropy(shifted, y)
    assert adjust.loss(model, x, y).loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_reweight_statistics_from_training_and_validation():
    model = tiny_model()
    x, y = batch(12)
    train = ATReweight(ATReweightConfig(eps=0.0), num_classes=C)
    train.on_epoch_start(make_ctx(model, 0))
    train.loss(model, x, y)
    train.on_epoch_end(make_ctx(model, 0))
    correct = (model(x).argmax(1) == y).float()
    assert train.robust_acc.tolist() == pytest.approx([correct[y == k].mean().item() for k in range(C)])

    val = [batch(9, seed=5)]
    from_val = ATLogitAdjust(ATLogitAdjustConfig(), num_classes=C)
    from_val.on_epoch_start(make_ctx(model, 0, val))
    from_val.on_epoch_end(make_ctx(model, 0, val))
    result = evaluate_classwise(model, val, attack="pgd10", num_classes=C, device="cpu")
    assert from_val.robust_acc.tolist() == pytest.approx(result.robust_acc.tolist())
    with pytest.raises(ConfigError, match="val_per_class"):
        from_val.on_epoch_end(make_ctx(model, 1, None))


# ---- the authors' code, rule by rule ----------------------------------------------------


def code_adjust_lambda(epoch_number, epochs, lam=-1.0):
    """GAIRAT.py's adjust_Lambda ('fixed', Lambda_max = inf), transcribed: epochs count from 1."""
    switch = 60 if epochs >= 110 else 30
    return lam if epoch_number >= switch else math.inf


@pytest.mark.parametrize("epochs,switch", [(50, 30), (100, 30), (120, 60)])
def test_gairat_keeps_uniform_weights_until_the_code_switch_epoch(epochs, switch):
    model = tiny_model(seed=4, dtype=torch.float64)
    x, y = batch(16, seed=2, dtype=torch.float64)
    method = GAIRAT(GAIRATConfig(eps=0.3, step_size=0.1, steps=4, begin_epoch=1, start="none"), num_classes=C)
    x_adv, kappa = gairat_reference(model, x, y, 0.3, 0.1, 4)
    assert len(set(kappa.tolist())) > 1
    model.train()
    ce = F.cross_entropy(model(x_adv), y, reduction="none")
    for epoch_number in (switch - 1, switch):
        lam = code_adjust_lambda(epoch_number, epochs)
        raw = [(1 + math.tanh(lam + (2 - k) * 5 / 2)) / 2 for k in kappa.tolist()]
        weights = torch.tensor([r * len(raw) / sum(raw) for r in raw], dtype=torch.float64)
        method.on_epoch_start(make_ctx(model, epoch_number - 1, num_epochs=epochs))
        loss = method.loss(model, x, y).loss.item()
        assert loss == pytest.approx((weights * ce).mean().item(), rel=1e-6)
    assert method.loss(model, x, y).loss.item() != pytest.approx(ce.mean().item(), rel=1e-6)
    # the earlier rule: lambda from begin_epoch alone
    early = GAIRAT(
        GAIRATConfig(eps=0.3, step_size=0.1, steps=4, begin_epoch=1, start="none", lambda_rule="begin_epoch"),
        num_classes=C,
    )
    early.on_epoch_start(make_ctx(model, 0, num_epochs=epochs))
    assert early.current_lambda() == -1.0


def bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(D, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, C))


def running_stats(model):
    return torch.cat([b.flatten() for name, b in model.named_buffers() if "running" in name])


def test_cfa_at_crafts_in_train_mode_and_replays_the_logging_forward():
    # PKU-ML/CFA train_epoch with pgd_loss: the model stays in train mode while attacking
    # (batch statistics, one BatchNorm update per attack step), the loss forward follows,
    # and after the optimiser step the code runs model(x) once more in train mode.
    eps, step, steps = 0.1, 0.03, 4
    reference, ours = bn_model(), bn_model()
    batches = [batch(12, seed=s) for s in (1, 2)]
    opt_ref = torch.optim.SGD(reference.parameters(), lr=0.1)
    reference.train()
    for i, (x, y) in enumerate(batches):
        torch.manual_seed(20 + i)
        x_adv = (x + (2 * torch.rand(x.shape) - 1) * eps).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad = torch.autograd.grad(F.cross_entropy(reference(x_adv), y), x_adv)[0]
            x_adv = torch.min(torch.max(x_adv.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
        loss = F.cross_entropy(reference(x_adv), y)
        opt_ref.zero_grad()
        loss.backward()
        opt_ref.step()
        reference(x)  # the code's logging forward

    method = CFA(CFAConfig(base="at", eps=eps, step_size=step, steps=steps, fawa=False), num_classes=C)
    method.on_epoch_start(make_ctx(ours, 0))
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    ours.train()
    for i, (x, y) in enumerate(batches):
        torch.manual_seed(20 + i)
        out = method.loss(ours, x, y)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-5)
    method.on_epoch_end(make_ctx(ours, 0))  # replays the last batch's logging forward
    assert torch.allclose(running_stats(ours), running_stats(reference), rtol=0, atol=1e-6)
    for a, b in zip(reference.parameters(), ours.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)

    # eval-mode crafting (the earlier behaviour) is an option, and differs
    frozen = bn_model()
    other = CFA(
        CFAConfig(
            base="at", eps=eps, step_size=step, steps=steps, fawa=False, at_crafting="eval", log_clean_forward=False
        ),
        num_classes=C,
    )
    frozen.train()
    torch.manual_seed(20)
    other.loss(frozen, *batches[0])
    assert (running_stats(frozen) - running_stats(reference)).abs().max() > 1e-3


def code_faal_weights(class_margin, counts, radius):
    """TrustAI/FAAL's DAW problem, solved here with scipy: max sum_i p[y_i] m[y_i] = sum_c n_c m_c p_c
    over the simplex of all C classes, subject to sum_c kl_div(1/C, p_c) <= r."""
    from scipy.optimize import minimize

    a = (counts * class_margin).astype(np.float64)
    n = len(a)
    u = np.full(n, 1.0 / n)
    constraints = [
        {"type": "eq", "fun": lambda p: p.sum() - 1.0},
        {"type": "ineq", "fun": lambda p: radius - np.sum(u * np.log(u / p) - u + p)},
    ]
    best = None
    for seed in range(4):
        start = np.random.RandomState(seed).dirichlet(np.full(n, 20.0))
        res = minimize(
            lambda p: -a @ p,
            start,
            jac=lambda p: -a,
            bounds=[(1e-12, 1.0)] * n,
            constraints=constraints,
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.x


FAAL_C = 6


@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 2, 3, 4, 5] * 3,  # balanced
        [0, 0, 2, 2, 2, 4, 5, 5, 0, 4, 2, 5],  # classes 1 and 3 absent
        [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 5, 5, 5, 5, 5],  # unequal counts
    ],
    ids=["balanced", "two_missing", "unequal"],
)
def test_faal_class_distribution_and_loss_follow_the_code(labels):
    y = torch.tensor(labels)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, FAAL_C))
    x = torch.rand(len(y), 3, 2, 2, generator=torch.Generator().manual_seed(4))
    method = FAAL(FAALConfig(eps=0.0, radius=0.5), num_classes=FAAL_C)  # eps 0: x' = x
    out = method.loss(model, x, y)

    logits = model(x)
    probs = F.softmax(logits, dim=1)
    margins = torch.stack(
        [max(probs[i, j] for j in range(FAAL_C) if j != y[i]) - probs[i, y[i]] for i in range(len(y))]
    )
    counts = np.bincount(y.numpy(), minlength=FAAL_C).astype(np.float64)
    class_margin = np.array([margins[y == c].mean().item() if counts[c] else -1.0 for c in range(FAAL_C)])
    p = code_faal_weights(class_margin, counts, 0.5)

    from robustfair.methods.faal import faal_weights_and_loss

    ce = F.cross_entropy(logits, y, reduction="none")
    weights, loss = faal_weights_and_loss(ce, margins.detach(), y, FAAL_C, 0.5)
    assert weights.numpy() == pytest.approx(p, abs=2e-6)
    assert (weights > 0).all()  # absent classes keep their place in the simplex
    u = 1.0 / FAAL_C
    assert float(np.sum(u * np.log(u / weights.numpy()))) == pytest.approx(0.5, abs=1e-9)  # KL(U || p) = r
    expected = (torch.tensor(p, dtype=torch.float32)[y] * ce).sum() * FAAL_C / len(y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
