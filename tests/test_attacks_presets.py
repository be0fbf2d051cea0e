"""Named attack presets: defaults, overrides, errors, spec, and a sweep over every preset."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

from robustfair.attacks import ATTACKS, ConfiguredAttack, make_attack, pgd
from robustfair.errors import ConfigError, UnknownNameError

HAS_AUTOATTACK = importlib.util.find_spec("pyautoattack") is not None


def tiny_model_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample correct at the start
    return model, x, y


def test_expected_presets_and_their_defaults():
    assert {"fgsm", "pgd10", "pgd20", "pgd20_trades", "pgd100", "cw20", "pgd20_l2", "autoattack"} <= set(ATTACKS)
    spec = make_attack("pgd20").spec
    assert spec == {
        "name": "pgd20",
        "eps": 8 / 255,
        "norm": "linf",
        "step_size": 2 / 255,
        "steps": 20,
        "loss": "ce",
        "restarts": 1,
        "start": "uniform",
        "seed": None,
        "implementation": "robustfair 0.1.0",
    }
    assert make_attack("pgd10").spec["steps"] == 10
    assert make_attack("pgd100").spec["steps"] == 100
    assert make_attack("pgd20_trades").spec["step_size"] == 0.003
    assert make_attack("cw20").spec["loss"] == "margin"
    l2 = make_attack("pgd20_l2").spec
    assert (l2["norm"], l2["eps"], l2["step_size"]) == ("l2", 0.5, 2.5 * 0.5 / 20)
    assert make_attack("fgsm").spec["steps"] == 1


def test_pgd40_with_restarts_moves_its_step_with_eps():
    """MNIST's evaluation attack: 40 steps of eps/10 (0.03 at eps 0.3), 3 restarts."""
    from robustfair.attacks.presets import budget

    overrides = budget("pgd40_r3", eps=0.3)
    assert overrides == {"eps": 0.3, "step_size": pytest.approx(0.03)}
    spec = make_attack("pgd40_r3", **overrides).spec
    assert (spec["steps"], spec["restarts"], spec["step_size"]) == (40, 3, pytest.approx(0.03))
    assert make_attack("autoattack").spec["version"] == "standard"
    for name in ATTACKS:
        json.dumps(make_attack(name).spec)  # results.json-ready


def test_overrides_are_applied_and_recorded():
    attack = make_attack("pgd20", eps=4 / 255, steps=5, restarts=2, loss="margin", norm="l2")
    assert isinstance(attack, ConfiguredAttack)
    assert attack.spec["eps"] == 4 / 255 and attack.spec["steps"] == 5 and attack.spec["restarts"] == 2
    assert attack.spec["loss"] == "margin" and attack.spec["norm"] == "l2"
    assert attack.spec["step_size"] == 2 / 255  # not rescaled with eps


def test_configured_attack_equals_the_function_call():
    model, x, y = tiny_model_and_data()
    attack = make_attack("pgd20", eps=0.1, steps=7, seed=3)
    expected = pgd(model, x, y, eps=0.1, step_size=2 / 255, steps=7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(attack(model, x, y), expected)
    assert torch.equal(attack(model, x, y), expected)  # the seed makes every call identical


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        make_attack("pgd7")
    for name in ("pgd20", "cw20", "autoattack"):
        assert name in str(err.value)


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("pgd20", dict(eps=-1.0), "eps"),
        ("pgd20", dict(step_size=0.0), "step_size"),
        ("pgd20", dict(steps=0), "steps"),
        ("pgd20", dict(steps="10"), "steps"),
        ("pgd20", dict(restarts=0), "restarts"),
        ("pgd20", dict(norm="l3"), "norm"),
        ("pgd20", dict(loss="hinge"), "loss"),
        ("pgd20", dict(start="gauss"), "start"),
        ("pgd20", dict(clamp=(0.0,)), "clamp"),
        ("pgd20", dict(bn_mode="frozen"), "bn_mode"),
        ("pgd20", dict(version="plus"), "version"),
        ("fgsm", dict(steps=3), "steps"),
        ("autoattack", dict(version="fast"), "version"),
        ("autoattack", dict(attacks=["apgd-xx"]), "attacks"),
        ("autoattack", dict(step_size=0.1), "step_size"),
    ],
)
def test_invalid_overrides_name_the_field(name, overrides, field):
    with pytest.raises(ConfigError, match=field) as err:
        make_attack(name, **overrides)
    assert name in str(err.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ConfigError) as err:
        make_attack("pgd20", epsilon=0.1)
    assert "epsilon" in str(err.value) and "step_size" in str(err.value) and "restarts" in str(err.value)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_preset_runs_and_respects_its_budget(name):
    model, x, y = tiny_model_and_data()
    overrides = {}
    if ATTACKS[name].kind == "autoattack":
        if not HAS_AUTOATTACK:
            pytest.skip("pyautoattack is not installed (pip install robustfair[autoattack])")
        overrides = dict(attacks=["apgd-ce"], eps=0.1)
    elif name == "pgd100":
        overrides = dict(steps=25)  # keep the sweep fast; the preset itself is checked above
    attack = make_attack(name, **overrides)
    model.train()
    x_adv = attack(model, x, y)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    spec = attack.spec
    delta = (x_adv - x).flatten(1)
    size = delta.norm(dim=1) if spec["norm"] == "l2" else delta.abs().amax(1)
    assert (size <= spec["eps"] + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        model.eval()
        fooled = (model(x_adv).argmax(1) != y).float().mean()
    assert fooled > 0  # every preset finds adversarial examples on this untrained model
