"""Every CIFAR-10 preset runs one epoch end to end on a tiny class-balanced subset (CPU smoke).

These use the real CIFAR-10 (JPEG) archive in ../shared/data and the presets' own models
(ResNet-18, PreActResNet-18); hot-start presets (FRL, FAAL) chain onto a smoke run of their
source. A few run in the default test run; the rest are marked slow.
"""

from __future__ import annotations

import json
import os

import pytest

from robustfair.engine.config import list_presets, load_config, load_raw_config
from robustfair.engine.trainer import train

SMOKE = [
    "train.epochs=1",
    "data.train_per_class=2",
    "data.val_per_class=1",
    "data.test_per_class=1",
    "train.batch_size=20",
    "train.eval_batch_size=20",
    "eval.sanity_checks=false",
    "train.val_attack=fgsm",
    "eval.attack=fgsm",
]
DEFAULT_RUN = {"cifar10_resnet18_pgd_at", "cifar10_preactresnet18_pgd_at", "bat", "frl_rwrm", "gairat"}


def cifar_presets() -> list[str]:
    names = []
    for name in list_presets():
        if name.endswith("_base"):
            continue
        raw = load_raw_config(name)
        if raw.get("data", {}).get("name") == "cifar10_jpeg" and raw.get("model", {}).get("name") != "small_cnn":
            names.append(name)
    return names


def marks(name: str):
    return () if name in DEFAULT_RUN else (pytest.mark.slow,)


@pytest.fixture(scope="module")
def data_env(tmp_path_factory):
    from conftest import shared_data_dir

    path = shared_data_dir()
    if not (path / "cifar10_jpeg.npz").is_file():
        pytest.skip(
            f"cifar10_jpeg.npz not found in {path} (set ROBUSTFAIR_DATA to a folder holding it; README: Data location)"
        )
    old = os.environ.get("ROBUSTFAIR_DATA")
    os.environ["ROBUSTFAIR_DATA"] = str(path)
    yield tmp_path_factory.mktemp("smoke")
    if old is None:
        os.environ.pop("ROBUSTFAIR_DATA", None)
    else:
        os.environ["ROBUSTFAIR_DATA"] = old


def smoke_run(name: str, root, extra=()):
    run_dir = root / name
    if (run_dir / "results.json").is_file():
        return json.loads((run_dir / "results.json").read_text())
    config = load_config(name, SMOKE + list(extra))
    return train(config, run_dir, quiet=True)


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks(n)) for n in cifar_presets()])
def test_preset_runs_one_epoch(name, data_env):
    extra = []
    raw = load_raw_config(name)
    if raw.get("init_from"):
        source = str(raw["init_from"]).rstrip("/").rsplit("/", 1)[-1]  # the source preset, as `sweep` reads it
        smoke_run(source, data_env)
        extra.append(f"init_from={data_env / source}")
    results = smoke_run(name, data_env, extra)
    assert results["dataset"] == "CIFAR-10 (JPEG)"
    assert sum(results["per_class"]["count"]) == 10
    assert len(results["summary"]) == 6
