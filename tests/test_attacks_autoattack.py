"""AutoAttack adapter: a quick APGD-CE run, mode and RNG hygiene, the missing-extra message."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from torch import nn

from robustfair.attacks import MissingExtraError, autoattack
from robustfair.errors import ConfigError

needs_autoattack = pytest.mark.skipif(
    importlib.util.find_spec("pyautoattack") is None,
    reason="pyautoattack is not installed (pip install robustfair[autoattack])",
)


def tiny_model_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    y[0] = (y[0] + 1) % 10  # one sample already wrong: AutoAttack leaves it as is
    return model, x, y


@needs_autoattack
def test_apgd_ce_quick_run():
    model, x, y = tiny_model_and_data()
    model.train()
    running_mean = model[1].running_mean.clone()
    rng_before = torch.random.get_rng_state()
    x_adv, predictions, first_success, components = autoattack(
        model, x, y, eps=0.1, version="custom", attacks=["apgd-ce"], seed=0, batch_size=8
    )
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, running_mean)  # ran in eval mode
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # AutoAttack's reseeding is undone
    assert x_adv.shape == x.shape and predictions.dtype == torch.long
    assert ((x_adv - x).abs().flatten(1).amax(1) <= 0.1 + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        assert torch.equal(predictions, model(x_adv).argmax(1))
    assert torch.equal(x_adv[0], x[0]) and predictions[0] != y[0]
    assert (predictions[1:] != y[1:]).any()  # APGD fools this untrained model somewhere
    again = autoattack(model, x, y, eps=0.1, version="custom", attacks=["apgd-ce"], seed=0, batch_size=8)
    assert torch.equal(again.x_adv, x_adv)


@needs_autoattack
def test_few_classes_and_bad_arguments():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4)).eval()
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    # Targeted APGD with 4 classes uses 3 target classes instead of the default 9.
    result = autoattack(model, x, y, eps=0.2, version="custom", attacks=["apgd-t"], batch_size=6)
    assert ((result.x_adv - x).abs().flatten(1).amax(1) <= 0.2 + 1e-6).all()
    binary = nn.Sequential(nn.Flatten(), nn.Linear(48, 2)).eval()
    with pytest.raises(ConfigError, match="apgd-t needs at least 4 classes"):
        autoattack(binary, x, y % 2, eps=0.1)
    with pytest.raises(ConfigError, match="attacks"):
        autoattack(model, x, y, eps=0.1, version="custom")
    with pytest.raises(ConfigError, match="attacks"):
        autoattack(model, x, y, eps=0.1, attacks=["apgd-ce"])
    with pytest.raises(ConfigError, match="norm"):
        autoattack(model, x, y, eps=0.1, norm="l3")
    with pytest.raises(ConfigError, match="eps"):
        autoattack(model, x, y, eps=torch.ones(6))


def test_missing_extra_tells_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # import now raises ImportError
    model, x, y = tiny_model_and_data()
    with pytest.raises(ImportError, match=r"pip install robustfair\[autoattack\]") as err:
        autoattack(model, x, y, eps=0.1)
    assert isinstance(err.value, MissingExtraError)


@needs_autoattack
def test_progress_bars_do_not_change_the_result(capsys):
    """The per-component bar counts forward passes through a hook; the hook must leave the
    model's outputs alone (a hook returning a value would replace them)."""
    model, x, y = tiny_model_and_data()
    quiet = autoattack(model, x, y, eps=0.1, version="custom", attacks=["apgd-ce"], batch_size=8, progress=False)
    drawn = autoattack(model, x, y, eps=0.1, version="custom", attacks=["apgd-ce"], batch_size=8, progress=True)
    assert torch.equal(quiet.x_adv, drawn.x_adv) and torch.equal(quiet.first_success, drawn.first_success)
    assert "AutoAttack apgd-ce on 7" in capsys.readouterr().err
    assert quiet.components == ("apgd-ce",) and quiet.first_success[0] == -1  # sample 0 was wrong clean
