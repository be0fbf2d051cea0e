"""Reading finished run directories for tables, comparisons and reports.

A run directory (written by `robustfair.engine`) holds `config.yaml`, `meta.json`,
`metrics.jsonl` (one JSON record per epoch), `results.json` (class-wise test results of
the last model, the best-on-validation one under "best", extra attacks under
"extra_attacks", sanity checks under "sanity") and, after `robustfair analyze`,
`analysis.json`. Only results.json is required here. Reading never waits for a run
that is being trained; a note on stderr says when a writer holds it (`robustfair/run_lock.py`).
"""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustfair.errors import DataError
from robustfair.run_lock import being_written_note

WHICH = ("last", "best")


@dataclass
class RunRecord:
    """One run directory, loaded. `label` names it in tables (unique within a report)."""

    path: Path
    results: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    analysis: dict[str, Any] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name

    @property
    def name(self) -> str:
        """The run's configured name (results.json's run.name, else config.yaml's, else the folder)."""
        run = self.results.get("run") or {}
        return str(run.get("name") or self.config.get("name") or self.path.name)

    @property
    def info(self) -> dict[str, Any]:
        """results.json's `run` record (method, model, epochs, seed, eps, ...), possibly empty."""
        return dict(self.results.get("run") or {})

    @property
    def method(self) -> str:
        return str(self.info.get("method") or (self.config.get("method") or {}).get("name") or "?")

    @property
    def seed(self) -> Any:
        return self.info.get("seed", self.config.get("seed"))

    @property
    def classes(self) -> list[str]:
        return list(self.results.get("classes") or [])

    def result(self, which: str = "last", attack: str | None = None) -> dict[str, Any]:
        """The class-wise result (results.json schema) of the last or best model.

        attack None: the main evaluation attack; a name: the main result if it used that
        attack, else `extra_attacks[name]` (evaluated on the last model only).
        """
        if which not in WHICH:
            raise DataError(f"which: {which!r} is not allowed; valid values: {', '.join(WHICH)}")
        base = self.results
        if which == "best":
            if "best" not in self.results:
                raise DataError(
                    f"run {str(self.path)!r} has no best-on-validation result (it trained without "
                    "a validation split); use --which last"
                )
            base = self.results["best"]
        if attack is None or attack_name(base) == attack:
            return base
        extra = self.results.get("extra_attacks") or {}
        if which == "last" and attack in extra:
            return extra[attack]
        available = [attack_name(base)] + (sorted(extra) if which == "last" else [])
        raise DataError(
            f"run {str(self.path)!r} has no {which} result under attack {attack!r}; available: {', '.join(available)}"
        )

    def available_attacks(self) -> list[str]:
        return [attack_name(self.results)] + sorted(self.results.get("extra_attacks") or {})


def attack_name(result: Mapping[str, Any]) -> str:
    return str((result.get("attack") or {}).get("name", "?"))


def attack_label(result: Mapping[str, Any]) -> str:
    """e.g. 'pgd20 (eps 0.0314, 20 steps)', 'pgd40_r3 (eps 0.3, 40 steps, 3 restarts)',
    'autoattack (eps 0.3, standard)'."""
    attack = result.get("attack") or {}
    parts = []
    if attack.get("eps") is not None:
        parts.append(f"eps {attack['eps']:.4g}")
    if attack.get("steps"):
        parts.append(f"{attack['steps']} steps")
    if (attack.get("restarts") or 1) > 1:
        parts.append(f"{attack['restarts']} restarts")
    if attack.get("version"):
        parts.append(str(attack["version"]))
    return attack_name(result) + (f" ({', '.join(parts)})" if parts else "")


def load_run(path: str | Path) -> RunRecord:
    """Load a run directory; DataError if it has no readable results.json."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{str(path)!r} is not a run directory")
    results_path = path / "results.json"
    if not results_path.is_file():
        writing = being_written_note(path)
        hint = (
            f" ({writing}: training has not finished)"
            if writing
            else " (training has not finished)"
            if (path / "config.yaml").is_file()
            else ""
        )
        raise DataError(f"{str(path)!r} has no results.json{hint}")
    note_if_being_written(path)
    results = _read_json(results_path)
    if not isinstance(results, dict) or "summary" not in results or "per_class" not in results:
        raise DataError(f"{str(results_path)!r} is not a class-wise results file (no summary / per_class)")
    config: dict[str, Any] = {}
    if (path / "config.yaml").is_file():
        try:
            config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        except yaml.YAMLError as err:
            raise DataError(f"{str(path / 'config.yaml')!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    meta = _read_json(path / "meta.json") if (path / "meta.json").is_file() else {}
    analysis = _read_json(path / "analysis.json") if (path / "analysis.json").is_file() else None
    return RunRecord(
        path=path,
        results=results,
        config=config if isinstance(config, dict) else {},
        metrics=read_metrics(path / "metrics.jsonl"),
        meta=meta if isinstance(meta, dict) else {},
        analysis=analysis if isinstance(analysis, dict) else None,
    )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Epoch records of metrics.jsonl ([] if absent); a torn last line (a killed run) is skipped."""
    if not path.is_file():
        return []
    records = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise DataError(f"{str(path)!r} line {number} is not JSON") from None
    return records


def expand_run_paths(patterns: Sequence[str]) -> list[Path]:
    """Run directories named by paths or glob patterns, in the order given, without duplicates.

    A directory without results.json is skipped when it came from a glob, an error when
    named explicitly; a glob matching no run directory is an error.
    """
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = [Path(p) for p in sorted(glob.glob(pattern))]
            runs = [p for p in matches if (p / "results.json").is_file()]
            for unfinished in (p for p in matches if p.is_dir() and p not in runs):
                writing = being_written_note(unfinished)
                if writing:
                    _note(f"left out {unfinished}: {writing} (no results yet)")
            if not runs:
                raise DataError(f"{pattern!r} matches no finished run directory (none holds results.json)")
            found.extend(runs)
        else:
            found.append(Path(pattern))
    unique: list[Path] = []
    seen = set()
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _note(text: str) -> None:
    print(f"robustfair: note: {text}", file=sys.stderr, flush=True)


def note_if_being_written(path: Path) -> None:
    """A note on stderr when a writer holds the run: its files may change while they are read.
    Readers never wait for the writer (see robustfair/run_lock.py)."""
    writing = being_written_note(path)
    if writing:
        _note(f"{writing}; what is read now may change")


def load_runs(patterns: Sequence[str]) -> list[RunRecord]:
    """Load every run named by `patterns`; labels are made unique (run name, else name@folder)."""
    paths = expand_run_paths(patterns)
    if not paths:
        raise DataError("no run directories given")
    runs = [load_run(p) for p in paths]
    _unique_labels(runs)
    return runs


def _unique_labels(runs: Iterable[RunRecord]) -> None:
    runs = list(runs)
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        run.label = run.name if counts[run.name] == 1 else f"{run.name}@{run.path.name}"
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):  # same name and same folder name: fall back to full paths
        for run in runs:
            run.label = f"{run.name}@{run.path}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{str(path)!r} is not valid JSON: {err.msg} (line {err.lineno})") from None
