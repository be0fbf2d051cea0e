"""Training methods as a library: `robustfair.methods.build(...)`, `method.loss` in a hand
loop, and the epoch hooks through `robustfair.methods.epochs`, each pinned to what the
engine computes from the same seed."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustfair
import robustfair.methods
from robustfair.data import ArrayDataset, DeviceLoader, load_dataset, split_validation
from robustfair.engine.checkpoint import load_checkpoint
from robustfair.engine.trainer import step_seed
from robustfair.errors import ConfigError, UnknownNameError
from robustfair.methods import METHODS
from robustfair.methods.hooks import validation_batches

MODULE = __name__
SEED = 3


def tiny_net(num_classes: int = 10, in_channels: int = 1, input_size: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * input_size * input_size, 24), nn.ReLU(), nn.Linear(24, num_classes)
    )


@pytest.fixture(scope="module")
def digits():
    splits = load_dataset("digits")
    train = splits.train.subset(list(range(120)))
    test = splits.test.subset(list(range(60)))
    return train, test


def test_build_validates_overrides_like_a_config():
    method = robustfair.methods.build("bat", num_classes=10, beta=3, steps=4)
    assert type(method) is METHODS["bat"] and method.num_classes == 10
    assert (method.config.beta, method.config.steps, method.config.alpha) == (3.0, 4, 1.0)
    with pytest.raises(ConfigError, match=r"method bat: unknown option 'betta'; did you mean 'beta'\?") as err:
        robustfair.methods.build("bat", num_classes=10, betta=3)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"method bat.beta: -1.0 is out of range"):
        robustfair.methods.build("bat", num_classes=10, beta=-1)
    with pytest.raises(ConfigError, match=r"uniform_direction: 'both' is not allowed; valid values: code, paper"):
        robustfair.methods.build("bat", num_classes=10, uniform_direction="both")
    with pytest.raises(UnknownNameError, match="unknown method 'batt'"):
        robustfair.methods.build("batt", num_classes=10)
    with pytest.raises(ConfigError, match="num_classes"):
        robustfair.methods.build("trades", num_classes=1)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_builds_and_gives_a_finite_loss_in_a_hand_step(name):
    torch.manual_seed(0)
    model = tiny_net()
    method = robustfair.methods.build(name, num_classes=10, steps=2)
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 10
    model.train()
    out = method.loss(model, x, y)
    out.loss.backward()
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(v.dim() == 0 for v in out.logs.values())


def test_method_loss_in_a_hand_loop_equals_the_engines_first_step(tmp_path, digits):
    train, test = digits
    method_fields = {"eps": 0.1, "step_size": 0.025, "steps": 3, "beta": 6.0, "alpha": 1.0}
    overrides = [
        "train.epochs=1",
        f"train.batch_size={len(train)}",
        "data.val_per_class=0",
        "eval.attack=none",
        "eval.sanity_checks=false",
        f"seed={SEED}",
        "schedule.milestones=[]",
        f"model.name={MODULE}:tiny_net",
    ] + [f"method.{k}={v}" for k, v in method_fields.items()]
    robustfair.train("digits_bat", tmp_path / "run", train_data=train, test_data=test, overrides=overrides, quiet=True)
    engine_loss = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["loss"]

    torch.manual_seed(SEED)  # the engine builds the model under the run's seed ...
    model = tiny_net()
    method = robustfair.methods.build("bat", num_classes=10, **method_fields)
    loader = DeviceLoader(train, len(train), shuffle=True, seed=SEED)
    torch.manual_seed(step_seed(SEED))  # ... and seeds the attack starts with step_seed
    model.train()
    x, y = next(iter(loader))
    out = method.loss(model, x, y)
    assert out.loss.item() == pytest.approx(engine_loss, rel=1e-6, abs=0)
    torch.manual_seed(step_seed(SEED) + 1)  # another attack start gives another loss: the match is no accident
    assert method.loss(model, x, y).loss.item() != pytest.approx(engine_loss, rel=1e-6, abs=0)


def test_epoch_hooks_in_a_hand_loop_reproduce_the_engine(tmp_path, digits):
    """FRL (RW+RM) for two epochs: validation-driven multipliers before each epoch, SGD steps."""
    train, test = digits
    fields = {"eps": 0.1, "step_size": 0.025, "steps": 2}
    batch, lr = 40, 0.05
    overrides = [
        "train.epochs=2",
        f"train.batch_size={batch}",
        "data.val_per_class=3",
        "train.val_attack=none",
        "eval.attack=none",
        "eval.sanity_checks=false",
        f"seed={SEED}",
        f"optim.lr={lr}",
        "schedule.name=constant",
        "schedule.milestones=[]",
        "init_from=null",
        f"model.name={MODULE}:tiny_net",
    ] + [f"method.{k}={v}" for k, v in fields.items()]
    robustfair.train(
        "digits_frl_rwrm", tmp_path / "run", train_data=train, test_data=test, overrides=overrides, quiet=True
    )
    engine = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    engine_logs = [json.loads(line)["method"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]

    fit, val = split_validation(train, 3, position="last")
    torch.manual_seed(SEED)
    model = tiny_net()
    method = robustfair.methods.build("frl_rwrm", num_classes=10, tau0=0.07, tau1=0.07, **fields)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    loader = DeviceLoader(fit, batch, shuffle=True, seed=SEED)
    torch.manual_seed(step_seed(SEED))
    logs = []
    for epoch in robustfair.methods.epochs(method, model, 2, val_data=val, log=lambda e, values: logs.append(values)):
        loader.set_epoch(epoch)
        model.train()
        for x, y in loader:
            out = method.loss(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

    assert [round(v, 12) for v in logs[1]["l0"]] == [round(v, 12) for v in engine_logs[1]["l0"]]
    assert logs[1]["eps_factor"] == pytest.approx(engine_logs[1]["eps_factor"], abs=1e-12)
    for key, value in model.state_dict().items():
        assert torch.equal(value, engine["model"][key]), key  # bitwise: the same operations in the same order
    assert method.state_dict().keys() == engine["method"].keys()


def test_epochs_helper_calls_both_hooks_and_restores_the_mode():
    calls = []

    class Recorder(robustfair.methods.TrainingMethod):
        def on_epoch_start(self, ctx):
            super().on_epoch_start(ctx)
            ctx.model.eval()
            calls.append(("start", ctx.epoch, ctx.num_epochs, ctx.val_loader is not None))
            return {"seen": ctx.epoch}

        def on_epoch_end(self, ctx):
            calls.append(("end", ctx.epoch))
            return {}

    model = tiny_net()
    model.train()
    method = Recorder(robustfair.methods.MethodConfig(), num_classes=10)
    logged = []
    val = (torch.rand(10, 1, 8, 8), torch.arange(10))
    for epoch in robustfair.methods.epochs(
        method, model, 3, val_data=val, start_epoch=1, log=lambda e, v: logged.append((e, v))
    ):
        assert model.training
        calls.append(("body", epoch))
    assert calls == [("start", 1, 3, True), ("body", 1), ("end", 1), ("start", 2, 3, True), ("body", 2), ("end", 2)]
    assert logged == [(1, {"seen": 1}), (2, {"seen": 2})]
    ctx = robustfair.methods.epoch_context(
        model, epoch=0, num_epochs=1, num_classes=10, eps=0.1, val_loader=validation_batches(val, torch.device("cpu"))
    )
    result = ctx.evaluate(model, ctx.val_loader, "pgd10")
    assert sum(result.to_dict()["per_class"]["count"]) == 10


def test_dataset_for_hooks_accepts_an_array_dataset():
    ds = ArrayDataset(torch.rand(6, 1, 8, 8).numpy(), torch.arange(6).numpy() % 3, ["a", "b", "c"])
    batches = list(validation_batches(ds, torch.device("cpu"), batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 2]
