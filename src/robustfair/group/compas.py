"""ProPublica COMPAS (`compas-scores-two-years.csv`) with ProPublica's usual filtering.

Preprocessing (documented in docs/RESULTS.md too):
- keep rows with `days_b_screening_arrest` in [-30, 30], `is_recid != -1`,
  `c_charge_degree != 'O'` and `score_text != 'N/A'` (ProPublica's analysis):
  7,214 -> 6,172 rows;
- label y = `two_year_recid` (1 = reoffended within two years);
- continuous (standardised): age, priors_count, juv_fel_count, juv_misd_count,
  juv_other_count, length_of_stay = log1p(max(0, c_jail_out - c_jail_in in days)) (the
  log because stays are heavy-tailed; a few stays are slightly negative in the file);
- categorical (one-hot): c_charge_degree (F/M), sex, race, minus the sensitive
  attribute unless `include_sensitive`;
- left out: COMPAS's own outputs (decile_score, score_text, v_*), every outcome or
  post-screening column (is_recid, is_violent_recid, r_*, vr_*, event, start, end,
  two_year_recid as a feature), identifiers and dates, and age_cat (a binning of age,
  which would disagree with an attacked age);
- the counts and age hold whole numbers (attacks round them); every continuous column
  has the training range as its domain;
- sensitive attribute: `race` (default; s = 1 Caucasian, 0 every other race) or `sex`
  (s = 1 Male, 0 Female), or any other column with `data.privileged` / `data.threshold`;
- split: 70/30, seeded (split_seed), stratified by (label, group); the split does not
  change with the training seed.
"""

from __future__ import annotations

import csv
import datetime
import math
from pathlib import Path

from robustfair.errors import DataError
from robustfair.group.files import require_file
from robustfair.group.table import RawTable

CONTINUOUS = ("age", "priors_count", "juv_fel_count", "juv_misd_count", "juv_other_count", "length_of_stay")
CATEGORICAL = ("c_charge_degree", "sex", "race")
PRIVILEGED = {"race": "Caucasian", "sex": "Male"}
_NEEDED = (
    "days_b_screening_arrest",
    "is_recid",
    "c_charge_degree",
    "score_text",
    "c_jail_in",
    "c_jail_out",
    "two_year_recid",
    "age",
    "priors_count",
    "juv_fel_count",
    "juv_misd_count",
    "juv_other_count",
    "sex",
    "race",
)
DROPPED = ("days_b_screening_arrest", "is_recid", "score_text", "c_jail_in", "c_jail_out")


def read_compas_file(path: Path) -> list[dict[str, str]]:
    """Rows of the ProPublica file after its usual filtering, with `length_of_stay` added.

    The file repeats two column names (decile_score, priors_count) with equal values;
    the first occurrence is used. Raises DataError when a needed column is missing.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file")
        index: dict[str, int] = {}
        for i, name in enumerate(header):
            index.setdefault(name, i)
        missing = [c for c in _NEEDED if c not in index]
        if missing:
            raise DataError(f"{path}: missing columns {', '.join(missing)}")
        rows = []
        for line in reader:
            row = {c: line[index[c]].strip() for c in _NEEDED}
            if not _kept(row):
                continue
            row["length_of_stay"] = repr(_log_stay_days(row["c_jail_in"], row["c_jail_out"], path))
            rows.append(row)
    return rows


def _kept(row: dict[str, str]) -> bool:
    days = row["days_b_screening_arrest"]
    if days == "":
        return False  # missing counts as outside [-30, 30], as in ProPublica's R filter
    return (
        -30 <= float(days) <= 30
        and row["is_recid"] != "-1"
        and row["c_charge_degree"] != "O"
        and row["score_text"] != "N/A"
    )


def _log_stay_days(jail_in: str, jail_out: str, path: Path) -> float:
    try:
        stay = datetime.datetime.fromisoformat(jail_out) - datetime.datetime.fromisoformat(jail_in)
    except ValueError:
        raise DataError(f"{path}: unreadable jail dates {jail_in!r} / {jail_out!r} in a kept row") from None
    return math.log1p(max(0.0, stay.total_seconds() / 86400.0))


def read_compas(root: Path, *, verify_checksums: bool = True) -> RawTable:
    """COMPAS after ProPublica's filtering as a RawTable (split later, seeded)."""
    rows = read_compas_file(require_file(root, "compas-scores-two-years.csv", verify_checksums))
    return RawTable(
        "compas",
        _NEEDED + ("length_of_stay",),
        rows,
        None,
        source=f"compas ({root})",
        label="two_year_recid",
        positive="1",
        label_names=("no recidivism", "recidivism"),
        continuous=CONTINUOUS,
        categorical=CATEGORICAL,
        integer=CONTINUOUS[:5],
        drop=DROPPED,
        privileged=PRIVILEGED,
        default_sensitive="race",
        notes=(f"ProPublica filtering kept {len(rows)} rows",),
    )
