"""Config and command line: every failure is one clean line and a non-zero exit.

Property tests (hypothesis) throw random configs at `parse_config` and random argument
lists at `robustfair.cli.main` (training itself stubbed out): only `ConfigError` (or
success) comes out of the validator, nothing escapes `main`, failures exit non-zero with
exactly one stderr line and are never reported as internal errors. Unknown dataset,
model, method and attack names list the valid ones before anything runs.
"""

import dataclasses
import io
import typing
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import robustfair.commands as commands_pkg  # noqa: F401  (the subcommand modules below)
from robustfair.cli import main
from robustfair.engine.config import RunConfig, list_presets, parse_config
from robustfair.engine.preflight import check_names
from robustfair.engine.trainer import eval_attack_overrides, resolve_device
from robustfair.errors import ConfigError
from robustfair.methods import METHODS

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _schema() -> dict[str, list[str]]:
    """section -> field names ('' = top level), from the real dataclasses."""
    hints = typing.get_type_hints(RunConfig)
    schema: dict[str, list[str]] = {"": []}
    for f in dataclasses.fields(RunConfig):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            schema[f.name] = [g.name for g in dataclasses.fields(tp)]
        elif f.name != "method":
            schema[""].append(f.name)
    schema["method"] = sorted({g.name for cls in METHODS.values() for g in dataclasses.fields(cls.Config)})
    return schema


SCHEMA = _schema()
METHOD_NAMES = METHODS.names()
SECTIONS = [s for s in SCHEMA if s]
FIELD_PATHS = [f"{s}.{f}" if s else f for s, fields in SCHEMA.items() for f in fields] + ["method.name"]

names = st.sampled_from(
    ["digits", "cifar10", "small_cnn", "pgd20", "none", "crop_flip", "last", "cosine", "auto", "cpu", *METHOD_NAMES]
)
line_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=10)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | names
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(line_text | names, inner, max_size=3),
    max_leaves=8,
)
junk_keys = line_text


@st.composite
def raw_configs(draw):
    raw = {}
    for section in draw(st.lists(st.sampled_from(SECTIONS + [""]), max_size=4, unique=True)):
        keys = draw(st.lists(st.sampled_from(SCHEMA[section]) | junk_keys, max_size=4, unique=True))
        fields = {k: draw(values) for k in keys}
        if section == "method" and draw(st.booleans()):
            fields["name"] = draw(st.sampled_from(METHOD_NAMES) | st.text(max_size=8))
        if section:
            raw[section] = fields if draw(st.integers(0, 9)) else draw(values)  # sometimes not a mapping
        else:
            raw.update(fields)
    return raw


def assert_clean(err: Exception) -> str:
    message = str(err)
    assert isinstance(err, ConfigError), f"{type(err).__name__} escaped the validator: {message}"
    assert message.strip() and "\n" not in message, repr(message)
    return message


@SETTINGS
@given(raw_configs())
def test_random_configs_give_a_config_or_one_clean_config_error(raw):
    try:
        config = parse_config(raw)
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions come out
        assert_clean(err)
    else:
        assert isinstance(config, RunConfig)


@SETTINGS
@given(st.sampled_from(FIELD_PATHS), values, st.sampled_from(METHOD_NAMES))
def test_one_bad_field_is_named_in_the_error(path, value, method):
    """A valid config with one field set at random: an error names that field (or, for a
    rule across fields, its section) and no other section."""
    raw = {"method": {"name": method}}
    section, _, field = path.rpartition(".")
    target = raw.setdefault(section, {}) if section else raw
    if section == "method" and field == "name":
        target["name"] = value
    else:
        target[field] = value
    try:
        parse_config(raw)
    except Exception as err:  # noqa: BLE001
        message = assert_clean(err)
        if section == "method":
            assert message.startswith(("method", "unknown method")), message
            assert field in message or message.startswith("unknown method"), message
        elif section:
            assert message.startswith(f"{section}.") or f"{section}." in message, message
        else:
            assert message.startswith(field), message


def test_unknown_key_with_a_line_break_stays_on_one_line():
    with pytest.raises(ConfigError) as err:
        parse_config({"data": {"bad\nkey": 1}})
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- CLI

