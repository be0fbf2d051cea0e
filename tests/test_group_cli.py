"""`robustfair group train|eval|compare` end to end (tiny settings) and its error handling."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from robustfair.group.cli import main
from robustfair.group.compare import format_comparison
from robustfair.group.config import load_group_config, preset_names

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROBUSTFAIR_DATA") or REPO.parent / "shared" / "data")
TINY = ["train.epochs=1", "train.attack.steps=2", "eval.attack.steps=3"]


def need_compas():
    if not (DATA / "compas-scores-two-years.csv").is_file():
        pytest.skip(f"real data not found: compas-scores-two-years.csv missing in {DATA} (set ROBUSTFAIR_DATA)")


def test_presets_load_and_validate():
    assert {"adult", "compas"} <= set(preset_names())
    adult, compas = load_group_config("adult"), load_group_config("compas")
    assert (adult.data.name, adult.data.sensitive) == ("adult", "sex")
    assert (compas.data.name, compas.data.sensitive) == ("compas", "race")


def test_train_eval_compare_on_compas(tmp_path, capsys):
    need_compas()
    out = tmp_path / "runs"
    code = main(["train", "--preset", "compas", "--methods", "erm,joint", "--seeds", "0,1", "--out", str(out),
                 "--data-dir", str(DATA), "--quiet", *TINY])
    assert code == 0
    runs = sorted(p.name for p in out.iterdir())
    assert runs == ["erm-seed0", "erm-seed1", "joint-seed0", "joint-seed1"]
    run = out / "joint-seed1"
    results = json.loads((run / "results.json").read_text())
    assert results["schema"] == "robustfair.group.results/1"
    assert results["config"]["train"]["method"] == "joint" and results["config"]["train"]["seed"] == 1
    metrics = results["metrics"]
    assert set(metrics) == {"clean", "accuracy_attack", "fairness_attack"}
    assert set(metrics["fairness_attack"]) == {"dp", "eopp", "eodds"}
    for m in [metrics["clean"], metrics["accuracy_attack"], *metrics["fairness_attack"].values()]:
        assert 0.0 <= m["accuracy"] <= 1.0 and set(m["gaps"]) == {"dp", "eopp", "eodds"}
    assert results["data"]["test"]["rows"] == 1852
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["method"] == "joint" and saved["data"]["root"] == str(DATA)
    assert set(load_file(str(run / "model.safetensors"))) == {"net.0.weight", "net.0.bias", "net.2.weight",
                                                              "net.2.bias", "net.4.weight", "net.4.bias"}
    capsys.readouterr()

    # eval reproduces the clean metrics from the saved weights, and takes eval.* overrides
    assert main(["eval", str(run), "--data-dir", str(DATA)]) == 0
    again = json.loads((run / "eval.json").read_text())["metrics"]
    assert again["clean"] == metrics["clean"]
    assert again["accuracy_attack"]["accuracy"] == pytest.approx(metrics["accuracy_attack"]["accuracy"])
    assert main(["eval", str(run), "eval.attack.eps=0.0", "--output", str(tmp_path / "e0.json")]) == 0
    zero = json.loads((tmp_path / "e0.json").read_text())["metrics"]
    assert zero["accuracy_attack"]["accuracy"] == zero["clean"]["accuracy"]  # eps 0: no attack
    capsys.readouterr()

    # compare: one row per training, mean +- std over the two seeds
    assert main(["compare", str(out), "--format", "markdown"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("| Dataset | Sensitive | Training | Seeds | Clean acc.")
    assert len(table) == 4 and table[2].startswith("| compas | race | erm | 2 |")
    accs = [100 * json.loads((out / f"erm-seed{k}" / "results.json").read_text())["metrics"]["clean"]["accuracy"]
            for k in (0, 1)]
    mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / 2 ** 0.5
    assert f"{mean:.2f} ± {std:.2f}" in table[2]

    # a taken run directory is refused before any work
    assert main(["train", "--preset", "compas", "--methods", "erm", "--out", str(out), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_compare_shows_fields_that_differ_and_single_seed_rows():
    def result(lam, acc):
        metrics = {"accuracy": acc, "balanced_accuracy": acc, "gaps": {"dp": 0.1, "eopp": 0.2, "eodds": 0.3}}
        return {"config": {"data": {"name": "adult", "sensitive": "sex"}, "train": {"method": "joint", "lam": lam,
                                                                                     "notion": "eopp", "seed": 0}},
                "metrics": {"clean": metrics, "accuracy_attack": metrics,
                            "fairness_attack": {n: metrics for n in ("dp", "eopp", "eodds")}}}

    table = format_comparison([result(0.5, 0.8), result(1.0, 0.7)], fmt="csv").splitlines()
    assert table[0] == ("Dataset,Sensitive,Training,lam,Seeds,Clean acc.,Clean bal. acc.,Clean EOpp gap,"
                        "Acc. under acc. attack,EOpp gap under fair. attack")
    assert table[1] == "adult,sex,joint,0.5,1,80.00,80.00,20.00,80.00,20.00"
    assert table[2] == "adult,sex,joint,1.0,1,70.00,70.00,20.00,70.00,20.00"


@pytest.mark.parametrize("argv,message", [
    (["train", "--preset", "nope"], "unknown group preset 'nope'; valid group presets: adult, compas"),
    (["train", "--preset", "compas", "train.lam=-1"], "train.lam: -1.0 is out of range"),
    (["train", "--preset", "compas", "--methods", "sgd"], "--methods: unknown training 'sgd'"),
    (["train", "--preset", "compas", "--seeds", "a,b"], "--seeds: expected integers"),
    (["train", "--preset", "compas", "train.batch=3"], "train.batch: unknown field"),
    (["eval", "/nonexistent/run"], "is not a run directory"),
    (["compare", "/nonexistent/runs"], "no such file or directory"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_is_one_line(tmp_path, capsys):
    assert main(["train", "--preset", "compas", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "compas-scores-two-years.csv not found" in err and err.count("\n") == 1


def test_module_entry_point_exits_non_zero_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "robustfair.group.cli", "train", "--preset", "nope"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown group preset") and "Traceback" not in proc.stderr
