"""`robustfair list KIND`: one line per entry with what it is; a closed pipe ends quietly."""

from __future__ import annotations

from robustfair.attacks import ATTACKS
from robustfair.cli import main
from robustfair.engine.config import list_presets


def test_list_presets_prints_one_line_each_with_its_header_comment(capsys):
    assert main(["list", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(list_presets())
    mnist = next(line for line in lines if line.startswith("  results_mnist_base:"))
    assert "Results setting 2" in mnist
    assert all(line.startswith("  ") for line in lines[1:])


def test_list_attacks_states_each_threat_model(capsys):
    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    assert "  pgd40_r3: PGD-40 on CE, step eps/10, uniform start, 3 restarts" in out
    assert len(out.splitlines()) == 1 + len(ATTACKS.names())


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("builtins.print", closed)
    assert main(["list", "methods"]) == 141
    assert capsys.readouterr().err == ""