PRESETS = list_presets()
option_words = st.sampled_from(
    [
        "--run-dir",
        "--resume",
        "--quiet",
        "--help",
        "-h",
        "--version",
        "--which",
        "best",
        "--attack",
        "--eps",
        "--format",
        "--",
        "-",
        "--run-dir=x",
        "--bogus",
    ]
)
command_words = st.sampled_from(
    [
        "train",
        "eval",
        "list",
        "demo",
        "analyze",
        "compare",
        "report",
        "group",
        "sweep",
        "models",
        "presets",
        "attacks",
        "datasets",
        "methods",
    ]
)
path_words = st.sampled_from([".", "/", "runs", "no/such/dir", "x.yaml", "configs/digits_erm.yaml", "/dev/null"])
override_values = st.sampled_from(
    [
        "1",
        "-1",
        "0",
        "0.5",
        "1e-3",
        "abc",
        "[1, 2]",
        "[90, 75]",
        "{a: 1}",
        "true",
        "null",
        "",
        ".nan",
        ".inf",
        "[",
        "{",
        ":",
        "'",
        "pgd20",
        "nonexistent",
        "cpu",
        "cuda:7",
        "gpu",
        "erm",
        "trades",
        "digits",
        "small_cnn",
        "autoattack",
        "none",
        "[pgd20, fgsm]",
        "[square]",
    ]
)
overrides = st.builds(
    lambda path, value: f"{path}={value}",
    st.sampled_from(FIELD_PATHS) | st.text(max_size=8),
    override_values | st.text(max_size=8),
)
awkward = st.sampled_from(["a\nb=1", "train.\n=1", "data.name=x\ny", "\n", "train.epochs=\t", "=1", "a..b=1"])
tokens = (
    command_words
    | option_words
    | path_words
    | overrides
    | st.sampled_from(PRESETS + ["no_such_preset"])
    | st.text(max_size=10)
    | awkward
)
real_overrides = st.builds(lambda path, value: f"{path}={value}", st.sampled_from(FIELD_PATHS), override_values)
train_lines = st.builds(
    lambda target, rest, tail: ["train", target, *rest, *tail],
    st.sampled_from(PRESETS * 3 + [".", "x.yaml", "no/such/dir", "no_such_preset"]),
    st.lists(real_overrides, min_size=1, max_size=4),
    st.lists(option_words | overrides | awkward, max_size=2),
)
any_lines = st.lists(tokens, max_size=7) | st.builds(
    lambda first, rest: [first, *rest], command_words, st.lists(tokens, max_size=6)
)
argv_lists = st.integers(0, 2).flatmap(lambda pick: any_lines if pick == 0 else train_lines)


@pytest.fixture
def stubbed_commands(monkeypatch):
    """Nothing trains, evaluates or writes: the commands' own argument and config checks still run."""
    import robustfair.commands.train as train_cmd  # noqa: F401
    from robustfair.cli import _command_modules

    calls = []

    def fake_train(config, run_dir, **kwargs):
        # the checks Trainer makes before touching data or disk, then no training
        method = config.method_config()
        eps = float(config.eval.eps if config.eval.eps is not None else method.eps)
        check_names(config, lambda name: eval_attack_overrides(name, eps))
        resolve_device(config.train.device)
        calls.append(("train", config.name, str(run_dir), kwargs))
        return {}

    monkeypatch.setattr("robustfair.engine.trainer.train", fake_train)
    monkeypatch.setattr("robustfair.commands.eval.print_result", lambda *a, **k: None)
    for module in _command_modules():
        name = module.__name__.rsplit(".", 1)[-1]
        if name not in ("train", "list", "group"):
            monkeypatch.setattr(module, "run", lambda args, _name=name: calls.append((_name,)) or 0)
    for action in ("run_train", "run_eval", "run_compare"):  # group's own parsing still runs
        monkeypatch.setattr(f"robustfair.group.cli.{action}", lambda args: calls.append(("group",)) or 0)
    return calls


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@SETTINGS
@given(argv=argv_lists)
def test_random_command_lines_never_escape_and_fail_cleanly(stubbed_commands, argv):
    code, out, err = run_cli(argv)
    event(f"exit {code}: {err[:36] if code else 'ok'}")  # see --hypothesis-show-statistics
    assert isinstance(code, int) and not isinstance(code, bool)
    assert "Traceback" not in err + out
    if code != 0:
        assert err.endswith("\n") and err.count("\n") == 1, repr(err)
        assert err.startswith("robustfair"), err
        assert "internal error" not in err, err


def test_stub_lets_a_good_command_line_through(stubbed_commands):
    code, _, err = run_cli(["train", "digits_trades", "train.epochs=2", "--quiet", "--run-dir", "somewhere"])
    assert (code, err) == (0, "")
    assert stubbed_commands == [("train", "digits_trades", "somewhere", {"resume": False, "quiet": True})]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train"], "the following arguments are required: config"),
        (["train", "digits_erm", "--bogus"], "unrecognized arguments: --bogus"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["train", "digits_erm", "train.epochs=0"], "train.epochs: 0 is out of range; allowed: >= 1"),
        (["train", "digits_erm", "optim.lr=abc"], "optim.lr: expected a number, got 'abc'"),
        (["train", "digits_erm", "train.epochs"], "override 'train.epochs': expected key=value"),
        (
            ["train", "digits_erm", "data.augment=rotate"],
            "data.augment: 'rotate' is not allowed; valid values: crop_flip, flip",
        ),
        (["train", "no_such_preset"], "unknown preset 'no_such_preset'"),
        (["train", "--resume", "no/such/run"], "cannot resume: run directory 'no/such/run' does not exist"),
        (["train", "--resume", "."], "is not a run directory (no config.yaml)"),
        (["train", "digits_erm", "train.epochs=2\nmethod.beta=1"], "train.epochs: expected an integer"),
    ],
)
def test_bad_command_lines_give_one_line_naming_the_problem(stubbed_commands, argv, fragment):
    code, _, err = run_cli(argv)
    assert code == 2
    assert err.count("\n") == 1 and fragment in err, err
    assert stubbed_commands == []


