"""docs/RESULTS.md's tables are the verbatim output of the commands printed above them.

For every `robustfair sweep ... --table-only` line in the document whose run directory
exists in this checkout (`runs/` is not committed, so a clean clone skips), the command is
run again and its output must be what the document shows under the command: all of it, or
a leading part that ends at a table boundary (the follow-up quotes only a summary table).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from robustfair.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RESULTS.md"


def table_commands() -> list[tuple[int, list[str]]]:
    lines = DOC.read_text().splitlines()
    return [
        (i, shlex.split(line)[1:])
        for i, line in enumerate(lines)
        if line.startswith("robustfair sweep ") and line.rstrip().endswith("--table-only")
    ]


def shown_after(line_index: int) -> list[str]:
    """The document's lines after the command's code block, from the first non-blank one."""
    lines = DOC.read_text().splitlines()
    i = line_index + 1
    while not lines[i].startswith("```"):
        i += 1
    i += 1
    while not lines[i].strip():
        i += 1
    return lines[i:]


def test_the_document_has_table_commands():
    assert len(table_commands()) >= 4


@pytest.mark.parametrize("line_index,args", table_commands(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_table_in_the_document_is_the_command_output(line_index, args, monkeypatch, capsys):
    out_dir = ROOT / args[args.index("--out") + 1]
    if not out_dir.is_dir():
        pytest.skip(f"{out_dir.relative_to(ROOT)} not in this checkout (runs/ is not committed)")
    monkeypatch.chdir(ROOT)
    assert main(args) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    shown = shown_after(line_index)
    same = 0
    while same < min(len(printed), len(shown)) and printed[same] == shown[same]:
        same += 1
    assert same >= 5, f"line {line_index + 1}: the table under the command differs from its output at line {same}"
    assert same == len(printed) or "" in (printed[same], printed[same - 1]), (
        f"line {line_index + 1}: the document shows {same} of {len(printed)} output lines, cut inside a table"
    )
