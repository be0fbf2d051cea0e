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
- sensitive attribute: `sex` (s = 1 Male, 0 Female) or `race` (s = 1 White, 0 other).
  `relationship` (Husband/Wife) still carries sex; that is the data, not a leak we add.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustfair.errors import ConfigError, DataError
from robustfair.group.files import require_file
from robustfair.group.tabular import GroupData, TabularSplit, encode_tables

COLUMNS = ("age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
           "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
           "hours_per_week", "native_country", "income")
CONTINUOUS = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")
CATEGORICAL = ("workclass", "marital_status", "occupation", "relationship", "race", "sex", "native_country")
SENSITIVE = {"sex": ("Male", ("Female", "Male")), "race": ("White", ("non-White", "White"))}


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


def load_adult(root: Path, *, sensitive: str = "sex", include_sensitive: bool = False,
               split_seed: int = 0, test_fraction: float = 0.3, verify_checksums: bool = True) -> GroupData:
    """Adult with its official train/test split (split_seed and test_fraction are unused)."""
    if sensitive not in SENSITIVE:
        raise ConfigError(f"data.sensitive: {sensitive!r} is not available for adult; valid: {', '.join(SENSITIVE)}")
    train_rows, train_dropped = read_adult_file(require_file(root, "adult.data", verify_checksums))
    test_rows, test_dropped = read_adult_file(require_file(root, "adult.test", verify_checksums))
    categorical = [c for c in CATEGORICAL if include_sensitive or c != sensitive]
    x_train, x_test, layout, stats = encode_tables(
        train_rows, test_rows, CONTINUOUS, categorical, protected_block=sensitive if include_sensitive else None)
    positive, group_names = SENSITIVE[sensitive]

    def split(rows: list[dict[str, str]], x: torch.Tensor) -> TabularSplit:
        y = np.array([row["income"] == ">50K" for row in rows], dtype=np.int64)
        s = np.array([row[sensitive] == positive for row in rows], dtype=np.int64)
        return TabularSplit(x, torch.from_numpy(y), torch.from_numpy(s))

    notes = (f"dropped rows with missing values: {train_dropped} train, {test_dropped} test",)
    return GroupData("adult", sensitive, split(train_rows, x_train), split(test_rows, x_test), layout,
                     group_names, ("<=50K", ">50K"), stats, notes)