# ---------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    "override, fragment, valid",
    [
        (
            "data.name=imagenet21k",
            "data.name: unknown dataset 'imagenet21k'; did you mean imagenette? valid dataset names: ",
            "digits",
        ),
        ("model.name=vit_huge", "model.name: unknown model 'vit_huge'; valid model names: ", "small_cnn"),
        ("method.name=adamw", "unknown method 'adamw'; valid method names: ", "trades"),
        (
            "eval.attack=pgd21",
            "eval.attack: unknown attack 'pgd21'; did you mean pgd20, pgd10 or pgd100? valid attack names: ",
            "pgd20",
        ),
        (
            "train.val_attack=apgd",
            "train.val_attack: unknown attack 'apgd'; did you mean pgd10, pgd20 or pgd100? valid attack names: ",
            "autoattack",
        ),
        (
            "eval.extra_attacks=[pgd20, square]",
            "eval.extra_attacks[1]: unknown attack 'square'; valid attack names: ",
            "cw20",
        ),
    ],
)
def test_unknown_names_list_the_valid_ones_before_anything_runs(tmp_path, capsys, override, fragment, valid):
    run = tmp_path / "run"
    small = ["train.epochs=1", "data.train_per_class=5", "data.test_per_class=2", "data.val_per_class=0"]
    assert main(["train", "digits_erm", *small, override, "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    listed = err.split("names: ", 1)[1].strip().split(", ")
    assert valid in listed and len(listed) >= 3
    assert not run.exists()  # refused before the run directory, the data or the model


def test_property_tests_cover_the_whole_schema():
    # every section and field of the real config is reachable by the generators above
    assert set(SECTIONS) >= {"data", "model", "optim", "schedule", "train", "eval", "method"}
    assert {"train.epochs", "optim.lr", "data.val_per_class", "eval.attack", "method.beta", "seed"} <= set(FIELD_PATHS)


# ---------------------------------------------------------------------------- what reaches the top


@pytest.mark.parametrize(
    "raised, code, line",
    [
        (
            OSError(28, "No space left on device", "runs/x/metrics.jsonl"),
            1,
            "robustfair: error: No space left on device (runs/x/metrics.jsonl); the disk is full: free some space\n",
        ),
        (
            PermissionError(13, "Permission denied", "/srv/runs"),
            1,
            "robustfair: error: Permission denied (/srv/runs); "
            "permission denied: choose a directory you can write to\n",
        ),
        (
            ConfigError("train.epochs: 0 is out of range;\nallowed: >= 1"),
            2,
            "robustfair: error: train.epochs: 0 is out of range; allowed: >= 1\n",
        ),
        (MemoryError(), 1, "robustfair: error: out of memory; lower train.batch_size or train.eval_batch_size\n"),
        (
            ValueError("something unexpected\nsecond line"),
            70,
            "robustfair: internal error (a bug; please report it): ValueError: something unexpected; "
            "ROBUSTFAIR_DEBUG=1 shows the traceback\n",
        ),
        (SystemExit("a command gave up"), 2, "robustfair: error: a command gave up\n"),
    ],
)
def test_whatever_a_command_raises_ends_as_one_line(monkeypatch, raised, code, line):
    def boom(config, run_dir, **kwargs):
        raise raised

    monkeypatch.setattr("robustfair.engine.trainer.train", boom)
    monkeypatch.delenv("ROBUSTFAIR_DEBUG", raising=False)
    assert run_cli(["train", "digits_erm", "--quiet"]) == (code, "", line)


def test_debug_mode_shows_the_traceback_of_a_bug(monkeypatch):
    def boom(config, run_dir, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("robustfair.engine.trainer.train", boom)
    monkeypatch.setenv("ROBUSTFAIR_DEBUG", "1")
    with pytest.raises(ValueError, match="a bug"):
        main(["train", "digits_erm", "--quiet"])


def test_a_model_that_cannot_be_built_from_its_options_is_a_config_error(tmp_path, monkeypatch, capsys):
    def broken_build(name, **kwargs):
        raise TypeError("__init__() got an unexpected keyword argument 'widen'")

    monkeypatch.setattr("robustfair.models.build_model", broken_build)
    argv = [
        "train",
        "digits_erm",
        "train.epochs=1",
        "data.train_per_class=5",
        "data.val_per_class=0",
        "data.test_per_class=2",
        "--run-dir",
        str(tmp_path / "run"),
        "--quiet",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "model: cannot build 'small_cnn' with options {} for this data (1 channels, size 8): __init__()" in err


# ---------------------------------------------------------------------------- overrides anywhere, suggestions


def test_overrides_are_accepted_anywhere_on_the_line(monkeypatch):
    from robustfair.cli import parse_command_line

    seen = []
    monkeypatch.setattr(
        "robustfair.engine.trainer.train", lambda config, run_dir, **kwargs: seen.append((config, str(run_dir))) or {}
    )
    line = ["train", "--run-dir", "somewhere", "init_from=runs/x", "digits_trades", "--quiet", "train.epochs=2"]
    assert run_cli(line) == (0, "", "")
    ((config, run_dir),) = seen
    assert (config.name, run_dir, config.init_from, config.train.epochs) == ("digits_trades", "somewhere", "runs/x", 2)

    args = parse_command_line(["sweep", "digits_erm", "--out", "X", "train.epochs=1", "--seeds", "2", "digits_bat"])
    assert (args.presets, args.out, args.seeds) == (["digits_erm", "train.epochs=1", "digits_bat"], "X", "2")
    args = parse_command_line(["compare", "a", "--format", "csv", "b"])
    assert (args.runs, args.fmt) == (["a", "b"], "csv")
    args = parse_command_line(["demo", "--out", "d", "train.epochs=2", "--quiet", "data.val_per_class=3"])
    assert args.overrides == ["train.epochs=2", "data.val_per_class=3"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["train", "digits_erm", "--run-dir", "x", "--bogus"],
            "robustfair train: error: unrecognized arguments: --bogus (see: robustfair train --help)",
        ),
        (["eval", "runs/a", "--which", "best", "runs/b"], "robustfair eval: error: unrecognized arguments: runs/b"),
        (
            ["train", "--quiet", "train.epochs=2"],
            "train: give a preset, a YAML file or (with --resume) a run directory",
        ),
        (["trian", "digits_erm"], "invalid choice: 'trian'; did you mean 'train'? (choose from"),
        (["list", "preset"], "invalid choice: 'preset'; did you mean 'presets'?"),
        (["train", "digts_bat"], "unknown preset 'digts_bat' (and no such file); did you mean digits_bat, "),
        (
            ["train", "digits_bat", "train.epoch=2"],
            "train.epoch: unknown field; did you mean epochs or eps_warmup_epochs? valid fields",
        ),
        (["train", "digits_erm", "a\x00b=1"], "robustfair: error: argument 'a\\x00b=1': contains a NUL character"),
    ],
)
def test_command_line_mistakes_are_one_line_with_the_closest_valid_words(stubbed_commands, argv, fragment):
    code, _, err = run_cli(argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_demo_methods_suggest_the_closest():
    from robustfair.commands.demo import selected_runs

    with pytest.raises(ConfigError, match="demo --methods: unknown 'digits_bta'; did you mean digits_bat"):
        selected_runs("digits_bta")


def test_a_path_holding_an_equals_sign_is_a_target_not_an_override():
    from robustfair.commands.train import split_target
    from robustfair.typed_config import is_override

    assert split_target("runs/lr=0.1", ["optim.lr=0.01"]) == ("runs/lr=0.1", ["optim.lr=0.01"])
    assert split_target("init_from=runs/a", ["digits_bat", "seed=2"]) == ("digits_bat", ["init_from=runs/a", "seed=2"])
    assert [is_override(w) for w in ("a.b=1", "seed=0", "runs/x=1", "=1", "a..b=1", "x.yaml")] == [
        True,
        True,
        False,
        False,
        True,
        False,
    ]


def test_a_long_list_of_names_is_never_printed_on_one_line():
    from robustfair.registry import unknown_name_message

    names = [f"name_{i:03d}" for i in range(80)]
    message = unknown_name_message("preset", "name_01x", names, list_command="robustfair list presets")
    assert message == (
        "unknown preset 'name_01x'; did you mean name_010, name_011 or name_012? (80 presets: robustfair list presets)"
    )
    assert (
        unknown_name_message("preset", "zzz", names, list_command="robustfair list presets")
        == "unknown preset 'zzz'; none is close (80 presets: robustfair list presets)"
    )
    assert (
        unknown_name_message("attack", "fgms", ["fgsm", "pgd20"])
        == "unknown attack 'fgms'; did you mean fgsm? valid attack names: fgsm, pgd20"
    )
