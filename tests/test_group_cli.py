"""`robustfair group train|eval|compare` end to end (tiny settings) and its error contract."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from group_tables import credit_csv
from robustfair.cli import main as robustfair
from robustfair.group.cli import main
from robustfair.group.compare import RunResult, format_comparison
from robustfair.group.config import TRAINING_NAMES, load_group_config, preset_names

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROBUSTFAIR_DATA") or REPO.parent / "shared" / "data")
TINY = ["train.epochs=2", "train.attack.steps=2", "eval.attack.steps=3", "eval.bootstrap.resamples=200"]


def group(*argv):
    return robustfair(["group", *map(str, argv)])


def need_compas():
    if not (DATA / "compas-scores-two-years.csv").is_file():
        pytest.skip(f"real data not found: compas-scores-two-years.csv missing in {DATA} (set ROBUSTFAIR_DATA)")


def test_presets_load_and_validate():
    assert {"adult", "compas", "table"} <= set(preset_names())
    adult, compas = load_group_config("adult"), load_group_config("compas")
    assert (adult.data.name, adult.data.sensitive) == ("adult", "sex")
    assert (compas.data.name, compas.data.sensitive) == ("compas", "race")
    assert adult.eval.attack.domain == "bounded" and adult.eval.bootstrap.resamples == 1000


# ---- a CSV table built here, through the command line ----

SENSITIVE = {"age": ["--sensitive", "age", "--threshold", "25"], "sex": ["--sensitive", "sex", "--privileged", "male"]}


@pytest.fixture(scope="module")
def csv_runs(tmp_path_factory):
    """Every training, two seeds, on one table with a numeric and with a categorical sensitive column."""
    root = tmp_path_factory.mktemp("group")
    table = credit_csv(root / "german.csv", n=400)
    for name, options in SENSITIVE.items():
        code = group(
            "train",
            "--csv",
            table,
            "--label",
            "credit",
            "--positive",
            "good",
            *options,
            "--drop",
            "id",
            "--methods",
            "all",
            "--seeds",
            "0,1",
            "--out",
            root / "runs" / name,
            "--threads",
            "1",
            "--quiet",
            *TINY,
        )
        assert code == 0
    return root


def test_every_training_runs_on_a_csv_table_and_records_gaps_rates_and_intervals(csv_runs):
    for name in SENSITIVE:
        runs = sorted(p.name for p in (csv_runs / "runs" / name).iterdir())
        assert runs == sorted(f"{m}-seed{s}" for m in TRAINING_NAMES for s in (0, 1))
    results = json.loads((csv_runs / "runs" / "age" / "joint-seed1" / "results.json").read_text())
    assert results["schema"] == "robustfair.group.results/2"
    assert results["config"]["data"]["name"] == "german" and results["config"]["data"]["threshold"] == 25.0
    assert results["data"]["group_names"] == ["age < 25", "age >= 25"]
    assert results["data"]["columns"]["integer"] == ["duration"]  # age is the sensitive column
    metrics = results["metrics"]
    assert metrics["bootstrap"]["resamples"] == 200 and metrics["bootstrap"]["seed"] == 0
    for m in [metrics["clean"], metrics["accuracy_attack"], *metrics["fairness_attack"].values()]:
        for kind, key in (("hard", "gaps_hard"), ("soft", "gaps")):
            for notion in ("dp", "eopp", "eodds"):
                low, high = m["intervals"][kind][notion]
                assert low <= m[key][notion] <= high
        assert set(m["groups"]["0"]["hard"]) == {"selection_rate", "tpr", "fpr", "accuracy"}
        assert m["direction"]["hard"]["dp"] in ("age < 25", "age >= 25", "none")
    for m in [metrics["accuracy_attack"], *metrics["fairness_attack"].values()]:
        assert m["domain"]["rows_out_of_range"] == 0.0 and m["domain"]["rows_non_integer"] == 0.0


def hand_gaps(decisions, y, s):
    """DP, EOpp and EOdds (sum) of 0/1 decisions, by counting."""

    def rate(keep):
        chosen = [d for d, k in zip(decisions, keep) if k]
        return sum(chosen) / len(chosen)

    def diff(label):
        return abs(
            rate([g == 1 and (label is None or t == label) for g, t in zip(s, y)])
            - rate([g == 0 and (label is None or t == label) for g, t in zip(s, y)])
        )

    return {"dp": diff(None), "eopp": diff(1), "eodds": diff(1) + diff(0)}


@pytest.mark.parametrize("name", list(SENSITIVE))
def test_hard_gaps_equal_a_hand_computation_from_the_saved_model(csv_runs, name):
    from robustfair.group.runs import load_run_config, load_run_data, load_run_model

    run = csv_runs / "runs" / name / "fair_erm-seed0"
    config = load_run_config(run)
    data = load_run_data(run, config)
    model = load_run_model(run, config, data)
    with torch.no_grad():
        decisions = (torch.sigmoid(model(data.test.x)) > 0.5).long().tolist()
    expected = hand_gaps(decisions, data.test.y.tolist(), data.test.s.tolist())
    saved = json.loads((run / "results.json").read_text())["metrics"]["clean"]["gaps_hard"]
    assert saved == pytest.approx(expected, abs=1e-12)


def test_eval_rebuilds_the_inputs_from_the_saved_encoding(csv_runs, capsys):
    folder = csv_runs / "runs" / "sex"
    assert group("eval", folder, "--threads", "1") == 0  # every run under the folder
    for run in folder.iterdir():
        before = json.loads((run / "results.json").read_text())["metrics"]
        after = json.loads((run / "eval.json").read_text())["metrics"]
        assert after["clean"] == before["clean"]
        assert after["fairness_attack"]["dp"]["gaps"] == pytest.approx(before["fairness_attack"]["dp"]["gaps"])
    run = folder / "erm-seed0"
    assert group("eval", run, "eval.attack.domain=unbounded", "--json", csv_runs / "unbounded.json") == 0
    unbounded = json.loads((csv_runs / "unbounded.json").read_text())["metrics"]
    assert unbounded["accuracy_attack"]["domain"]["rows_non_integer"] > 0
    assert group("eval", run, "--output", csv_runs / "alias.json", "--data-dir", DATA) == 0  # old option names
    assert (
        json.loads((csv_runs / "alias.json").read_text())["metrics"]["clean"]
        == json.loads((run / "results.json").read_text())["metrics"]["clean"]
    )
    capsys.readouterr()
    assert group("eval", run, "train.lam=2") == 2
    assert "only eval.* settings" in capsys.readouterr().err


def test_compare_groups_by_dataset_sensitive_attribute_and_config(csv_runs, capsys):
    capsys.readouterr()
    assert group("compare", csv_runs / "runs" / "age", csv_runs / "runs" / "sex") == 0
    out = capsys.readouterr().out
    gap_table, rate_table = out.split("per-group rates")
    rows = [line for line in gap_table.splitlines() if line.startswith("| german")]
    assert len(rows) == 10 and rows[0].startswith("| german | age | erm | 2 | ")
    assert rows[5].startswith("| german | sex | erm | 2 | ")
    assert "| DP hard | DP soft | DP hard, fair. attack | DP soft, fair. attack |" in out
    hard = [
        100
        * json.loads((csv_runs / "runs" / "age" / f"erm-seed{k}" / "results.json").read_text())["metrics"]["clean"][
            "gaps_hard"
        ]["dp"]
        for k in (0, 1)
    ]
    assert f"{sum(hard) / 2:.2f} ± {abs(hard[0] - hard[1]) / 2**0.5:.2f} [" in rows[0]
    assert rate_table.count("| german | sex | ") == 10  # two groups per training
    capsys.readouterr()
    assert group("compare", csv_runs / "runs" / "sex", "--format", "csv", "--no-groups") == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "DP hard,DP hard std,DP hard low,DP hard high" in header


def test_compare_refuses_duplicate_runs(csv_runs, capsys, tmp_path):
    folder = csv_runs / "runs" / "sex"
    result = folder / "erm-seed0" / "results.json"
    for argv in ([result, result], [folder, folder / "erm-seed0"], [folder, folder]):
        capsys.readouterr()
        assert group("compare", *argv) == 2
        err = capsys.readouterr().err
        assert "reached twice" in err and err.count("\n") == 1
    shutil.copytree(folder / "erm-seed0", tmp_path / "copy")
    assert group("compare", folder, tmp_path / "copy") == 2
    assert "are the same run" in capsys.readouterr().err


def test_a_run_built_in_python_evaluates_from_the_command_line(tmp_path, capsys):
    from robustfair.group import evaluate_group_model, load_group_data_from_config, save_run, train_group_model
    from robustfair.group.cli import results_record

    table = credit_csv(tmp_path / "credit.csv", n=300)
    config = load_group_config(
        "table",
        [
            f"data.csv={table}",
            "data.name=credit",
            "data.label=credit",
            "data.positive=good",
            "data.sensitive=sex",
            "data.privileged=male",
            "data.drop=[id]",
            "train.method=erm",
            *TINY,
        ],
    )
    data = load_group_data_from_config(config.data)
    model = train_group_model(data, config.model, config.train).model
    metrics = evaluate_group_model(
        model, data.test, data.layout, config.eval.attack, bootstrap=config.eval.bootstrap, group_names=data.group_names
    )
    save_run(tmp_path / "run", config, data, model, results_record(config, data, metrics, [], None, 0.0))
    assert group("eval", tmp_path / "run") == 0
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["metrics"]["clean"] == metrics["clean"]
    # a run whose config does not describe the table it was trained on is refused, in one line
    other = credit_csv(tmp_path / "other.csv", n=300, seed=5)
    text = (tmp_path / "run" / "config.yaml").read_text().replace(str(table), str(other))
    (tmp_path / "run" / "config.yaml").write_text(text)
    capsys.readouterr()
    assert group("eval", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "differ from the ones it was trained and evaluated with" in err and err.count("\n") == 1


def test_compare_keeps_a_custom_table_apart_from_a_preset_of_the_same_name():
    def result(fingerprint, acc, seed=0):
        m = {"accuracy": acc, "gaps": {"dp": 0.1}, "gaps_hard": {"dp": 0.2}}
        return RunResult(
            Path(f"/r/{fingerprint}{seed}"),
            {
                "config": {"data": {"name": "compas", "sensitive": "race"}, "train": {"method": "erm", "seed": seed}},
                "data": {"fingerprint": {"train": fingerprint * 8, "test": fingerprint * 8}},
                "metrics": {"clean": m, "accuracy_attack": m, "fairness_attack": {"dp": m}},
            },
        )

    table = format_comparison(
        [result("a", 0.8), result("b", 0.7), result("a", 0.6, seed=1)], fmt="csv", per_group=False
    ).splitlines()
    assert table[0].startswith("Dataset,Sensitive,Training,Data,Seeds,Clean acc.")
    assert [row.split(",")[3:5] for row in table[1:]] == [["aaaaaaaaaaaaaaaa", "2"], ["bbbbbbbbbbbbbbbb", "1"]]


# ---- the real COMPAS file ----


def test_train_eval_compare_on_compas(tmp_path, capsys):
    need_compas()
    out = tmp_path / "runs"
    assert (
        group(
            "train",
            "--preset",
            "compas",
            "--methods",
            "erm,joint",
            "--seeds",
            "0,1",
            "--out",
            out,
            "--data-root",
            DATA,
            "--quiet",
            *TINY,
        )
        == 0
    )
    run = out / "joint-seed1"
    results = json.loads((run / "results.json").read_text())
    assert results["data"]["test"]["rows"] == 1852
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["method"] == "joint" and saved["data"]["root"] == str(DATA)
    assert group("eval", run) == 0
    assert json.loads((run / "eval.json").read_text())["metrics"]["clean"] == results["metrics"]["clean"]
    capsys.readouterr()
    assert group("compare", out, "--no-groups") == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| compas")]
    assert len(table) == 2 and table[0].startswith("| compas | race | erm | 2 |")
    assert group("train", "--preset", "compas", "--methods", "erm", "--out", out, *TINY) == 2
    assert "already holds a run" in capsys.readouterr().err


# ---- the error contract: one line `robustfair: error: ...`, exit 2 ----


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--preset", "nope"], "unknown group preset 'nope'; valid group presets: adult, compas, table"),
        (["train", "--preset", "compa"], "did you mean compas"),
        (["train", "--preset", "compas", "train.lam=-1"], "train.lam: -1.0 is out of range"),
        (["train", "--preset", "compas", "--methods", "sgd"], "--methods: unknown training 'sgd'"),
        (["train", "--preset", "compas", "--seeds", "a,b"], "--seeds: expected integers"),
        (["train", "--preset", "compas", "train.batch=3"], "train.batch: unknown field"),
        (["train"], "give --preset"),
        (
            ["train", "--preset", "compas", "train.lam=1", "--methods", "erm", "train.epochs=x"],
            "train.epochs: expected an integer, got 'x'",
        ),  # an override after an option is still an override
        (["train", "--csv", "/no/such.csv", "--label", "y", "--sensitive", "s", "--privileged", "a"], "no such file"),
        (["train", "--csv", "x.csv", "--threshold", "old"], "--threshold: expected a number"),
        (["train", "--threads", "x"], "argument --threads: invalid int value: 'x'"),
        (["eval", "/nonexistent/run"], "is not a run directory"),
        (["compare", "/nonexistent/runs"], "no such file or directory"),
        (["compare", "a\nb"], "'a\\nb': no such file or directory"),
        (["compare", "x", "--notion", "dp\nx"], "invalid choice: 'dp\\nx'"),
        (["bogus\ncommand"], "invalid choice: 'bogus\\ncommand'"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    assert group(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustfair: error: ") and message in err
    assert err.count("\n") == 1 and "usage:" not in err and "Traceback" not in err


def test_missing_data_is_one_line(tmp_path, capsys):
    assert group("train", "--preset", "compas", "--data-root", tmp_path, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "compas-scores-two-years.csv not found" in err and err.count("\n") == 1


def test_module_entry_point_exits_non_zero_without_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "robustfair.group.cli", "train", "--preset", "nope"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("robustfair: error: unknown group preset") and "Traceback" not in proc.stderr
    assert main(["train", "--preset", "nope"]) == 2
