"""One self-contained HTML report for one or more runs.

Everything is inside the file: tables are HTML tables, figures PNGs embedded as base64
data URIs, styles inline. No JavaScript, no fonts or scripts from the network, so it
reads the same offline, in a mail attachment or in a headless browser.

Sections: runs; summary (BAT Table 1 layout, last and best models, extra attacks such as
AutoAttack); per-class errors (table and bar charts, BAT Figures 1 and 4); sanity checks;
then per run: confusion heatmaps, training curves, method state (FRL multipliers and
class weights, ...), and the source/target-class analysis when `analysis.json` exists.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import robustfair
from robustfair.errors import DataError
from robustfair.report import plots
from robustfair.report.analysis_tables import analysis_table, correlation_table
from robustfair.report.compare import (
    CHANCE_MARGIN,
    DEFAULT_IGNORED,
    RunGroup,
    comparison_notes,
    group_runs,
    per_class_rows,
    ranking_notes,
    summary_rows,
)
from robustfair.report.runs import RunRecord, attack_label
from robustfair.report.tables import Number, format_table

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1b1b1b; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
.meta, .note { color: #555; font-size: 0.9em; }
.note { background: #fff7e0; border-left: 4px solid #f0b400; padding: 0.4em 0.8em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f4f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; }
.pass { color: #177a2b; font-weight: 600; } .fail { color: #b3261e; font-weight: 600; }
.row { display: flex; flex-wrap: wrap; gap: 1em; } .row figure { flex: 1 1 420px; }
nav ul { columns: 2; } code { background: #f2f4f7; padding: 0 0.2em; }
"""


