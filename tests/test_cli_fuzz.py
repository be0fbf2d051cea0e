"""Fuzzing every subcommand of `robustfair.cli.main`: 0 tracebacks, 0 exits 70, one error line.

Hypothesis generates command lines per subcommand from each one's real options, with
values both valid and not (names, numbers, paths to finished, unfinished and broken run
directories, overrides, junk text), plus free-form token lists. Everything runs in this
process through `main`, for real, except the expensive steps, which are replaced by
cheap stand-ins returning a finished run's numbers: the training epochs (`Trainer.fit`;
the Trainer itself is built: names, run lock, run directory, data, model), the attack
evaluation, the fairness analysis and the HTML rendering. Downloads are cut off.

Properties: `main` returns an int in {0, 1, 2, 130}, never 70; no "Traceback" and no
"internal error" is printed; a failure ends with exactly one `robustfair...: error:` line
and it is the last line. `group` lines are held to the first two properties only (its
own error format belongs to the group tool). Several runs per example each open a fresh
working directory, so `runs/` defaults never collide.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from robustfair.cli import main
from robustfair.engine.config import list_presets, load_config
from robustfair.engine.trainer import train

EXAMPLES = int(os.environ.get("ROBUSTFAIR_FUZZ_EXAMPLES", "0")) or None
SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
CLEAN_EXITS = {0, 1, 2, 130}
TINY = [
    "data.train_per_class=4",
    "data.val_per_class=1",
    "data.test_per_class=2",
    "train.epochs=1",
    "train.val_attack=none",
    "eval.attack=fgsm",
    "eval.sanity_checks=false",
]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A finished tiny run (trained for real, a few steps), its second seed, and broken ones."""
    base = tmp_path_factory.mktemp("fuzz_runs")
    finished = base / "finished"
    train(load_config("digits_erm", TINY), finished, quiet=True, progress=False)
    seed1 = base / "seed1"  # the same run under seed 1 (a copy: only its seed matters to the readers)
    shutil.copytree(finished, seed1)
    for name, dump in (("config.yaml", yaml.safe_dump), ("results.json", json.dumps)):
        record = (yaml.safe_load if name.endswith("yaml") else json.loads)((seed1 / name).read_text())
        (record.setdefault("run", {}) if name.endswith("json") else record)["seed"] = 1
        (seed1 / name).write_text(dump(record))
    unfinished = base / "unfinished"
    unfinished.mkdir()
    shutil.copy(finished / "config.yaml", unfinished / "config.yaml")
    broken = base / "broken_json"
    shutil.copytree(finished, broken)
    (broken / "results.json").write_text('{"summary": [1, 2')
    not_classwise = base / "not_classwise"
    not_classwise.mkdir()
    (not_classwise / "results.json").write_text('{"a": 1}')
    bad_checkpoint = base / "bad_checkpoint"
    shutil.copytree(finished, bad_checkpoint)
    (bad_checkpoint / "checkpoints" / "last.safetensors").write_bytes(b"\x80\x04garbage")
    empty = base / "empty"
    empty.mkdir()
    a_file = base / "a_file.txt"
    a_file.write_text("not a run\n")
    return {
        "finished": finished,
        "seed1": seed1,
        "unfinished": unfinished,
        "broken": broken,
        "not_classwise": not_classwise,
        "bad_checkpoint": bad_checkpoint,
        "empty": empty,
        "file": a_file,
    }


