"""A plain name -> constructor mapping with helpful errors.

Each subpackage builds one `Registry` in its `__init__.py` by listing its members
explicitly (no import side effects). Looking up an unknown name raises
`UnknownNameError` listing every valid name.
"""

from __future__ import annotations

from typing import Generic, Iterator, Mapping, TypeVar

from robustfair.errors import UnknownNameError

T = TypeVar("T")


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
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(sorted(self._entries))}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)