def render_report(
    runs: Sequence[RunRecord],
    *,
    which: str = "last",
    attack: str | None = None,
    title: str | None = None,
    group: bool = True,
    ignored: Sequence[str] = DEFAULT_IGNORED,
) -> str:
    """The report as one HTML string. runs: loaded run directories (`report.runs.load_runs`)."""
    if not runs:
        raise DataError("a report needs at least one run")
    groups = group_runs(runs, ignored=ignored, group=group)
    title = title or ("robustfair report: " + ", ".join(g.label for g in groups))
    body: list[str] = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">generated {_dt.datetime.now().strftime("%Y-%m-%d %H:%M")} by robustfair '
        f"{_e(robustfair.__version__)}; {len(runs)} run(s); {which} model"
        + (f"; attack {_e(attack)}" if attack else "")
        + "</p>",
    ]
    sections = [
        ("runs", "Runs", _runs_section(runs)),
        ("summary", "Summary", _summary_section(groups, which, attack)),
        ("per-class", "Per-class errors", _per_class_section(groups, which, attack)),
        ("sanity", "Sanity checks", _sanity_section(runs)),
    ]
    for index, run in enumerate(runs):
        sections.append((f"run-{index}", f"Run {run.label}", _run_section(run, which, attack)))
    body.append(
        "<nav><ul>"
        + "".join(f'<li><a href="#{anchor}">{_e(name)}</a></li>' for anchor, name, _ in sections)
        + "</ul></nav>"
    )
    for anchor, name, content in sections:
        body.append(f'<section id="{anchor}"><h2>{_e(name)}</h2>\n{content}\n</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(runs: Sequence[RunRecord], out: str | Path, **options: Any) -> Path:
    """Render and write the report; returns its path."""
    out = Path(out)
    text = render_report(runs, **options)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


# ---- sections ---------------------------------------------------------------------------------


def _runs_section(runs: Sequence[RunRecord]) -> str:
    header = ["run", "method", "model", "dataset", "epochs", "seed", "attack", "train time", "directory"]
    rows = []
    for run in runs:
        info = run.info
        seconds = info.get("train_time_s")
        rows.append(
            [
                run.label,
                run.method,
                str(info.get("model", (run.config.get("model") or {}).get("name", "?"))),
                str(run.results.get("dataset", "?")),
                str(info.get("epochs", "?")),
                str(run.seed),
                attack_label(run.results),
                "?" if seconds is None else f"{seconds:.0f} s",
                str(run.path),
            ]
        )
    return format_table(header, rows, "html")


def _summary_section(groups: Sequence[RunGroup], which: str, attack: str | None) -> str:
    parts = [
        '<p class="meta">Error % per class summarised as in BAT\'s Table 1 (Xu et al. 2021 protocol): '
        "average over the test set and worst class; lower is better. Bold: the lowest value among the runs "
        "that passed their sanity checks and beat chance on clean data (average clean error below chance "
        f"level, 100 (1 - 1/C) %, by at least {CHANCE_MARGIN:g} points); rows left out are named below the "
        "table. Groups of runs that differ only in seed show mean ± std.</p>"
    ]
    header, rows = summary_rows(groups, which=which, attack=attack)
    first = groups[0].results(which, attack)[0]
    parts.append(format_table(header, rows, "html", caption=f"{which} model, {attack_label(first)}"))
    shown = ranking_notes(groups, which=which, attack=attack)
    parts += [f'<p class="note">{_e(n)}</p>' for n in shown]
    parts += [f'<p class="note">{_e(n)}</p>' for n in comparison_notes(groups, which=which, attack=attack)]
    if which == "last" and all("best" in run.results for g in groups for run in g.runs):
        try:
            header, rows = summary_rows(groups, which="best", attack=attack)
        except DataError:  # the best model is evaluated under the main attack only
            rows = []
        if rows:
            parts.append(
                format_table(
                    header,
                    rows,
                    "html",
                    caption="best-on-validation model (selected by validation worst-class robust accuracy)",
                )
            )
            parts += [
                f'<p class="note">{_e(n)}</p>'
                for n in ranking_notes(groups, which="best", attack=attack)
                if n not in shown
            ]
    extra = sorted({name for g in groups for run in g.runs for name in (run.results.get("extra_attacks") or {})})
    for name in extra:
        having = [
            RunGroup(g.label, [r for r in g.runs if name in (r.results.get("extra_attacks") or {})]) for g in groups
        ]
        having = [g for g in having if g.runs]
        header, rows = summary_rows(having, which="last", attack=name)
        parts.append(format_table(header, rows, "html", caption=f"last model under {name}"))
        parts += [
            f'<p class="note">{_e(n)}</p>' for n in ranking_notes(having, which="last", attack=name) if n not in shown
        ]
    return "\n".join(parts)


def _per_class_section(groups: Sequence[RunGroup], which: str, attack: str | None) -> str:
    try:
        header, rows = per_class_rows(groups, which=which, attack=attack)
    except DataError as err:
        return f'<p class="note">{_e(str(err))}</p>'
    parts = [format_table(header, rows, "html", caption=f"error % per class, {which} model")]
    classes = header[2:]
    labels, clean, robust = [], [], []
    for row in rows:
        values = [c.value if isinstance(c, Number) else None for c in row[2:]]
        if row[1] == "clean":
            labels.append(row[0])
            clean.append(values)
        else:
            robust.append(values)
    fig = plots.per_class_error_figure(labels, classes, clean, robust)
    parts.append(
        _figure(fig, "Clean (top) and robust (bottom) error per class, runs side by side (BAT Figures 1 and 4).")
    )
    return "\n".join(parts)


def _sanity_section(runs: Sequence[RunRecord]) -> str:
    names: list[str] = []
    for run in runs:
        for check in _sanity_checks(run):
            if check.get("name") not in names:
                names.append(str(check.get("name")))
    if not names:
        return '<p class="meta">No sanity checks were recorded in these runs.</p>'
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    lines = [f"<table><thead><tr><th>run</th>{head}</tr></thead><tbody>"]
    failures = []
    for run in runs:
        by_name = {c.get("name"): c for c in _sanity_checks(run)}
        cells = []
        for name in names:
            check = by_name.get(name)
            if check is None:
                cells.append("<td>-</td>")
            elif check.get("passed"):
                cells.append(f'<td class="pass" title="{_e(check.get("message", ""))}">pass</td>')
            else:
                cells.append('<td class="fail">FAIL</td>')
                failures.append(f"{run.label}: {name}: {check.get('message', '')}")
        lines.append(f"<tr><td>{_e(run.label)}</td>{''.join(cells)}</tr>")
    lines.append("</tbody></table>")
    lines += [f'<p class="note">warning: {_e(f)}</p>' for f in failures]
    return "\n".join(lines)


def _sanity_checks(run: RunRecord) -> list[Mapping[str, Any]]:
    sanity = run.results.get("sanity")
    if isinstance(sanity, Mapping) and isinstance(sanity.get("checks"), list):
        return [c for c in sanity["checks"] if isinstance(c, Mapping)]
    if isinstance(sanity, Mapping):  # an older flat {name: passed} record
        return [{"name": k, "passed": bool(v), "message": ""} for k, v in sanity.items() if isinstance(v, bool)]
    return []


def _run_section(run: RunRecord, which: str, attack: str | None) -> str:
    parts = [
        f'<p class="meta">directory <code>{_e(str(run.path))}</code>; method {_e(run.method)}; '
        f"seed {_e(str(run.seed))}</p>"
    ]
    result = run.result(which, attack)
    classes = list(result.get("classes") or [])
    confusion = result.get("confusion") or {}
    if "clean" in confusion and "adversarial" in confusion:
        parts.append(
            '<div class="row">'
            + _figure(
                plots.confusion_figure(confusion["clean"], classes, title="clean"),
                "Clean confusion matrix (row-normalised %).",
            )
            + _figure(
                plots.confusion_figure(confusion["adversarial"], classes, title=f"under {attack_label(result)}"),
                "Adversarial confusion matrix (row-normalised %).",
            )
            + "</div>"
        )
    training = plots.training_figure(run.metrics, classes)
    if training is not None:
        parts.append("<h3>Training</h3>")
        parts.append(
            _figure(
                training,
                "Training loss and learning rate; validation errors; then one panel per "
                "class: its validation clean and robust error (metrics.jsonl).",
            )
        )
    state = plots.method_state_figure(run.metrics, classes)
    if state is not None:
        parts.append(
            _figure(
                state,
                "Method state per class over epochs (e.g. FRL's multipliers l0, l1, l2, "
                "class weights w0, w1 and eps factors).",
            )
        )
    if run.analysis is not None:
        parts.append(analysis_html(run.analysis))
    return "\n".join(parts)


def analysis_html(analysis: Mapping[str, Any]) -> str:
    """The source/target-class analysis of one run: table, correlations and figures."""
    parts = ["<h3>Source- and target-class fairness (BAT Figure 2)</h3>"]
    source, target = analysis["source"]["attack"], analysis["target"]["attack"]
    parts.append(
        f'<p class="meta">{analysis.get("num_samples", "?")} test samples, eps {analysis.get("eps", 0):.4g}. '
        f"Steps to misclassify: early-stopped PGD, {source['steps']} steps of {source['step_size']:.4g} "
        f"(never misclassified counts as K + 1). Targets: PGD, {target['steps']} steps of "
        f"{target['step_size']:.4g}; robust accuracy at its last step.</p>"
    )
    header, rows = analysis_table(analysis)
    parts.append(format_table(header, rows, "html", caption="per class"))
    header, rows = correlation_table(analysis)
    parts.append(format_table(header, rows, "html", caption="correlation with class-wise robust accuracy"))
    parts.append(
        _figure(
            plots.steps_to_flip_figure(analysis),
            "Mean and distribution of the attack steps needed to misclassify, per class.",
        )
    )
    parts.append(
        _figure(
            plots.target_figure(analysis),
            "Target classes of adversarial examples: overall, per source class, and KL from uniform at each step.",
        )
    )
    return "\n".join(parts)


def _figure(fig, caption: str) -> str:
    data = base64.b64encode(plots.figure_png(fig)).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


__all__ = ["render_report", "write_report", "analysis_html"]
