"""The results presets (docs/RESULTS.md settings 1-3) load, and each setting covers every
method the results table promises, with hot starts that chain inside their own setting.

Settings 1 and 2 promise all twelve methods; setting 3 (CIFAR-10 (JPEG), a few CPU hours)
the main ones and the two peers that did best in its superseded version (FAT-AT, DAFA)."""

from __future__ import annotations

import pytest

from robustfair.engine.config import list_presets, load_config, load_raw_config

# method section -> the row label of docs/RESULTS.md (TRADES is split by beta)
PROMISED = {
    "erm",
    "pgd_at",
    "trades(1)",
    "trades(6)",
    "frl_rwrm",
    "bat",
    "fat_at",
    "gairat",
    "cfa",
    "wat",
    "dafa",
    "faal",
}
SETTINGS = {"digits": "digits_", "mnist": "results_mnist_", "cifar10_cnn": "results_cifar10_cnn_"}
PROMISED_IN = {
    "digits": PROMISED,
    "mnist": PROMISED,
    "cifar10_cnn": {"erm", "pgd_at", "trades(6)", "frl_rwrm", "bat", "fat_at", "dafa"},
}


def setting_presets(prefix: str) -> list[str]:
    return [name for name in list_presets() if name.startswith(prefix) and not name.endswith("_base")]


def row_label(method: dict) -> str:
    if method["name"] == "trades":
        return f"trades({float(method['beta']):g})"
    return method["name"]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_setting_covers_every_promised_method(setting):
    labels = {row_label(load_config(name).method) for name in setting_presets(SETTINGS[setting])}
    missing = PROMISED_IN[setting] - labels
    assert not missing, f"setting {setting} has no preset for {sorted(missing)}"


@pytest.mark.parametrize("setting", ["mnist", "cifar10_cnn"])
def test_hot_starts_chain_onto_a_preset_of_the_same_setting(setting):
    prefix = SETTINGS[setting]
    names = setting_presets(prefix)
    hot = [name for name in names if load_raw_config(name).get("init_from")]
    assert hot, f"setting {setting}: FRL and FAAL should hot-start"
    for name in hot:
        source = str(load_raw_config(name)["init_from"]).rstrip("/").rsplit("/", 1)[-1]
        assert source in names, f"{name} hot-starts from {source}, which is not a preset of setting {setting}"
        assert load_config(name).train.epochs < load_config(source).train.epochs, f"{name} is a fine-tune"


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads(name):
    config = load_config(name)
    assert config.train.epochs >= 1 and config.method["name"]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_training_attack_of_a_setting_can_reach_its_eps(setting):
    """steps x step >= eps for every method of a results setting: a method whose own step rule
    (FRL RW+RM's max_i(eps_i)/4) was written for 10 steps must not train against a weaker
    attack than its neighbours when the setting uses fewer (setting 3: PGD-2)."""
    for name in setting_presets(SETTINGS[setting]):
        config = load_config(name)
        method = config.method_config()
        if not hasattr(method, "steps") or config.method_name == "erm":
            continue
        rule = getattr(method, "step_rule", "fixed")
        step = method.eps / 4 if rule == "max_eps_quarter" else method.step_size
        assert method.steps * step >= method.eps * (1 - 1e-6), (
            f"{name}: {method.steps} steps of {step:.5f} ({rule}) reach {method.steps * step:.5f}, "
            f"less than eps {method.eps:.5f}"
        )
