"""Typed, validated configuration built from frozen dataclasses.

A config section is a frozen dataclass whose fields are declared with `param(...)`
(default, allowed range or choices, one-line help). `build(cls, mapping, path)` checks
every key and value and raises `ConfigError` with one line naming the field, the value
and what is allowed. `apply_overrides` applies `a.b.c=value` strings (values parsed as
YAML scalars, so `lr=0.1`, `amp=true`, `milestones=[75,90]` all work).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from robustfair.errors import ConfigError
from robustfair.registry import closest_names, or_list

_MISSING = dataclasses.MISSING
_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_OVERRIDE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]*)*=")


def is_override(token: str) -> bool:
    """Whether a command-line word is meant as a `dotted.key=value` override.

    The key must look like a dotted name, so a path holding '=' (`runs/lr=0.1`) is not one.
    """
    return bool(_OVERRIDE_KEY.match(token))


def param(
    default: Any = _MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Sequence[Any] | None = None,
    help: str = "",
    default_factory: Any = _MISSING,
) -> Any:
    """Declare a config field with validation metadata.

    low/high: inclusive bounds (exclusive with low_open/high_open) for numbers, and for
    every element of a list of numbers. choices: the allowed values.
    """
    meta = {
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "choices": None if choices is None else tuple(choices),
        "help": help,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _range_text(meta: Mapping[str, Any]) -> str:
    low, high = meta.get("low"), meta.get("high")
    lo = "" if low is None else (f"> {low}" if meta.get("low_open") else f">= {low}")
    hi = "" if high is None else (f"< {high}" if meta.get("high_open") else f"<= {high}")
    return " and ".join(p for p in (lo, hi) if p)


def _check_number(value: float, meta: Mapping[str, Any], where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    low, high = meta.get("low"), meta.get("high")
    bad = (low is not None and (value <= low if meta.get("low_open") else value < low)) or (
        high is not None and (value >= high if meta.get("high_open") else value > high)
    )
    if bad:
        raise ConfigError(f"{where}: {value!r} is out of range; allowed: {_range_text(meta)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, meta: Mapping[str, Any], where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: null is not allowed; expected {_type_name(tp)}")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, meta, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(
            errors[-1]
            if len(errors) == 1
            else f"{where}: {value!r} is not a valid {' or '.join(_type_name(a) for a in args if a is not type(None))}"
        )
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, where)
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        elem = args[0] if args else Any
        items = [_coerce(v, elem, meta, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
        _check_number(value, meta, where)
        _check_choice(value, meta, where)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        _check_number(value, meta, where)
        _check_choice(value, meta, where)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        _check_choice(value, meta, where)
        return value
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")


def _check_choice(value: Any, meta: Mapping[str, Any], where: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not allowed; valid values: {', '.join(map(str, choices))}")


def build(cls: type, data: Mapping[str, Any] | None, path: str = "") -> Any:
    """Build a frozen dataclass `cls` from a mapping, validating every key and value."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        shown = key if isinstance(key, str) and key.isidentifier() else repr(key)
        where = f"{path}.{shown}" if path else shown
        close = closest_names(key, list(fields)) if isinstance(key, str) else []
        hint = f" did you mean {or_list(close)}?" if close else ""
        raise ConfigError(
            f"{where}: unknown field;{hint} valid fields{' of ' + path if path else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f.metadata, where)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(f"{where}: required field is missing")
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path or cls.__name__}: {err}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """A plain, YAML/JSON-serialisable copy of a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], value parsed as a YAML scalar/list)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value (for example train.epochs=5)")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not key.strip() or any(not k for k in keys):
        raise ConfigError(f"override {text!r}: empty key; expected key=value with a dotted key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 as a string; people mean the number
    return keys, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a deep copy of `raw` with each `a.b=value` override set (validated later by build)."""
    out = _deep_copy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(keys[: i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """(field, type, default, help with range) rows for documentation and `robustfair list`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = (
            f.default
            if f.default is not _MISSING
            else (f.default_factory() if f.default_factory is not _MISSING else "required")
        )
        extra = _range_text(f.metadata)
        if f.metadata.get("choices"):
            extra = "one of " + ", ".join(map(str, f.metadata["choices"]))
        text = f.metadata.get("help", "") + (f" ({extra})" if extra else "")
        rows.append((f.name, _type_name(hints[f.name]), default, text))
    return rows
