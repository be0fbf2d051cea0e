import json

import pytest

from robustfair.engine.config import ScheduleConfig, config_to_dict, list_presets, load_config, parse_config
from robustfair.engine.schedules import lr_at_epoch
from robustfair.errors import ConfigError, UnknownNameError


def test_preset_loads_with_extends_and_overrides():
    config = load_config("digits_trades", ["train.epochs=3", "method.beta=1.5", "optim.lr=0.01"])
    assert config.train.epochs == 3
    assert config.optim.lr == 0.01
    method = config.method_config()
    assert method.beta == 1.5 and method.eps == pytest.approx(0.1)  # eps inherited from digits_base
    resolved = config_to_dict(config)
    assert resolved["method"]["name"] == "trades" and resolved["method"]["steps"] == 10


@pytest.mark.parametrize(
    "override, fragment",
    [
        (["train.epochs=-1"], "train.epochs: -1 is out of range; allowed: >= 1"),
        (["train.epochs=abc"], "train.epochs: expected an integer"),
        (["optim.lr=0"], "optim.lr: 0.0 is out of range; allowed: > 0.0"),
        (
            ["train.epoch=3"],
            "train.epoch: unknown field; did you mean epochs or eps_warmup_epochs? valid fields of train:",
        ),
        (["method.beta=-2"], "method (trades).beta: -2.0 is out of range"),
        (["method.bogus=1"], "method (trades).bogus: unknown field"),
        (["data.augment=rotate"], "data.augment: 'rotate' is not allowed; valid values: crop_flip, flip"),
        (["schedule.milestones=[90, 75]"], "must be increasing"),
        (["optim.lr=.nan"], "not a finite number"),
        (["noequals"], "expected key=value"),
    ],
)
def test_invalid_values_name_the_field(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config("digits_trades", override)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_scientific_notation_override_is_a_number():
    config = load_config("digits_trades", ["optim.lr=1e-3", "method.beta=6E0"])
    assert config.optim.lr == pytest.approx(1e-3) and config.method_config().beta == 6.0


def test_unknown_method_lists_valid_names():
    with pytest.raises(UnknownNameError, match="valid method names: .*erm.*pgd_at.*trades"):
        parse_config({"method": {"name": "nonexistent"}})


def test_unknown_preset_suggests_the_closest_and_says_where_the_list_is():
    with pytest.raises(ConfigError) as err:
        load_config("digts_bat")
    message = str(err.value)
    assert message.startswith("unknown preset 'digts_bat' (and no such file); did you mean digits_bat, ")
    assert message.endswith(f"({len(list_presets())} presets: robustfair list presets)")
    assert message.count(",") < 10  # never every preset on one line
    with pytest.raises(
        ConfigError,
        match=r"'no_such_preset' \(and no such file\); none is close \(\d+ presets: "
        r"robustfair list presets\)$",
    ):
        load_config("no_such_preset")


def test_unknown_preset_without_a_presets_folder_says_where_it_looked(tmp_path, monkeypatch):
    import robustfair.engine.config as config_module

    monkeypatch.setattr(config_module, "PRESET_DIR", tmp_path / "configs")
    with pytest.raises(ConfigError) as err:
        load_config("digits_bat")
    message = str(err.value)
    assert message.startswith("unknown preset 'digits_bat' (and no such file): no presets found")
    assert str(tmp_path / "configs") in message and "\n" not in message


def test_trades_schedule_matches_official_epoch_numbering():
    # TRADES code: for epoch in 1..N: lr *= 0.1 if epoch >= 75, 0.01 if >= 90, 0.001 if >= 100.
    schedule = ScheduleConfig(name="piecewise", milestones=(75, 90, 100), factors=(0.1, 0.01, 0.001))

    def official(epoch_1based):
        lr = 0.1
        if epoch_1based >= 75:
            lr = 0.1 * 0.1
        if epoch_1based >= 90:
            lr = 0.1 * 0.01
        if epoch_1based >= 100:
            lr = 0.1 * 0.001
        return lr

    for index in range(110):
        assert lr_at_epoch(schedule, 0.1, index, 110) == pytest.approx(official(index + 1))
    multistep = ScheduleConfig(name="multistep", milestones=(75, 90, 100), gamma=0.1)
    for index in range(110):
        assert lr_at_epoch(multistep, 0.1, index, 110) == pytest.approx(official(index + 1))


def test_cosine_and_warmup():
    schedule = ScheduleConfig(name="cosine", warmup_epochs=2, min_lr=0.0)
    assert lr_at_epoch(schedule, 1.0, 0, 12) == pytest.approx(0.5)
    assert lr_at_epoch(schedule, 1.0, 2, 12) == pytest.approx(1.0)
    assert lr_at_epoch(schedule, 1.0, 7, 12) == pytest.approx(0.5)


def test_eps_warm_up_scales_the_training_attack_only_during_its_epochs(tmp_path, monkeypatch):
    """train.eps_warmup_epochs=2: the method crafts at eps/3, 2 eps/3, then eps; evaluation keeps eps."""
    from robustfair.engine.schedules import eps_scale_at_epoch
    from robustfair.engine.trainer import train
    from robustfair.methods.pgd_at import PGDAT

    assert [eps_scale_at_epoch(e, 2) for e in range(4)] == [1 / 3, 2 / 3, 1.0, 1.0]
    assert [eps_scale_at_epoch(e, 0) for e in range(2)] == [1.0, 1.0]
    seen = []
    original = PGDAT.loss

    def spy(self, model, x, y):
        seen.append((round(self.config.eps, 6), round(self.config.step_size, 6)))
        return original(self, model, x, y)

    monkeypatch.setattr(PGDAT, "loss", spy)
    overrides = [
        "train.epochs=3",
        "train.eps_warmup_epochs=2",
        "data.train_per_class=20",
        "data.test_per_class=5",
        "train.batch_size=200",
        "train.val_attack=none",
    ]
    results = train(load_config("digits_pgd_at", overrides), tmp_path / "run", quiet=True, progress=False)
    assert sorted(set(seen), reverse=True) == [(0.1, 0.025), (0.066667, 0.016667), (0.033333, 0.008333)]
    assert seen[0] == (0.033333, 0.008333) and seen[-1] == (0.1, 0.025)
    assert results["attack"]["eps"] == 0.1  # the evaluation's threat model is the full eps
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line.get("train_eps") for line in lines] == [pytest.approx(0.1 / 3), pytest.approx(0.2 / 3), None]
