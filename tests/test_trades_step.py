"""TRADES and FRL steps against the TRADES code's structure, written out here.

The reference below is an independent transcription of the authors' step (yaodongyu/TRADES
`trades_loss`; FRL's `trades_adv` and `train_model` in hannxu123/fair_robust): the start
x + 0.001 N(0, I) not clamped to [0, 1], sign steps on `kl_div(..., reduction="sum")`,
then train-mode forwards f(x) (CE), f(x'), f(x) (inside the KL). Inputs have pixels at
exactly 0 and 1 so the start clamp matters, and the model has BatchNorm so the forwards'
number and order show in the running statistics.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustfair.losses import trades_kl
from robustfair.methods.frl import FRLReweightRemargin, FRLRWRMConfig
from robustfair.methods.trades import TRADES, TRADESConfig, trades_adversarial

C = 4


def bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, C))


def saturated_batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 2, 2, generator=g)
    u = torch.rand(x.shape, generator=g)
    x = torch.where(u < 0.2, torch.zeros_like(x), torch.where(u > 0.8, torch.ones_like(x), x))
    return x, torch.arange(n) % C


def running_stats(model):
    return torch.cat([b.flatten() for name, b in model.named_buffers() if "running" in name])


def reference_attack(model, x, eps, step, steps, seed):
    """The code's KL-PGD: unclamped 0.001-scale Gaussian start, sign steps on the summed kl_div."""
    model.eval()
    torch.manual_seed(seed)
    x_adv = x.detach() + 0.001 * torch.randn(x.shape)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        grad = torch.autograd.grad(loss, [x_adv])[0]
        x_adv = x_adv.detach() + step * torch.sign(grad)
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    model.train()
    return x_adv


def reference_trades_loss(model, x, x_adv, y, beta):
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / len(x)) * F.kl_div(
        F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum"
    )
    return loss_natural + beta * loss_robust


def test_trades_start_is_not_clamped_before_the_first_gradient():
    model = bn_model()
    x, y = saturated_batch()
    torch.manual_seed(3)
    start = trades_adversarial(model, x, y, eps=0.031, step_size=0.007, steps=0)
    torch.manual_seed(3)
    expected = x + 0.001 * torch.randn(x.shape)
    assert torch.equal(start, expected)
    assert (start < 0).any() and (start > 1).any()  # the code's start leaves the box at saturated pixels
    torch.manual_seed(3)
    clamped = trades_adversarial(model, x, y, eps=0.031, step_size=0.007, steps=0, clamp_start=True)
    assert torch.equal(clamped, expected.clamp(0, 1))  # BAT's code clamps: still available


def test_trades_step_equals_the_code_points_loss_and_running_statistics():
    reference, ours = bn_model(), bn_model()
    x, y = saturated_batch()
    x_ref = reference_attack(reference, x, 0.031, 0.007, 10, seed=5)
    loss_ref = reference_trades_loss(reference, x, x_ref, y, beta=6.0)
    loss_ref.backward()

    torch.manual_seed(5)
    x_adv = trades_adversarial(ours, x, y, eps=0.031, step_size=0.007, steps=10)
    assert torch.equal(x_adv, x_ref)  # same sign steps, bit for bit

    method = TRADES(TRADESConfig(), num_classes=C)
    ours.train()
    torch.manual_seed(5)
    out = method.loss(ours, x, y)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(loss_ref.item(), rel=1e-6)
    for a, b in zip(reference.parameters(), ours.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)
    # f(x) twice and f(x') once in train mode: three BatchNorm updates, as in the code
    assert torch.equal(running_stats(ours), running_stats(reference))


def test_trades_shared_forward_option_keeps_gradients_not_running_statistics():
    default, shared = bn_model(), bn_model()
    x, y = saturated_batch()
    outs = []
    for model, order in ((default, "clean_adv_clean"), (shared, "clean_adv")):
        model.train()
        torch.manual_seed(5)
        out = TRADES(TRADESConfig(forward_order=order), num_classes=C).loss(model, x, y)
        out.loss.backward()
        outs.append(out.loss.item())
    assert outs[0] == pytest.approx(outs[1], rel=1e-6)
    for a, b in zip(default.parameters(), shared.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    assert (running_stats(default) - running_stats(shared)).abs().max() > 1e-4


def test_frl_step_equals_the_code_with_per_class_eps_and_weights():
    reference, ours = bn_model(), bn_model()
    x, y = saturated_batch()
    method = FRLReweightRemargin(FRLRWRMConfig(), num_classes=C)
    method.l0 = torch.tensor([0.1, 0.0, 0.05, 0.0], dtype=torch.float64)
    method.l1 = torch.tensor([0.0, 0.2, 0.0, 0.1], dtype=torch.float64)
    method.l2 = torch.tensor([0.1, 0.3, 0.0, -0.1], dtype=torch.float64)
    # the code's class weights 1/C + l_c - sum(l)/C and eps factors clamp(exp(2 l2), 0.98, 3)
    w0 = torch.tensor([0.25 + 0.1 - 0.15 / 4, 0.25 - 0.15 / 4, 0.25 + 0.05 - 0.15 / 4, 0.25 - 0.15 / 4])
    w1 = torch.tensor([0.25 - 0.3 / 4, 0.25 + 0.2 - 0.3 / 4, 0.25 - 0.3 / 4, 0.25 + 0.1 - 0.3 / 4])
    factor = torch.exp(2 * torch.tensor([0.1, 0.3, 0.0, -0.1])).clamp(0.98, 3.0)
    eps = (8 / 255 * factor[y]).view(-1, 1, 1, 1)
    step = float(eps.max()) / 4

    x_ref = reference_attack(reference, x, eps, step, 10, seed=9)
    loss_natural = F.cross_entropy(reference(x), y, reduction="none")
    loss_bndy = F.kl_div(F.log_softmax(reference(x_ref), dim=1), F.softmax(reference(x), dim=1), reduction="none").sum(
        1
    )
    loss_ref = (loss_natural * w0[y]).sum() / w0[y].sum() + 1.5 * (loss_bndy * w1[y]).sum() / w1[y].sum()
    loss_ref.backward()

    ours.train()
    torch.manual_seed(9)
    out = method.loss(ours, x, y)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(loss_ref.item(), rel=1e-5)
    for a, b in zip(reference.parameters(), ours.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    assert torch.allclose(running_stats(ours), running_stats(reference), rtol=0, atol=1e-7)


def test_kl_is_the_code_expression_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    clean = 3 * torch.randn(32, 10, generator=g)
    adv = (clean + 0.01 * torch.randn(32, 10, generator=g)).requires_grad_(True)
    expected = F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="none").sum(1)
    got = trades_kl(clean, adv)
    assert torch.equal(got, expected)
    # the attack ascends the batch sum: its input gradient is the code's reduction="sum" one, exactly
    (ours,) = torch.autograd.grad(got.sum(), adv)
    (theirs,) = torch.autograd.grad(F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="sum"), adv)
    assert torch.equal(ours, theirs)


def test_kl_keeps_float64_and_computes_half_precision_in_float32():
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(8, 5, generator=g, dtype=torch.float64)
    adv = clean + 1e-4 * torch.randn(8, 5, generator=g, dtype=torch.float64)
    got = trades_kl(clean, adv)
    assert got.dtype == torch.float64
    assert torch.equal(got, F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="none").sum(1))
    assert trades_kl(clean.bfloat16(), adv.bfloat16()).dtype == torch.float32