@pytest.fixture
def cheap(runs, monkeypatch, tmp_path):
    """Stand-ins for the expensive steps (see the module docstring); a data root with nothing in it."""
    canned = json.loads((runs["finished"] / "results.json").read_text())

    class Result:
        attack: dict = {}  # the threat model record evaluation reads (eps, norm)

        def to_dict(self):
            return json.loads(json.dumps(canned))

    def fit(self):
        try:
            if self.dist.is_main:
                with self.run.writing():
                    self.run.write_results(canned)
            return canned
        finally:
            self.run.release()

    def render_report(runs_, *, which="last", attack=None, title=None, group=True, ignored=()):
        from robustfair.report.compare import comparison_text, group_runs

        return (
            "<html>"
            + comparison_text(group_runs(runs_, ignored=ignored, group=group), which=which, attack=attack)
            + "</html>"
        )

    def no_network(url, *args, **kwargs):
        raise OSError(f"network disabled in the fuzz test: {url}")

    monkeypatch.setattr("robustfair.engine.trainer.Trainer.fit", fit)
    monkeypatch.setattr("robustfair.engine.run_evaluation.evaluate_model", lambda *a, **k: Result())
    monkeypatch.setattr("robustfair.metrics.sanity.run_sanity_checks", lambda *a, **k: {})
    monkeypatch.setattr("robustfair.metrics.analysis.fairness_analysis", lambda *a, **k: {})
    monkeypatch.setattr("robustfair.commands.analyze.print_analysis", lambda *a, **k: None)
    monkeypatch.setattr("robustfair.report.html.render_report", render_report)
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    empty_data = tmp_path / "no_data"
    empty_data.mkdir()
    monkeypatch.setenv("ROBUSTFAIR_DATA", str(empty_data))
    monkeypatch.setenv("ROBUSTFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ROBUSTFAIR_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(argv: list[str], where: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    work = Path(tempfile.mkdtemp(dir=where, prefix="cwd"))
    previous = os.getcwd()
    os.chdir(work)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(previous)
        torch.set_num_threads(1)  # --threads changes a process-wide setting
    return code, out.getvalue(), err.getvalue()


def check(argv: list[str], where: Path) -> None:
    code, out, err = run_cli(argv, where)
    event(f"{argv[0] if argv else '-'}: exit {code}")
    assert isinstance(code, int) and not isinstance(code, bool), code
    assert code in CLEAN_EXITS, (argv, code, err)
    assert "Traceback" not in out + err and "internal error" not in err, (argv, err)
    if code != 0 and argv[:1] != ["group"]:
        lines = err.rstrip("\n").splitlines()
        errors = [line for line in lines if ": error: " in line]
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, err)
        assert errors[0].startswith("robustfair"), (argv, err)


# ---------------------------------------------------------------------------- vocabulary

PRESETS = list_presets()
junk = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
numbers = st.sampled_from(["0", "1", "2", "-1", "0.5", "1e-3", "nan", "inf", "-inf", "1e300", "x", "", "3"])
attacks = st.sampled_from(["pgd20", "fgsm", "none", "autoattack", "pgd21", "cw20", "pgd10", ""])
models = st.sampled_from(["small_cnn", "mlp", "preact_resnet18", "vit", "resnet18", ""])
datasets = st.sampled_from(
    ["digits", "gaussian", "cifar10", "cifar10_jpeg", "mnist", "imagefolder", "svhn", "imagenette", "nope"]
)
devices = st.sampled_from(["auto", "cpu", "cuda", "cuda:7", "mps", "gpu"])
files_out = st.sampled_from(["out.txt", "o/t.md", ".", "no/such/dir/x", "/dev/null", "report.html"])
fields = st.sampled_from(
    [
        "train.epochs",
        "optim.lr",
        "method.beta",
        "method.name",
        "data.name",
        "model.name",
        "eval.attack",
        "train.val_attack",
        "data.train_per_class",
        "data.val_per_class",
        "train.device",
        "seed",
        "init_from",
        "data.options",
        "schedule.milestones",
        "eval.extra_attacks",
        "train.batch_size",
        "data.root",
        "data.download",
        "train.epoch",
        "method.steps",
        "a..b",
        "train",
        "eval.eps",
    ]
)
values = (
    st.sampled_from(
        [
            "1",
            "0",
            "-1",
            "2",
            "0.5",
            "1e-3",
            "abc",
            "[1, 2]",
            "{a: 1}",
            "true",
            "null",
            "",
            ".nan",
            "[",
            "{",
            "'",
            "pgd20",
            "cpu",
            "cuda:7",
            "erm",
            "trades",
            "digits",
            "gaussian",
            "small_cnn",
            "[pgd20, fgsm]",
            "{size: 4}",
            "{n_per_class: 3, dim: 4}",
        ]
    )
    | junk
)
overrides = st.builds(lambda k, v: f"{k}={v}", fields, values)


def pieces(positionals, options: dict, flags=(), noise: bool = True):
    """One argv piece: a positional, an option with a value, a flag, and (noise) an override or junk."""
    choices = [positionals.map(lambda p: [p])]
    if noise:
        choices += [overrides.map(lambda o: [o]), junk.map(lambda j: [j])]
    choices += [st.tuples(st.just(name), value).map(list) for name, value in options.items()]
    choices += [st.just([flag]) for flag in flags]
    return st.one_of(choices)


