"""docs/RESULTS.md's group-fairness tables are the verbatim output of the commands printed above them.

For every `robustfair group compare ...` line in the document whose run directories exist in
this checkout (`runs/` is not committed, so a clean clone skips), the command is run again and
its output must be exactly what the document shows under the command's code block.
"""

from __future__ import annotations

import glob
import shlex
from pathlib import Path

import pytest

from robustfair.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RESULTS.md"


def compare_commands() -> list[tuple[int, list[str]]]:
    lines = DOC.read_text().splitlines()
    return [(i, shlex.split(line)[1:]) for i, line in enumerate(lines) if line.startswith("robustfair group compare ")]


def shown_after(line_index: int, count: int) -> list[str]:
    """`count` lines of the document after the command's code block, from the first non-blank one."""
    lines = DOC.read_text().splitlines()
    i = line_index + 1
    while not lines[i].startswith("```"):
        i += 1
    i += 1
    while not lines[i].strip():
        i += 1
    return lines[i : i + count]


def test_the_document_has_group_compare_commands():
    assert len(compare_commands()) >= 4


def expand(args: list[str]) -> list[str] | None:
    """The arguments with run paths globbed as a shell would (relative to the checkout); None
    when a path is absent."""
    out = []
    for a in args:
        if a.startswith("runs/"):
            matches = (
                sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(a))
                if glob.has_magic(a)
                else ([a] if (ROOT / a).exists() else [])
            )
            if not matches:
                return None
            out.extend(matches)
        else:
            out.append(a)
    return out


@pytest.mark.parametrize("line_index,args", compare_commands(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_group_table_in_the_document_is_the_command_output(line_index, args, monkeypatch, capsys):
    expanded = expand(args)
    if expanded is None:
        pytest.skip("its run directories are not in this checkout (runs/ is not committed)")
    monkeypatch.chdir(ROOT)
    assert main(expanded) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    assert shown_after(line_index, len(printed)) == printed, f"line {line_index + 1}: the tables differ from the output"
