"""ERM, PGD-AT and TRADES losses pinned to independent computations on a tiny fixed model.

The references below re-implement each algorithm from METHODS.md in plain loops with
hand-written softmax/log-sum-exp, sharing no code with robustfair except the model.
"""

import math

import pytest
import torch
from torch import nn

from robustfair.methods import METHODS


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    # BatchNorm makes eval-mode crafting and train-mode loss forwards distinguishable.
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 2, 2, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return x, y


def hand_log_softmax(z):
    rows = []
    for row in z:
        m = max(row.tolist())
        log_norm = m + math.log(sum(math.exp(v - m) for v in row.tolist()))
        rows.append([v - log_norm for v in row.tolist()])
    return torch.tensor(rows, dtype=torch.float64)


def hand_ce(z, y):
    ls = hand_log_softmax(z)
    return sum(-ls[i, int(y[i])].item() for i in range(len(y))) / len(y)


def hand_kl_sum(z_p, z_q):
    lp, lq = hand_log_softmax(z_p), hand_log_softmax(z_q)
    total = 0.0
    for i in range(lp.shape[0]):
        for k in range(lp.shape[1]):
            total += math.exp(lp[i, k].item()) * (lp[i, k].item() - lq[i, k].item())
    return total


def build(name, **fields):
    cls = METHODS[name]
    return cls(cls.Config(**fields), num_classes=3)


def test_erm_loss_is_mean_cross_entropy():
    model, (x, y) = tiny_model().train(), batch()
    out = build("erm").loss(model, x, y)
    logits = model(x).detach()
    assert out.loss.item() == pytest.approx(hand_ce(logits, y), abs=1e-6)


def reference_pgd_ce(model, x, y, eps, step, steps, seed):
    torch.manual_seed(seed)
    model.eval()
    x_adv = x + (2 * torch.rand(x.shape) - 1) * eps
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    model.train()
    return x_adv.detach()


def test_pgd_at_loss_matches_reference():
    model, (x, y) = tiny_model().train(), batch()
    torch.manual_seed(7)
    out = build("pgd_at", eps=0.1, step_size=0.03, steps=5).loss(model, x, y)
    assert model.training, "crafting must restore train mode"
    x_adv = reference_pgd_ce(model, x, y, 0.1, 0.03, 5, seed=7)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    expected = hand_ce(model(x_adv).detach(), y)
    assert out.loss.item() == pytest.approx(expected, abs=1e-5)


def reference_trades(model, x, y, eps, step, steps, beta, seed):
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad():
        p_clean = torch.softmax(model(x), dim=1)
    x_adv = x + 0.001 * torch.randn(x.shape)
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        log_q = torch.log_softmax(model(x_adv), dim=1)
        kl = (p_clean * (p_clean.log() - log_q)).sum()
        (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    model.train()
    logits, logits_adv = model(x).detach(), model(x_adv).detach()
    return hand_ce(logits, y) + beta * hand_kl_sum(logits, logits_adv) / len(y)


@pytest.mark.parametrize("beta", [1.0, 6.0])
def test_trades_loss_matches_reference(beta):
    model, (x, y) = tiny_model().train(), batch()
    torch.manual_seed(11)
    out = build("trades", eps=0.1, step_size=0.03, steps=4, beta=beta).loss(model, x, y)
    expected = reference_trades(model, x, y, 0.1, 0.03, 4, beta, seed=11)
    assert out.loss.item() == pytest.approx(expected, abs=1e-5)


def test_trades_beta_zero_is_clean_cross_entropy():
    model, (x, y) = tiny_model().train(), batch()
    out = build("trades", beta=0.0, steps=2).loss(model, x, y)
    assert out.loss.item() == pytest.approx(hand_ce(model(x).detach(), y), abs=1e-6)


def test_trades_gradient_flows_through_clean_branch():
    model, (x, y) = tiny_model().train(), batch()
    method = build("trades", eps=0.1, step_size=0.03, steps=2, beta=6.0)
    out = method.loss(model, x, y)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