def command_lines(command: str, positionals, options: dict, flags=(), max_pieces: int = 6):
    """Half the lines start with a positional and hold only the command's own options (they reach
    deep into the command); the other half mix in overrides and junk anywhere."""

    def join(parts):
        return [command] + [word for part in parts for word in part]

    clean = st.builds(
        lambda first, parts: join([[first], *parts]),
        positionals,
        st.lists(pieces(positionals, options, flags, noise=False), max_size=max_pieces - 1),
    )
    noisy = st.lists(pieces(positionals, options, flags), max_size=max_pieces).map(join)
    return clean | noisy


# ---------------------------------------------------------------------------- generators per command


def run_paths(runs) -> st.SearchStrategy:
    names = [str(p) for p in runs.values()]
    return st.sampled_from(
        names
        + [
            str(runs["finished"] / "checkpoints" / "last.safetensors"),
            str(runs["finished"] / "checkpoints" / "best.safetensors"),
            str(runs["finished"].parent / "*"),
            str(runs["finished"].parent / "s*"),
            "no/such/run",
            ".",
            "runs/*",
            "x.safetensors",
        ]
    )


def train_lines(runs):
    target = st.sampled_from(PRESETS + ["x.yaml", "no_such_preset", "digts_bat"]) | run_paths(runs)
    options = {
        "--run-dir": st.sampled_from(
            ["r", "r/deeper", ".", str(runs["finished"]), str(runs["unfinished"]), "/dev/null"]
        )
        | junk
    }
    tiny = st.lists(st.sampled_from(TINY), min_size=len(TINY), max_size=len(TINY), unique=True)
    flags = ("--resume", "--quiet", "--help", "--bogus")
    clean = st.lists(pieces(st.nothing(), options, flags, noise=False), max_size=3)
    noisy = st.lists(pieces(target, options, flags), max_size=5)
    return st.builds(
        lambda t, small, parts: ["train", t, *small, *(word for part in parts for word in part)],
        target,
        tiny,
        clean | noisy,
    )


def reader_lines(runs):
    paths = run_paths(runs)
    eval_ = command_lines(
        "eval",
        paths,
        {
            "--model": models,
            "--dataset": datasets,
            "--data-root": junk,
            "--weights": paths,
            "--seed": numbers,
            "--attack": attacks,
            "--eps": numbers,
            "--which": st.sampled_from(["last", "best", "worst"]),
            "--test-per-class": numbers,
            "--device": devices,
            "--json": files_out,
        },
    )
    analyze = command_lines(
        "analyze",
        paths,
        {
            "--which": st.sampled_from(["last", "best", "x"]),
            "--eps": numbers,
            "--steps": numbers,
            "--step-size": numbers,
            "--target-steps": numbers,
            "--target-step-size": numbers,
            "--loss": st.sampled_from(["ce", "margin", "kl"]),
            "--test-per-class": numbers,
            "--batch-size": numbers,
            "--device": devices,
            "--out": files_out,
        },
    )
    compare = command_lines(
        "compare",
        paths,
        {
            "--format": st.sampled_from(["markdown", "csv", "latex", "html"]),
            "--which": st.sampled_from(["last", "best"]),
            "--attack": attacks,
            "--ignore": fields,
            "--out": files_out,
        },
        ("--no-group", "--no-per-class"),
    )
    report = command_lines(
        "report",
        paths,
        {
            "--out": files_out,
            "--which": st.sampled_from(["last", "best"]),
            "--attack": attacks,
            "--title": junk,
            "--ignore": fields,
        },
        ("--no-group",),
    )
    list_ = command_lines(
        "list",
        st.sampled_from(["presets", "models", "methods", "attacks", "datasets", "preset"]),
        {},
        ("--help",),
        max_pieces=2,
    )
    return st.one_of(eval_, analyze, compare, report, list_)


