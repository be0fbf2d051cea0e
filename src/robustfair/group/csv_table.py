"""Reading a user's CSV file into header + string rows, with one-line errors for malformed files.

The first non-blank line is the header (column names, stripped; none may be empty or
repeated). Every later non-blank line must have as many fields as the header. Values are
stripped of surrounding whitespace. The file must be UTF-8 text (a byte-order mark is
allowed). A problem raises DataError naming the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from robustfair.errors import DataError


def read_csv_table(path: str | os.PathLike, delimiter: str = ",") -> tuple[tuple[str, ...], list[dict[str, str]]]:
    """(column names, rows as {column: stripped string}) of the CSV file `path`."""
    path = Path(path)
    shown = repr(str(path))
    if not path.is_file():
        raise DataError(f"{shown}: no such file" if not path.exists() else f"{shown}: not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            header: list[str] | None = None
            rows: list[dict[str, str]] = []
            for fields in reader:
                if not any(v.strip() for v in fields):
                    continue
                if header is None:
                    header = [v.strip() for v in fields]
                    _check_header(header, shown)
                    continue
                if len(fields) != len(header):
                    raise DataError(
                        f"{shown} line {reader.line_num}: expected {len(header)} fields like the header, "
                        f"got {len(fields)}"
                    )
                rows.append({name: value.strip() for name, value in zip(header, fields)})
    except UnicodeDecodeError as err:
        raise DataError(f"{shown}: not UTF-8 text (byte {err.start}); save the table as UTF-8 CSV") from None
    except csv.Error as err:
        raise DataError(f"{shown}: malformed CSV ({err})") from None
    except OSError as err:
        raise DataError(f"{shown}: cannot be read ({err.strerror or err})") from None
    if header is None:
        raise DataError(f"{shown}: empty file (no header line)")
    if not rows:
        raise DataError(f"{shown}: a header but no data rows")
    return tuple(header), rows


def _check_header(header: list[str], shown: str) -> None:
    if len(header) < 2:
        raise DataError(
            f"{shown}: the header has {len(header)} column; a table needs a label and features "
            f"(is the delimiter right? data.delimiter)"
        )
    empty = [i + 1 for i, name in enumerate(header) if not name]
    if empty:
        raise DataError(f"{shown}: column {empty[0]} of the header has no name")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"{shown}: column {name!r} appears twice in the header")
        seen.add(name)
