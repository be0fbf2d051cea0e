"""FRL ("To be Robust or to be Fair", Xu et al., ICML 2021): update steps pinned to hand-computed values.

Every expected number below was worked out by hand from the formulas in METHODS.md (FRL)
and is written as a literal, so a change in any formula fails a test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustfair.errors import ConfigError
from robustfair.methods.base import EpochContext
from robustfair.methods.frl import (
    FRLRemargin,
    FRLReweight,
    FRLReweightRemargin,
    frl_class_weights,
    frl_margin_factors,
    frl_multiplier_rate,
    frl_normalize_multiplier,
    frl_update_multipliers,
    frl_validation_errors,
    frl_violations,
    frl_weighted_loss,
)
from robustfair.metrics import classwise_result
from robustfair.typed_config import build

torch.set_num_threads(1)


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def assert_close(actual, expected, tol=1e-12):
    actual = [float(v) for v in actual]
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a == pytest.approx(e, abs=tol), (actual, expected)


# Hand-made validation errors for C = 4 classes (balanced, so e and b are the means).
E_C = t([0.10, 0.20, 0.30, 0.40])  # e = 0.25
B_C = t([0.30, 0.20, 0.50, 0.20])  # b = 0.30


def test_violations_code_and_paper():
    g0, g1 = frl_violations(E_C, B_C, 0.25, 0.30, tau0=0.05, tau1=0.05)
    # g0 = e_c - 0.25 - 0.05; g1 = b_c - 0.30 - 0.05
    assert_close(g0, [-0.20, -0.10, 0.00, 0.10])
    assert_close(g1, [-0.05, -0.15, 0.15, -0.15])
    g0p, g1p = frl_violations(E_C, B_C, 0.25, 0.30, tau0=0.05, tau1=0.05, positive_part=True)
    assert_close(g0p, [0.0, 0.0, 0.0, 0.10])
    assert_close(g1p, [0.0, 0.0, 0.15, 0.0])


def test_normalize_clamps_then_rescales_only_above_lim():
    assert_close(frl_normalize_multiplier(t([-0.1, 0.2, 0.1, 0.0]), 0.5), [0.0, 0.2, 0.1, 0.0])
    # sum 0.6 > 0.3 -> scaled by 0.5
    assert_close(frl_normalize_multiplier(t([-0.1, 0.4, 0.2, 0.0]), 0.3), [0.0, 0.2, 0.1, 0.0])


def test_update_from_zero_then_weights_and_margins():
    g0, g1 = frl_violations(E_C, B_C, 0.25, 0.30, tau0=0.05, tau1=0.05)
    zero = torch.zeros(4, dtype=torch.float64)
    l0, l1, l2 = frl_update_multipliers(
        zero, zero, zero, g0, g1, a1=0.5, a2=1.0, lim=0.1, reweight_clean=True, reweight_boundary=True, remargin=True
    )
    # l0 = clamp(0.5 * g0) = [0, 0, 0, 0.05], sum 0.05 <= 0.1: kept
    assert_close(l0, [0.0, 0.0, 0.0, 0.05])
    # l1 = clamp(2 * 0.5 * g1) = [0, 0, 0.15, 0], sum 0.15 > 0.1: rescaled to 0.1
    assert_close(l1, [0.0, 0.0, 0.10, 0.0])
    # l2 = 1.0 * g1, no clamp, no rescale
    assert_close(l2, [-0.05, -0.15, 0.15, -0.15])

    # w = 1/4 + l - sum(l)/4
    assert_close(frl_class_weights(l0), [0.2375, 0.2375, 0.2375, 0.2875])
    assert_close(frl_class_weights(l1), [0.225, 0.225, 0.325, 0.225])
    # s = clamp(exp(2 l2), 0.98, 3): exp(-0.1) = 0.9048, exp(-0.3) = 0.7408 -> 0.98; exp(0.3) = 1.34986
    assert_close(frl_margin_factors(l2, cap=3.0), [0.98, 0.98, 1.3498588075760032, 0.98])
    # the cap: exp(2 * 0.6) = 3.32 -> 3 (RW+RM) or 2.5 (other variants)
    assert_close(frl_margin_factors(t([0.6]), cap=3.0), [3.0])
    assert_close(frl_margin_factors(t([0.6]), cap=2.5), [2.5])


def test_update_accumulates_and_respects_variant_switches():
    g0, g1 = frl_violations(E_C, B_C, 0.25, 0.30, tau0=0.05, tau1=0.05)
    l0 = t([0.2, 0.1, 0.3, 0.0])
    l1 = t([0.1, 0.0, 0.0, 0.1])
    l2 = t([0.5, 0.0, 0.0, 0.0])
    # RW: l0 + 0.5 g0 = [0.1, 0.05, 0.3, 0.05] (sum 0.5 > 0.25 -> x0.5);
    # l1 + 2 * 0.5 * g1 = [0.05, -0.15, 0.15, -0.05] -> clamp [0.05, 0, 0.15, 0] (sum 0.2 <= 0.25)
    n0, n1, n2 = frl_update_multipliers(
        l0, l1, l2, g0, g1, a1=0.5, a2=1.0, lim=0.25, reweight_clean=True, reweight_boundary=True, remargin=False
    )
    assert_close(n0, [0.05, 0.025, 0.15, 0.025])
    assert_close(n1, [0.05, 0.0, 0.15, 0.0])
    assert_close(n2, [0.5, 0.0, 0.0, 0.0])  # RW leaves l2 alone
    # RM (official frlrm.py): l1 frozen, l2 += a2 * g1
    n0, n1, n2 = frl_update_multipliers(
        l0, l1, l2, g0, g1, a1=0.5, a2=1.0, lim=0.25, reweight_clean=True, reweight_boundary=False, remargin=True
    )
    assert_close(n1, [0.1, 0.0, 0.0, 0.1])
    assert_close(n2, [0.45, -0.15, 0.15, -0.15])


def test_multiplier_rate_halves_like_the_code():
    # code: `if now_epoch % 40 == 0: rate1 /= 2` with 1-based epochs, before the update
    assert frl_multiplier_rate(0.05, 0) == 0.05
    assert frl_multiplier_rate(0.05, 38) == 0.05
    assert frl_multiplier_rate(0.05, 39) == 0.025
    assert frl_multiplier_rate(0.05, 78) == 0.025
    assert frl_multiplier_rate(0.05, 79) == 0.0125
    assert frl_multiplier_rate(0.05, 119) == 0.00625


def test_weighted_loss_separate_and_joint():
    ce = torch.tensor([1.0, 2.0, 3.0])
    kl = torch.tensor([0.5, 0.0, 1.0])
    w0 = torch.tensor([0.2, 0.3, 0.1])  # sum 0.6
    w1 = torch.tensor([0.5, 0.25, 0.25])  # sum 1.0
    # separate: (0.2 + 0.6 + 0.3) / 0.6 + 2 * (0.25 + 0 + 0.25) / 1.0
    assert float(frl_weighted_loss(ce, kl, w0, w1, beta=2.0)) == pytest.approx(1.1 / 0.6 + 1.0, rel=1e-6)
    # joint: (1.1 + 2 * 0.5) / (0.6 + 1.0)
    joint = frl_weighted_loss(ce, kl, w0, w1, beta=2.0, normalization="joint")
    assert float(joint) == pytest.approx(2.1 / 1.6, rel=1e-6)
    with pytest.raises(ConfigError, match="separate, joint"):
        frl_weighted_loss(ce, kl, w0, w1, beta=2.0, normalization="both")


def _result(y, clean, adv, num_classes=2):
    return classwise_result(torch.tensor(y), torch.tensor(clean), torch.tensor(adv), num_classes=num_classes)


def test_validation_errors_follow_the_code():
    # class 0: clean [0, 0, 0, 1] -> acc 3/4; adversarial [0, 1, 1, 0] -> adv acc 2/4
    #   (the last sample, wrong when clean, is "fixed" by the attack: the code counts it)
    # class 1: clean [1, 1] -> acc 1; adversarial [0, 1] -> adv acc 1/2
    result = _result([0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 1])
    e_c, b_c, e, b = frl_validation_errors(result)
    assert_close(e_c, [0.25, 0.0])
    assert_close(b_c, [0.25, 0.5])
    assert e == pytest.approx(1 / 6)  # 1 - 5/6
    assert b == pytest.approx(2 / 6)  # (5 - 3) / 6


# ---- the method: epoch hook, state, resume, training step ----------------------------------------

RESULTS = [  # one fake validation result per epoch, 2 classes
    _result([0] * 10 + [1] * 10, [0] * 10 + [1] * 6 + [0] * 4, [0] * 8 + [1] * 2 + [1] * 3 + [0] * 7),
    _result([0] * 10 + [1] * 10, [0] * 9 + [1] + [1] * 7 + [0] * 3, [0] * 7 + [1] * 3 + [1] * 4 + [0] * 6),
    _result([0] * 10 + [1] * 10, [0] * 10 + [1] * 8 + [0] * 2, [0] * 9 + [1] + [1] * 5 + [0] * 5),
]


def _ctx(epoch: int, model: nn.Module) -> EpochContext:
    return EpochContext(
        epoch=epoch,
        num_epochs=40,
        model=model,
        device=torch.device("cpu"),
        num_classes=2,
        val_loader=[("unused", "unused")],
        evaluate=lambda m, loader, attack: RESULTS[epoch],
    )


def _method(cls, **fields):
    return cls(build(cls.Config, fields), num_classes=2)


def test_epoch_hook_matches_hand_computation_rwrm():
    method = _method(FRLReweightRemargin, tau0=0.0, tau1=0.0)
    logs = method.on_epoch_start(_ctx(0, nn.Linear(2, 2)))
    # epoch 0: class 0 clean acc 1.0, adv acc 0.8; class 1 clean 0.6, adv 0.3
    # e_c = [0, 0.4], e = 0.2; b_c = [0.2, 0.3], b = 0.25
    assert_close(logs["val_clean_error"], [0.0, 0.4], 1e-12)
    assert_close(logs["val_boundary_error"], [0.2, 0.3], 1e-12)
    # g0 = [-0.2, 0.2], g1 = [-0.05, 0.05]; a1 = 0.05, a2 = 0.2, lim 0.5
    # l0 = clamp([-0.01, 0.01]) = [0, 0.01]; l1 = clamp(2 * 0.05 * g1) = [0, 0.005]; l2 = 0.2 g1
    assert_close(logs["l0"], [0.0, 0.01])
    assert_close(logs["l1"], [0.0, 0.005])
    assert_close(logs["l2"], [-0.01, 0.01])
    assert_close(logs["w0"], [0.495, 0.505])  # 1/2 + l0 - 0.01/2
    assert_close(logs["w1"], [0.4975, 0.5025])
    assert_close(logs["eps_factor"], [math.exp(-0.02), math.exp(0.02)])  # both inside [0.98, 3]
    assert logs["a1"] == 0.05
    for key in ("l0", "l1", "l2", "w0", "w1", "eps_factor", "val_clean_error", "val_boundary_error"):
        assert isinstance(logs[key], list) and all(isinstance(v, float) for v in logs[key])


def test_reweight_keeps_uniform_eps_and_fixed_step():
    method = _method(FRLReweight)
    method.on_epoch_start(_ctx(0, nn.Linear(2, 2)))
    method.l2 = torch.tensor([0.3, -0.3], dtype=torch.float64)  # ignored by RW
    method._device_cache.clear()
    eps, step = method.attack_budget(torch.tensor([0, 1, 1]))
    assert torch.allclose(eps, torch.full((3,), 8 / 255))
    assert step == pytest.approx(2 / 255)


def test_remargin_budget_per_sample_and_step_rule():
    method = _method(FRLReweightRemargin)
    method.l2 = torch.tensor([0.25, -0.5], dtype=torch.float64)  # s = [exp(0.5), 0.98]
    eps, step = method.attack_budget(torch.tensor([0, 1, 0]))
    s0 = math.exp(0.5)
    assert torch.allclose(eps, torch.tensor([8 / 255 * s0, 8 / 255 * 0.98, 8 / 255 * s0]))
    assert torch.allclose(step, torch.full((3,), 8 / 255 * s0 / 4))  # max_i eps_i / 4
    rm = _method(FRLRemargin)
    rm.l2 = torch.tensor([0.25, -0.5], dtype=torch.float64)
    _, step_rm = rm.attack_budget(torch.tensor([0, 1]))
    assert step_rm == pytest.approx(2 / 255)


def test_resume_continues_identically():
    model = nn.Linear(2, 2)
    straight = _method(FRLReweightRemargin)
    for epoch in range(3):
        final_logs = straight.on_epoch_start(_ctx(epoch, model))

    first = _method(FRLReweightRemargin)
    first.on_epoch_start(_ctx(0, model))
    first.on_epoch_start(_ctx(1, model))
    state = first.state_dict()
    resumed = _method(FRLReweightRemargin)
    resumed.load_state_dict(state)
    # a repeated hook for an epoch already applied (resume mid-epoch) changes nothing
    again = resumed.on_epoch_start(_ctx(1, model))
    assert again["l0"] == [float(v) for v in first.l0]
    resumed_logs = resumed.on_epoch_start(_ctx(2, model))
    for key in ("l0", "l1", "l2", "w0", "w1", "eps_factor"):
        assert resumed_logs[key] == final_logs[key]
    assert resumed.state_dict()["a1"] == straight.state_dict()["a1"]


def test_missing_validation_split_is_a_clear_error():
    method = _method(FRLReweight)
    ctx = EpochContext(
        epoch=0,
        num_epochs=40,
        model=nn.Linear(2, 2),
        device=torch.device("cpu"),
        num_classes=2,
        val_loader=None,
        evaluate=lambda *a: None,
    )
    with pytest.raises(ConfigError, match="val_per_class"):
        method.on_epoch_start(ctx)


def test_variant_defaults_follow_the_code():
    rw, rwrm, rm = FRLReweight.Config(), FRLReweightRemargin.Config(), FRLRemargin.Config()
    assert (rw.beta, rw.tau0, rw.tau1, rw.a1, rw.lim) == (1.5, 0.1, 0.1, 0.05, 0.5)
    assert (rwrm.beta, rwrm.tau0, rwrm.a2, rwrm.lim, rwrm.margin_cap, rwrm.step_rule) == (
        1.5,
        0.07,
        0.2,
        0.5,
        3.0,
        "max_eps_quarter",
    )
    assert (rm.beta, rm.tau0, rm.a2, rm.lim, rm.margin_cap, rm.step_rule) == (1.0, 0.1, 0.1, 0.3, 2.5, "fixed")
    assert rw.eps == pytest.approx(8 / 255) and rw.steps == 10 and not rw.positive_part
    assert FRLReweight.hot_start and FRLReweightRemargin.hot_start and FRLRemargin.hot_start
    assert not hasattr(rw, "a2")  # Reweight has no Remargin multiplier
    with pytest.raises(ConfigError, match="margin_floor"):
        build(FRLReweightRemargin.Config, {"margin_floor": 3.5})


def test_training_step_uses_class_weights_and_per_class_eps():
    from robustfair.losses import cross_entropy, trades_kl
    from robustfair.methods.trades import trades_adversarial

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 2))
    x, y = torch.rand(8, 3, 2, 2), torch.tensor([0, 1] * 4)
    method = _method(FRLReweightRemargin)
    method.l0 = t([0.3, 0.0])  # w0 = [0.65, 0.35]
    method.l1 = t([0.0, 0.2])  # w1 = [0.4, 0.6]
    method.l2 = t([0.2, 0.0])  # s = [exp(0.4), 1]
    model.train()
    torch.manual_seed(1)
    out = method.loss(model, x, y)
    assert model.training

    eps = torch.where(y == 0, 8 / 255 * math.exp(0.4), 8 / 255)
    torch.manual_seed(1)
    x_adv = trades_adversarial(model, x, y, eps=eps, step_size=float(eps.max()) / 4, steps=10)
    assert bool(((x_adv - x).abs().flatten(1).max(1).values <= eps + 1e-6).all())
    assert float((x_adv - x)[y == 0].abs().max()) > 8 / 255 + 1e-4  # the larger class-0 budget is used
    logits, logits_adv = model(x), model(x_adv)
    w0 = torch.where(y == 0, 0.65, 0.35)
    w1 = torch.where(y == 0, 0.4, 0.6)
    expected = (w0 * cross_entropy(logits, y)).sum() / w0.sum() + 1.5 * (
        w1 * trades_kl(logits, logits_adv)
    ).sum() / w1.sum()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model[1].weight.grad.abs().sum() > 0


def test_distributed_denominators_reproduce_the_single_process_loss():
    ce = torch.tensor([1.0, 2.0, 3.0, 0.5])
    kl = torch.tensor([0.5, 0.0, 1.0, 0.25])
    w0 = torch.tensor([0.2, 0.3, 0.1, 0.4])
    w1 = torch.tensor([0.5, 0.25, 0.25, 0.1])
    single = frl_weighted_loss(ce, kl, w0, w1, beta=2.0)
    halves = (slice(0, 2), slice(2, 4))
    method = _method(FRLReweight)
    rank_losses = []
    for rank, part in enumerate(halves):
        other = halves[1 - rank]
        other_sums = torch.stack([w0[other].sum(), w1[other].sum(), torch.tensor(1.0)])
        method._all_reduce_sum = lambda tensor, o=other_sums: tensor + o  # what 2 ranks would sum
        denominators = method._global_denominators(w0[part], w1[part])
        rank_losses.append(
            frl_weighted_loss(ce[part], kl[part], w0[part], w1[part], beta=2.0, denominators=denominators)
        )
    # DDP averages the ranks' gradients, i.e. optimises the mean of the rank losses
    torch.testing.assert_close((rank_losses[0] + rank_losses[1]) / 2, single)


@pytest.mark.parametrize(
    "preset,cls,tau",
    [
        ("frl_rw", FRLReweight, 0.1),
        ("frl_rwrm", FRLReweightRemargin, 0.07),
        ("frl_rwrm_005", FRLReweightRemargin, 0.05),
        ("frl_rm", FRLRemargin, 0.1),
    ],
)
def test_presets(preset, cls, tau):
    from pathlib import Path

    from robustfair.engine.config import load_raw_config

    raw = load_raw_config(str(Path(__file__).resolve().parents[1] / "configs" / f"{preset}.yaml"))
    section = raw["method"]
    assert section["name"] == cls.name
    config = build(cls.Config, {k: v for k, v in section.items() if k != "name"})
    defaults = cls.Config()
    assert config.tau0 == config.tau1 == tau
    for field in ("beta", "a1", "lim", "steps"):
        assert getattr(config, field) == getattr(defaults, field)
    assert config.eps == pytest.approx(8 / 255, abs=1e-15)
    assert raw["init_from"] == "runs/cifar10_preactresnet18_pgd_at"
    assert raw["optim"]["lr"] == 0.001 and raw["optim"]["weight_decay"] == 0.0005
    assert raw["train"]["epochs"] == (120 if preset == "frl_rm" else 40)
    assert raw["model"]["name"] == "preact_resnet18"
    assert raw["data"]["val_per_class"] == 300 and raw["data"]["val_position"] == "last"


def test_presets_resolve_through_the_registry():
    from pathlib import Path

    from robustfair.engine.config import load_config
    from robustfair.methods import METHODS

    expected = {"frl_rw": FRLReweight, "frl_rwrm": FRLReweightRemargin, "frl_rm": FRLRemargin}
    if not set(expected) <= set(METHODS.names()):
        pytest.skip("frl_rw / frl_rwrm / frl_rm are not registered in robustfair.methods.METHODS yet")
    for name, cls in expected.items():
        assert METHODS[name] is cls
    configs = Path(__file__).resolve().parents[1] / "configs"
    for preset in ("frl_rw", "frl_rwrm", "frl_rwrm_005", "frl_rm"):
        config = load_config(str(configs / f"{preset}.yaml"))
        assert isinstance(config.method_config(), METHODS[config.method_name()].Config)
