"""The peer methods' CIFAR-10 presets load and validate, and keep the authors' key settings."""

import pytest

from robustfair.engine.config import RunConfig, load_raw_config
from robustfair.methods.cfa import CFA
from robustfair.methods.dafa import DAFA
from robustfair.methods.faal import FAAL
from robustfair.methods.fat import FATAT, FATTRADES
from robustfair.methods.gairat import GAIRAT
from robustfair.methods.reweight import ATLogitAdjust, ATReweight
from robustfair.methods.wat import WAT
from robustfair.typed_config import build

PEERS = {cls.name: cls for cls in (FATAT, FATTRADES, GAIRAT, CFA, WAT, DAFA, FAAL, ATReweight, ATLogitAdjust)}
PRESETS = [
    "fat_at",
    "fat_trades",
    "gairat",
    "cfa",
    "wat",
    "dafa",
    "faal",
    "reweight_inverse_accuracy",
    "reweight_logit_adjust",
]


def load(preset):
    raw = load_raw_config(preset)
    run = build(RunConfig, raw)
    fields = {k: v for k, v in run.method.items() if k != "name"}
    method_config = build(PEERS[run.method["name"]].Config, fields, "method")
    return run, method_config


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_validates(preset):
    run, method = load(preset)
    assert run.data.name == "cifar10_jpeg"
    assert run.schedule.milestones == tuple(sorted(run.schedule.milestones))
    assert method.steps == 10


def test_presets_keep_the_authors_settings():
    run, method = load("fat_at")
    assert (run.train.epochs, method.tau_milestones, method.noise_std) == (120, (50, 90), 0.001)
    run, method = load("fat_trades")
    assert (method.tau_milestones, method.start, method.beta) == ((30, 50, 70), "normal", 6.0)
    run, method = load("gairat")
    assert (method.begin_epoch, method.lam, run.schedule.milestones) == (60, -1.0, (60, 90, 110))
    run, method = load("cfa")
    assert run.model.normalize_mean is not None and run.model.name == "preact_resnet18"
    assert (method.begin_epoch, method.fawa_decay, method.fawa_threshold) == (11, 0.88, 0.2)
    assert (run.data.val_per_class, run.data.val_position, run.optim.weight_decay) == (100, "first", 0.0005)
    run, method = load("wat")
    assert (method.eta, method.beta) == (0.1, 6.0)
    run, method = load("dafa")
    assert (run.train.epochs, method.warmup_epochs, method.lam, run.optim.nesterov) == (110, 70, 1.0, True)
    run, method = load("faal")
    assert PEERS[run.method["name"]].hot_start and run.train.epochs == 2 and method.radius == 0.5
    # TrustAI/FAAL run_prn.py: PreActResNet-18 on normalised inputs, lr 0.01 then x0.1, wd 5e-4
    assert run.model.name == "preact_resnet18" and run.model.normalize_mean is not None
    assert (run.optim.lr, run.optim.weight_decay, run.schedule.name, run.schedule.milestones) == (
        0.01,
        0.0005,
        "multistep",
        (2,),
    )
    assert (method.score, method.objective, method.base) == ("margin", "code", "at")
    source = load_raw_config(str(load_raw_config("faal")["init_from"]).rsplit("/", 1)[-1])
    assert source["model"] == load_raw_config("faal")["model"]  # the hot start has the same network