def sweep_demo_lines(runs):
    presets = st.sampled_from(["digits_erm", "digits_pgd_at", "digits_frl_rwrm", "digts_erm", "x.yaml"])
    sweep = command_lines(
        "sweep",
        presets,
        {
            "--seeds": st.sampled_from(["1", "2", "0,1", "x", "-1", "0", "1,1", ""]),
            "--out": st.sampled_from(["grid", ".", str(runs["empty"]), "/dev/null"]),
            "--table": files_out,
            "--format": st.sampled_from(["markdown", "csv", "latex", "tsv"]),
            "--which": st.sampled_from(["last", "best"]),
            "--threads": st.sampled_from(["1", "0", "-2", "x"]),
        },
        ("--table-only", "--verbose"),
        max_pieces=5,
    )
    tiny_sweep = sweep.map(lambda argv: argv + TINY)
    demo = command_lines(
        "demo",
        st.sampled_from(TINY),
        {
            "--methods": st.sampled_from(
                ["", ",", "digits_erm", "ERM", "digits_bat,ERM", "digits_frl_rw", "xyz", "default"]
            ),
            "--out": st.sampled_from(["d", ".", "/dev/null"]),
        },
        ("--quiet",),
        max_pieces=4,
    )
    tiny_demo = demo.map(lambda argv: argv + TINY)
    return st.one_of(tiny_sweep, tiny_demo, sweep, demo)


def free_lines():
    words = (
        st.sampled_from(
            [
                "train",
                "eval",
                "list",
                "demo",
                "analyze",
                "compare",
                "report",
                "sweep",
                "group",
                "--help",
                "-h",
                "--version",
                "--quiet",
                "--resume",
                "--run-dir",
                "--out",
                "--",
                "-",
                "digits_erm",
                "presets",
                "no/such",
                "trian",
                "ev",
            ]
        )
        | overrides
        | junk
    )
    return st.lists(words, max_size=6)


def group_lines(runs):
    paths = st.sampled_from([str(runs["empty"]), str(runs["finished"]), "no/such", "g"])
    train_ = command_lines(
        "train",
        st.sampled_from(["x"]),
        {
            "--preset": st.sampled_from(["adult", "compas", "nope", "x.yaml"]),
            "--methods": st.sampled_from(["all", "", "erm", "nope"]),
            "--seeds": st.sampled_from(["0", "0,1", "x", ""]),
            "--out": paths,
            "--data-dir": paths,
            "--threads": st.sampled_from(["1", "0", "x"]),
        },
        ("--download", "--quiet", "--overwrite"),
    )
    eval_ = command_lines("eval", paths, {"--data-dir": paths, "--output": files_out})
    compare = command_lines(
        "compare", paths, {"--notion": junk, "--format": junk, "--file": junk, "--output": files_out}, ("--hard",)
    )
    return st.one_of(train_, eval_, compare, free_lines()).map(lambda argv: ["group", *argv])


# ---------------------------------------------------------------------------- the properties


@settings(max_examples=EXAMPLES or 170, **SETTINGS)
@given(data=st.data())
def test_fuzz_train(cheap, runs, data):
    check(data.draw(train_lines(runs)), cheap)


@settings(max_examples=EXAMPLES or 220, **SETTINGS)
@given(data=st.data())
def test_fuzz_readers_eval_analyze_compare_report_list(cheap, runs, data):
    check(data.draw(reader_lines(runs)), cheap)


@settings(max_examples=EXAMPLES or 50, **SETTINGS)
@given(data=st.data())
def test_fuzz_sweep_and_demo(cheap, runs, data):
    check(data.draw(sweep_demo_lines(runs)), cheap)


@settings(max_examples=EXAMPLES or 80, **SETTINGS)
@given(argv=free_lines())
def test_fuzz_free_form_lines(cheap, argv):
    check(argv, cheap)


@settings(max_examples=EXAMPLES or 40, **SETTINGS)
@given(data=st.data())
def test_fuzz_group_never_crashes(cheap, runs, data):
    check(data.draw(group_lines(runs)), cheap)


def test_the_fuzz_covers_every_subcommand_and_at_least_500_lines():
    from robustfair.cli import COMMANDS

    per_test = {"train": 170, "readers": 220, "sweep_demo": 50, "free": 80, "group": 40}
    assert sum(per_test.values()) >= 500
    covered = {"train", "eval", "analyze", "compare", "report", "list", "sweep", "demo", "group"}
    assert covered == set(COMMANDS)
