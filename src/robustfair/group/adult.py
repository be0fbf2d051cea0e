"""UCI Adult (census income), read from the official `adult.data` / `adult.test`.

Preprocessing (documented in docs/RESULTS.md too):
- official split: `adult.data` (train) and `adult.test` (test); the test file's comment
  line (`|1x3 Cross validator`) is skipped and its labels' trailing period removed;
- rows with a missing value (` ?`) are dropped: 32,561 -> 30,162 train and
  16,281 -> 15,060 test rows;
- label y = 1 for income `>50K`;
- continuous (standardised): age, education_num, capital_gain, capital_loss,
  hours_per_week; `fnlwgt` is dropped (a census sampling weight, not a person's
  attribute) and so is `education` (a one-to-one copy of `education_num`);
- categorical (one-hot): workclass, marital_status, occupation, relationship, race, sex,
  native_country, minus the sensitive attribute unless `include_sensitive`;
- every continuous column holds whole numbers (attacks round them) with the training
  range as its domain;
- sensitive attribute: `sex` (default; s = 1 Male, 0 Female) or `race` (s = 1 White, 0
  other), or any other column with `data.privileged` / `data.threshold`; it is not among
  the features unless `include_sensitive`. `relationship` (Husband/Wife) still carries
  sex; that is the data, not a leak we add.
"""

from __future__ import annotations

from pathlib import Path

from robustfair.errors import DataError
from robustfair.group.files import require_file
from robustfair.group.table import RawTable

COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
)
CONTINUOUS = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")
CATEGORICAL = ("workclass", "marital_status", "occupation", "relationship", "race", "sex", "native_country")
DROPPED = ("fnlwgt", "education")
PRIVILEGED = {"sex": "Male", "race": "White"}


def read_adult_file(path: Path) -> tuple[list[dict[str, str]], int]:
    """Rows of an Adult file as {column: stripped string}, and the number dropped for ' ?'.

    Skips blank lines and the `|...` comment line; strips the period that ends each
    label in `adult.test`. Raises DataError on a row without 15 fields.
    """
    rows: list[dict[str, str]] = []
    dropped = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("|"):
                continue
            fields = [v.strip() for v in line.split(",")]
            if len(fields) != len(COLUMNS):
                raise DataError(f"{path}:{number}: expected {len(COLUMNS)} comma-separated fields, got {len(fields)}")
            if "?" in fields:
                dropped += 1
                continue
            fields[-1] = fields[-1].rstrip(".")
            rows.append(dict(zip(COLUMNS, fields)))
    return rows, dropped


def read_adult(root: Path, *, verify_checksums: bool = True) -> RawTable:
    """Adult's official train and test files as a RawTable with the preprocessing above."""
    train_rows, train_dropped = read_adult_file(require_file(root, "adult.data", verify_checksums))
    test_rows, test_dropped = read_adult_file(require_file(root, "adult.test", verify_checksums))
    return RawTable(
        "adult",
        COLUMNS,
        train_rows,
        test_rows,
        source=f"adult ({root})",
        label="income",
        positive=">50K",
        label_names=("<=50K", ">50K"),
        continuous=CONTINUOUS,
        categorical=CATEGORICAL,
        integer=CONTINUOUS,
        drop=DROPPED,
        privileged=PRIVILEGED,
        default_sensitive="sex",
        notes=(f"dropped rows with missing values: {train_dropped} train, {test_dropped} test",),
    )
