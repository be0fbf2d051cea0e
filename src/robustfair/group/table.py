"""From raw string rows to `GroupData`: label, sensitive attribute, column roles, split, encoding.

Every dataset goes through `build_group_data(raw, config)`: Adult and COMPAS (their readers
fill a `RawTable` with the documented preprocessing and column roles) and any user CSV
table (`robustfair.group.data.read_raw_table`). Steps, with `config` a `DataConfig`:

1. rows with a missing value (`config.missing`) in a used column are dropped (counted);
2. y = 1 where the label column equals `positive`; the label needs two values;
3. s = 1 where the sensitive column equals `privileged`, or, for a numeric column, where
   its value is >= `threshold`; both groups must occur;
4. without a test part: a seeded split stratified by (y, s) (`split_seed`, `test_fraction`);
5. feature columns: all but the label, the sensitive column (unless `include_sensitive`)
   and `drop`. Roles: named (`continuous`, `categorical`), else detected on the training
   rows: a column whose values are all finite numbers is continuous, unless it has at most
   two distinct values (an indicator, one-hot encoded). Whole-number columns: named
   (`integer`), else the continuous columns whose training values are all whole;
6. the `TableEncoder` is fit on the training rows (or given, when a run is re-evaluated)
   and encodes both parts; each part's rows are fingerprinted (sha256).

Errors are one line: DataError for the data (a missing column, a one-valued label, a
one-group sensitive column, a value that is not a number), ConfigError for settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from robustfair.errors import ConfigError, DataError
from robustfair.group.config import DataConfig
from robustfair.group.encoding import TableEncoder, parse_number
from robustfair.group.tabular import GroupData, TabularSplit, stratified_split

Rows = list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class RawTable:
    """A table as read: string rows of a training part and, when the data has one, a test part.

    label / positive: the label column and its value meaning y = 1 (None: from the config).
    continuous / categorical / integer: column roles fixed by the dataset (None: from the
    config, else detected). privileged: default s = 1 value per sensitive column.
    default_sensitive: the sensitive column when the config names none.
    """

    name: str
    columns: tuple[str, ...]
    train_rows: Rows
    test_rows: Rows | None = None
    source: str = ""
    label: str | None = None
    positive: str | None = None
    label_names: tuple[str, str] | None = None
    continuous: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    integer: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    privileged: Mapping[str, str] = dataclasses.field(default_factory=dict)
    default_sensitive: str | None = None
    notes: tuple[str, ...] = ()


def build_group_data(raw: RawTable, config: DataConfig, encoder: TableEncoder | None = None) -> GroupData:
    """GroupData of `raw` as `config` describes it (see the module docstring)."""
    for field, fixed in (("label", raw.label), ("positive", raw.positive)):
        given = getattr(config, field)
        if fixed is not None and given is not None and given != fixed:
            raise ConfigError(f"data.{field}: {raw.name}'s is {fixed!r} (fixed by its preprocessing), not {given!r}")
    label = raw.label or config.label
    if label is None:
        raise ConfigError(f"data.label: name the label column of {raw.source or raw.name} (--label COL)")
    sensitive = config.sensitive or raw.default_sensitive
    if sensitive is None:
        raise ConfigError(f"data.sensitive: name the sensitive column of {raw.source or raw.name} (--sensitive COL)")
    _require_columns(raw, [label], "label column")
    _require_columns(raw, [sensitive], "sensitive column")
    if sensitive == label:
        raise ConfigError(f"data.sensitive: {sensitive!r} is the label column; choose another column")
    roles = _declared_roles(raw, config)
    features = [
        c for c in raw.columns if c not in {label, *roles["drop"]} and (c != sensitive or config.include_sensitive)
    ]
    used = [label, sensitive] + [c for c in features if c != sensitive]
    missing = set(config.missing)
    train_rows, dropped_train = _complete_rows(raw.train_rows, used, missing)
    test_rows, dropped_test = (None, 0) if raw.test_rows is None else _complete_rows(raw.test_rows, used, missing)
    if not train_rows:
        raise DataError(f"{raw.source or raw.name}: no row without a missing value in the used columns")

    all_rows = train_rows + (test_rows or [])
    positive = _positive_value(raw, config, label, all_rows)
    privileged, threshold, group_names = _binarisation(raw, config, sensitive, all_rows)
    y_train, s_train = _labels(train_rows, label, positive), _groups(train_rows, sensitive, privileged, threshold)
    if test_rows is None:
        train_idx, test_idx = stratified_split(y_train, s_train, config.test_fraction, config.split_seed)
        test_rows = [train_rows[i] for i in test_idx]
        train_rows = [train_rows[i] for i in train_idx]
        y_train, s_train = y_train[train_idx], s_train[train_idx]
        split_note = (
            f"seeded split stratified by (label, group): {len(train_rows)} train / {len(test_rows)} test "
            f"(split_seed={config.split_seed}, test_fraction={config.test_fraction})"
        )
    else:
        split_note = f"given test part: {len(train_rows)} train / {len(test_rows)} test"
    if not test_rows:
        raise DataError(f"{raw.source or raw.name}: the test part is empty")
    y_test, s_test = _labels(test_rows, label, positive), _groups(test_rows, sensitive, privileged, threshold)
    for part, s in (("training", s_train), ("test", s_test)):
        for g in (0, 1):
            if not (s == g).any():
                raise DataError(
                    f"sensitive column {sensitive!r}: the {part} part has no row of group "
                    f"{group_names[g]!r} (s={g}); both groups are needed"
                )

    continuous, categorical, integer = _feature_roles(features, roles, train_rows)
    protected = sensitive if config.include_sensitive else None
    if encoder is None:
        encoder = TableEncoder.fit(
            train_rows,
            continuous,
            categorical,
            integer=integer,
            bounds=config.bounds,
            protected=protected,
            where="the training part",
        )
    x_train = encoder.encode(train_rows, "the training part")
    x_test = encoder.encode(test_rows, "the test part")
    notes = list(raw.notes)
    if dropped_train or dropped_test:
        notes.append(f"dropped rows with a missing value in a used column: {dropped_train} train, {dropped_test} test")
    notes.append(split_note)
    notes.extend(_bounds_notes(encoder, config, train_rows))
    binarised = {"privileged": privileged} if threshold is None else {"threshold": threshold}
    info = {
        "label": label,
        "positive": positive,
        **binarised,
        "columns": {"continuous": list(continuous), "categorical": list(categorical), "integer": list(integer)},
    }
    fingerprint = {"train": _fingerprint(train_rows, used), "test": _fingerprint(test_rows, used)}
    label_names = raw.label_names or (f"not {positive}", positive)
    return GroupData(
        raw.name,
        sensitive,
        TabularSplit(x_train, torch.from_numpy(y_train), torch.from_numpy(s_train)),
        TabularSplit(x_test, torch.from_numpy(y_test), torch.from_numpy(s_test)),
        encoder.layout(),
        group_names,
        label_names,
        encoder.standardisation,
        tuple(notes),
        encoder,
        fingerprint,
        info,
    )


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3)
    return f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""


def _require_columns(raw: RawTable, names: Sequence[str], what: str) -> None:
    for name in names:
        if name not in raw.columns:
            shown = ", ".join(raw.columns[:40]) + (", ..." if len(raw.columns) > 40 else "")
            raise DataError(
                f"{what} {name!r} is not in {raw.source or raw.name}; {_suggest(name, raw.columns)}columns: {shown}"
            )


def _declared_roles(raw: RawTable, config: DataConfig) -> dict[str, tuple[str, ...] | None]:
    """{"continuous", "categorical", "integer": named columns or None (detect), "drop": columns}."""
    declared = {
        "continuous": config.continuous,
        "categorical": config.categorical,
        "integer": config.integer,
        "drop": config.drop,
    }
    if raw.continuous is not None:  # a built-in dataset: its roles are part of its documented preprocessing
        named = [f"data.{k}" for k, v in declared.items() if v]
        if named:
            raise ConfigError(
                f"{named[0]}: the columns of {raw.name} are fixed by its preprocessing; column roles are for CSV tables"
            )
        declared = {
            "continuous": raw.continuous,
            "categorical": raw.categorical,
            "integer": raw.integer,
            "drop": raw.drop,
        }
    for key, names in declared.items():
        _require_columns(raw, names or (), f"data.{key} column")
    both = set(declared["continuous"] or ()) & set(declared["categorical"] or ())
    if both:
        raise ConfigError(f"data.continuous and data.categorical both name {sorted(both)[0]!r}")
    for name in config.bounds:
        _require_columns(raw, [name], "data.bounds column")
    roles = {k: None if v is None else tuple(v) for k, v in declared.items()}
    roles["drop"] = roles["drop"] or ()
    return roles


def _complete_rows(rows: Rows, used: Sequence[str], missing: set[str]) -> tuple[Rows, int]:
    kept = [row for row in rows if not any(row[c] in missing for c in used)]
    return kept, len(rows) - len(kept)


def _positive_value(raw: RawTable, config: DataConfig, label: str, rows: Rows) -> str:
    values = sorted({row[label] for row in rows})
    if len(values) < 2:
        raise DataError(
            f"label column {label!r} has one value ({values[0]!r}) in {raw.source or raw.name}; a classifier needs two"
        )
    positive = raw.positive or config.positive
    if positive is None:
        if set(values) == {"0", "1"}:
            return "1"
        raise ConfigError(
            f"data.positive: say which value of label column {label!r} means y = 1 (--positive VALUE); "
            f"its values: {', '.join(repr(v) for v in values[:20])}"
        )
    if positive not in values:
        raise DataError(
            f"data.positive {positive!r} does not occur in label column {label!r}; "
            f"{_suggest(positive, values)}its values: {', '.join(repr(v) for v in values[:20])}"
        )
    return positive


def _binarisation(
    raw: RawTable, config: DataConfig, sensitive: str, rows: Rows
) -> tuple[str | None, float | None, tuple[str, str]]:
    """(privileged value or None, threshold or None, group names (s=0, s=1))."""
    if config.threshold is not None:
        bad = next((row[sensitive] for row in rows if parse_number(row[sensitive]) is None), None)
        if bad is not None:
            raise DataError(f"data.threshold needs a numeric sensitive column; {sensitive!r} holds {bad!r}")
        t = config.threshold
        return None, t, (f"{sensitive} < {t:g}", f"{sensitive} >= {t:g}")
    values = sorted({row[sensitive] for row in rows})
    privileged = config.privileged or raw.privileged.get(sensitive)
    if privileged is None:
        numeric = all(parse_number(v) is not None for v in values)
        how = (
            "data.threshold=NUMBER (--threshold)"
            if numeric and len(values) > 2
            else "data.privileged=VALUE (--privileged)"
        )
        raise ConfigError(
            f"data.sensitive {sensitive!r}: say which group is s = 1 with {how}; "
            f"its values: {', '.join(repr(v) for v in values[:20])}"
        )
    if privileged not in values:
        raise DataError(
            f"data.privileged {privileged!r} does not occur in sensitive column {sensitive!r}; "
            f"{_suggest(privileged, values)}its values: {', '.join(repr(v) for v in values[:20])}"
        )
    if len(values) < 2:
        raise DataError(f"sensitive column {sensitive!r} has one value ({values[0]!r}); both groups are needed")
    others = [v for v in values if v != privileged]
    return privileged, None, (others[0] if len(others) == 1 else f"non-{privileged}", privileged)


def _labels(rows: Rows, label: str, positive: str) -> np.ndarray:
    return np.array([row[label] == positive for row in rows], dtype=np.int64)


def _groups(rows: Rows, sensitive: str, privileged: str | None, threshold: float | None) -> np.ndarray:
    if threshold is None:
        return np.array([row[sensitive] == privileged for row in rows], dtype=np.int64)
    values = np.array([parse_number(row[sensitive]) for row in rows], dtype=np.float64)
    if np.isnan(values).any():  # a test row with a non-number
        raise DataError(f"data.threshold needs a numeric sensitive column; {sensitive!r} holds a non-number")
    return (values >= threshold).astype(np.int64)


def _feature_roles(
    features: Sequence[str], roles: Mapping[str, tuple[str, ...] | None], train_rows: Rows
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    named_cont, named_cat = set(roles["continuous"] or ()), set(roles["categorical"] or ())
    fixed = (
        roles["continuous"] is not None
        and roles["categorical"] is not None
        and not (set(features) - named_cont - named_cat)
    )
    continuous, categorical = [], []
    for c in features:
        if c in named_cont:
            continuous.append(c)
        elif c in named_cat or fixed:
            categorical.append(c)
        else:
            values = {row[c] for row in train_rows}
            numeric = all(parse_number(v) is not None for v in values)
            (continuous if numeric and len(values) > 2 else categorical).append(c)
    if not continuous and not categorical:
        raise DataError("no feature columns left (every column is the label, the sensitive one or dropped)")
    if roles["integer"] is not None:
        wrong = [c for c in roles["integer"] if c in features and c not in continuous]
        if wrong:
            raise ConfigError(f"data.integer: {wrong[0]!r} is not a continuous feature column")
        integer = tuple(c for c in roles["integer"] if c in continuous)  # the sensitive column may be left out
    else:
        integer = tuple(
            c for c in continuous if all(float(parse_number(row[c]) or 0.0).is_integer() for row in train_rows)
        )
    return tuple(continuous), tuple(categorical), integer


def _bounds_notes(encoder: TableEncoder, config: DataConfig, train_rows: Rows) -> list[str]:
    notes = []
    for column in encoder.continuous:
        if column.name in config.bounds:
            values = [parse_number(row[column.name]) for row in train_rows]
            if min(values) < column.low or max(values) > column.high:
                notes.append(
                    f"data.bounds.{column.name} [{column.low:g}, {column.high:g}] excludes training values "
                    f"(range [{min(values):g}, {max(values):g}]); attacks never push a value further out"
                )
    return notes


def _fingerprint(rows: Rows, columns: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(list(columns)).encode())
    for row in rows:
        digest.update(json.dumps([row[c] for c in columns]).encode())
    return digest.hexdigest()
