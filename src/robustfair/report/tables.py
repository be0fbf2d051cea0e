"""Tables of class-wise results in the layout of BAT's Table 1.

Rows are runs; columns the six summary numbers of METHODS.md (error %, lower is better).
`summary_table` / `per_class_table` print plain Markdown (the demo and `eval`);
`format_table` renders a structured table (text cells and `Number` cells carrying an
optional std over seeds) as Markdown, CSV, LaTeX or HTML (`compare` and the report).
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from robustfair.errors import ConfigError

SUMMARY_COLUMNS = [
    ("avg_std_err", "Avg. Std."),
    ("worst_std_err", "Worst Std."),
    ("avg_bndy_err", "Avg. Bndy."),
    ("worst_bndy_err", "Worst Bndy."),
    ("avg_rob_err", "Avg. Rob."),
    ("worst_rob_err", "Worst Rob."),
]


def summary_table(rows: Sequence[tuple[str, Mapping[str, float]]], *, title: str = "method") -> str:
    """Markdown table: one row per (name, summary dict), six error columns in %."""
    header = f"| {title} | " + " | ".join(label for _, label in SUMMARY_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(SUMMARY_COLUMNS)
    lines = [header, rule]
    for name, summary in rows:
        cells = " | ".join(f"{summary[key]:.2f}" for key, _ in SUMMARY_COLUMNS)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def per_class_table(
    rows: Sequence[tuple[str, Sequence[float]]], classes: Sequence[str], *, title: str = "robust error % per class"
) -> str:
    """Markdown table: one row per (name, per-class values in %), one column per class,
    headed by the full class name (never cut: "automobile", not "automobi")."""
    names = [str(c).replace("|", "\\|") for c in classes]
    header = f"| {title} | " + " | ".join(names) + " |"
    rule = "|---|" + "---:|" * len(names)
    lines = [header, rule]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines)


def robust_error_by_class(result: Mapping) -> list[float]:
    """Per-class robust error in % from a results.json-shaped dict (accuracies stored in %)."""
    return [float("nan") if a is None else 100.0 - a for a in result["per_class"]["robust_acc"]]


def clean_error_by_class(result: Mapping) -> list[float]:
    """Per-class clean error in % from a results.json-shaped dict (accuracies stored in %)."""
    return [float("nan") if a is None else 100.0 - a for a in result["per_class"]["clean_acc"]]


# ---- structured tables in several formats -------------------------------------------------

FORMATS = ("markdown", "csv", "latex", "html")


@dataclass(frozen=True)
class Number:
    """A numeric cell: value (None/NaN: missing), std over seeds (None: a single run), n runs."""

    value: float | None
    std: float | None = None
    n: int = 1
    bold: bool = False
    digits: int = 2

    @property
    def missing(self) -> bool:
        return self.value is None or (isinstance(self.value, float) and math.isnan(self.value))

    def text(self, plus_minus: str = " ± ") -> str:
        if self.missing:
            return "-"
        out = f"{self.value:.{self.digits}f}"
        if self.std is not None and not math.isnan(self.std):
            out += f"{plus_minus}{self.std:.{self.digits}f}"
        return out


def mean_std(values: Sequence[float | None], digits: int = 2) -> Number:
    """Mean and sample std (ddof 1; None for one value) of the known values."""
    known = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not known:
        return Number(None, None, 0, digits=digits)
    mean = sum(known) / len(known)
    std = None
    if len(known) > 1:
        std = math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1))
    return Number(mean, std, len(known), digits=digits)


def bold_lowest(rows: list[list], columns: Sequence[int], eligible: Sequence[bool] | None = None) -> list[list]:
    """Copy of `rows` with the lowest Number of each given column in bold (BAT's tables).

    eligible: one flag per row (default: every row); only eligible rows compete and are
    marked (`report.compare.ranking_problem` says which runs may be). Nothing is bold in a
    column with fewer than two rows to compare.
    """
    rows = [list(r) for r in rows]
    eligible = [True] * len(rows) if eligible is None else list(eligible)
    for col in columns:
        cells = [r[col] for r in rows if isinstance(r[col], Number) and not r[col].missing]
        ranked = [r[col] for r, ok in zip(rows, eligible) if ok and isinstance(r[col], Number) and not r[col].missing]
        if len(cells) < 2 or not ranked:
            continue
        best = min(c.value for c in ranked)
        for r, ok in zip(rows, eligible):
            cell = r[col]
            if ok and isinstance(cell, Number) and not cell.missing and cell.value == best:
                r[col] = replace(cell, bold=True)
    return rows


def format_table(
    header: Sequence[str], rows: Sequence[Sequence], fmt: str = "markdown", *, caption: str | None = None
) -> str:
    """Render a table. header: column titles; rows: cells, each a str or a Number.

    markdown: GitHub pipes, numbers right-aligned, bold as **x**, "mean ± std";
    csv: numbers unformatted, a "<column> std" column after each column holding a std;
    latex: a booktabs tabular (\\textbf, $mean \\pm std$), text escaped;
    html: a <table> with escaped text.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format: {fmt!r} is not allowed; valid values: {', '.join(FORMATS)}")
    rows = [list(r) for r in rows]
    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"table row has {len(r)} cells for {len(header)} columns")
    numeric = [bool(rows) and all(isinstance(r[i], Number) for r in rows) for i in range(len(header))]
    return {"markdown": _markdown, "csv": _csv_text, "latex": _latex, "html": _html_table}[fmt](
        list(header), rows, numeric, caption
    )


def _markdown(header, rows, numeric, caption) -> str:
    def cell(c) -> str:
        if isinstance(c, Number):
            return f"**{c.text()}**" if c.bold and not c.missing else c.text()
        return str(c).replace("|", "\\|")

    lines = [] if caption is None else [caption, ""]
    lines.append("| " + " | ".join(str(h).replace("|", "\\|") for h in header) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _csv_text(header, rows, numeric, caption) -> str:
    with_std = [any(isinstance(r[i], Number) and r[i].std is not None for r in rows) for i in range(len(header))]
    out_header = []
    for i, h in enumerate(header):
        out_header.append(h)
        if with_std[i]:
            out_header.append(f"{h} std")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(out_header)
    for r in rows:
        out = []
        for i, c in enumerate(r):
            if isinstance(c, Number):
                out.append("" if c.missing else repr(float(c.value)))
            else:
                out.append(str(c))
            if with_std[i]:
                std = c.std if isinstance(c, Number) else None
                out.append("" if std is None else repr(float(std)))
        writer.writerow(out)
    return buffer.getvalue().rstrip("\n")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _latex(header, rows, numeric, caption) -> str:
    def cell(c) -> str:
        if isinstance(c, Number):
            if c.missing:
                return "--"
            body = c.text(plus_minus=r" \pm ")
            body = f"${body}$" if c.std is not None else body
            return rf"\textbf{{{body}}}" if c.bold else body
        return latex_escape(c)

    spec = "".join("r" if n else "l" for n in numeric)
    lines = [rf"% {latex_escape(caption)}"] if caption else []
    lines += [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(cell(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _html_table(header, rows, numeric, caption) -> str:
    def cell(c, is_numeric) -> str:
        cls = ' class="num"' if is_numeric else ""
        if isinstance(c, Number):
            text = html.escape(c.text())
            return f"<td{cls}><b>{text}</b></td>" if c.bold and not c.missing else f"<td{cls}>{text}</td>"
        return f"<td{cls}>{html.escape(str(c))}</td>"

    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>")
    parts.append("<tbody>")
    for r in rows:
        parts.append("<tr>" + "".join(cell(c, numeric[i]) for i, c in enumerate(r)) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)
