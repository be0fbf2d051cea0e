"""A plain name -> constructor mapping with helpful errors.

Each subpackage builds one `Registry` in its `__init__.py` by listing its members
explicitly (no import side effects). Looking up an unknown name raises
`UnknownNameError` with the closest valid names ("did you mean ..."); a short registry
lists all its names, a long one says where the full list is (`robustfair list KIND`), so
an error line never carries dozens of names.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from robustfair.errors import UnknownNameError

T = TypeVar("T")

LIST_ALL_UP_TO = 20  # registries up to this size are listed in full in an error line


def _tokens(text: str) -> list[str]:
    return [t for t in text.lower().replace("-", "_").replace(".", "_").split("_") if t]


def _similarity(query: str, candidate: str) -> float:
    """Spelling similarity, or the share of the query's words that start a word of the candidate
    ('cifar10_trade' is close to 'cifar10_resnet18_trades6'), whichever is higher."""
    spelling = difflib.SequenceMatcher(None, query.lower(), candidate.lower()).ratio()
    words = [w for w in _tokens(query) if len(w) >= 3]
    if not words:
        return spelling
    theirs = _tokens(candidate)
    cover = sum(any(t.startswith(w) for t in theirs) for w in words) / len(words)
    return max(spelling, 0.95 * cover)


def closest_names(name: object, valid: Sequence[str], limit: int = 3) -> list[str]:
    """Up to `limit` valid names close to `name`, closest first (empty when none is close)."""
    text = str(name).strip()
    if not text:
        return []

    def spelling(v: str) -> float:
        return difflib.SequenceMatcher(None, text.lower(), v.lower()).ratio()

    def prefix(v: str) -> int:
        return len(os.path.commonprefix([text.lower(), v.lower()]))

    scored = sorted(
        ((_similarity(text, v), prefix(v), spelling(v), v) for v in valid), key=lambda s: (-s[0], -s[1], -s[2], s[3])
    )
    return [s[3] for s in scored if s[0] >= 0.6][:limit]


def or_list(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def unknown_name_message(
    kind: str, name: object, valid: Sequence[str], *, plural: str | None = None, list_command: str | None = None
) -> str:
    """One line for an unknown `name` of `kind`: the closest valid names, then all of them
    (short lists) or where to find them (long lists: `list_command`)."""
    plural = plural or f"{kind}s"
    valid = sorted(valid)
    close = closest_names(name, valid)
    message = f"unknown {kind} {name!r}"
    if close:
        message += f"; did you mean {or_list(close)}?"
    if len(valid) <= LIST_ALL_UP_TO or list_command is None:
        return (
            message + f" valid {kind} names: {', '.join(valid)}"
            if close
            else message + f"; valid {kind} names: {', '.join(valid)}"
        )
    where = f"{len(valid)} {plural}: {list_command}"
    return message + (f" ({where})" if close else f"; none is close ({where})")


class Registry(Mapping[str, T], Generic[T]):
    """Read-only mapping from a registry name to a constructor.

    kind: what the entries are ("dataset", "model", ...), used in error messages.
    """

    def __init__(self, kind: str, entries: Mapping[str, T]):
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                unknown_name_message(self.kind, name, list(self._entries), list_command=f"robustfair list {self.kind}s")
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)
