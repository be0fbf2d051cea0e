"""CSV tables built by the group tests: a German-credit-like table with a numeric sensitive
column (age, binarised by a threshold) and a categorical one (sex)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

COLUMNS = ("id", "age", "sex", "duration", "amount", "purpose", "housing", "foreign", "credit")


def credit_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Seeded rows; credit is "good" more often for older applicants, men, short loans."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        age = int(rng.integers(19, 70))
        sex = "male" if rng.random() < 0.6 else "female"
        duration = int(rng.integers(4, 60))
        amount = round(float(rng.gamma(2.0, 1500.0)), 2)
        purpose = str(rng.choice(["car", "furniture", "education", "business"]))
        housing = str(rng.choice(["own", "rent", "free"], p=[0.6, 0.3, 0.1]))
        foreign = "yes" if rng.random() < 0.2 else "no"
        score = (
            0.04 * (age - 35)
            + 0.6 * (sex == "male")
            - 0.03 * (duration - 20)
            - 0.0001 * amount
            + 0.4 * (housing == "own")
            + rng.normal(0.0, 0.8)
        )
        rows.append(
            {
                "id": str(1000 + i),
                "age": str(age),
                "sex": sex,
                "duration": str(duration),
                "amount": f"{amount:.2f}",
                "purpose": purpose,
                "housing": housing,
                "foreign": foreign,
                "credit": "good" if score > 0 else "bad",
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], columns=COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def credit_csv(path: Path, n: int = 400, seed: int = 0) -> Path:
    return write_csv(path, credit_rows(n, seed))
