"""Progress for every long phase (training epochs, evaluation, AutoAttack, sanity checks,
analysis, sweeps), drawn by one library, tqdm, on stderr.

Bars appear only when stderr is a terminal and progress is not switched off (`--quiet`
on the command line, `set_quiet(True)` in code), so logs, pipes and CI output stay clean.
Everything here is cheap when disabled: a disabled bar is a no-op object.

    with progress_bar(total=450, desc="eval pgd20", unit="img") as bar:
        for x, y in batches:
            ...
            bar.update(len(y))

`counting_calls(module, bar)` advances a bar once per forward pass of a module: phases
that run inside another library (AutoAttack's components) show live progress through it.
`Progress` is the training epoch's bar, which also prints a one-line summary per epoch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

from tqdm.auto import tqdm

_QUIET = False
T = TypeVar("T")


def set_quiet(quiet: bool) -> None:
    """Switch every progress bar of this process off (True) or back to automatic (False)."""
    global _QUIET
    _QUIET = bool(quiet)


@contextlib.contextmanager
def quiet_if(quiet: bool) -> Iterator[None]:
    """Inside the block, no bars when `quiet` (a command's --quiet); the previous setting after."""
    previous = _QUIET
    set_quiet(previous or quiet)
    try:
        yield
    finally:
        set_quiet(previous)


def progress_enabled(requested: bool | None = None, stream: TextIO | None = None) -> bool:
    """Whether to draw bars: `requested` when given (False always wins over the terminal
    test); automatic (None): stderr is a terminal and `set_quiet(True)` was not called."""
    if requested is False or _QUIET:
        return False
    stream = stream or sys.stderr
    return bool(requested) or _is_terminal(stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _width(stream: TextIO) -> dict[str, Any]:
    """tqdm's size options: follow the terminal, or 100 x 40 where it reports no size (a bare
    pseudo-terminal says 0 x 0, and tqdm would then draw nothing)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        size = os.terminal_size((0, 0))
    return {"dynamic_ncols": True} if size.columns > 0 and size.lines > 0 else {"ncols": 100, "nrows": 40}


class _NoBar:
    """The disabled bar: accepts every call tqdm's bar does that this package uses."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def set_description_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def progress_bar(
    total: int | None, desc: str, *, unit: str = "img", enabled: bool | None = None, leave: bool = True
) -> Iterator[Any]:
    """A tqdm bar on stderr (or a no-op when disabled, see `progress_enabled`).

    total: units of work (None when unknown: the bar counts and shows a rate); unit: what
    one unit is ("img", "run", "check", "pass"); leave: keep the finished bar on screen
    (False for bars nested inside another one).
    """
    if not progress_enabled(enabled):
        yield _NoBar()
        return
    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        leave=leave,
        mininterval=0.5,
        smoothing=0.1,
        **_width(sys.stderr),
    )
    try:
        yield bar
    finally:
        bar.close()


def progress_iter(items: Iterable[T], desc: str, *, unit: str = "item", enabled: bool | None = None) -> Iterator[T]:
    """Yield `items`, advancing a bar after each (also when the loop body `continue`s)."""
    items = list(items)
    with progress_bar(len(items), desc, unit=unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update(1)


@contextlib.contextmanager
def counting_calls(module: Any, bar: Any) -> Iterator[None]:
    """Advance `bar` by one for every forward pass of `module` inside the block."""
    if isinstance(bar, _NoBar):
        yield
        return

    def count(*_: Any) -> None:  # returns None: a forward hook's return value would replace the output
        bar.update(1)

    handle = module.register_forward_hook(count)
    try:
        yield
    finally:
        handle.remove()


def printing_around_bars(log: Callable[[str], Any]) -> Callable[[str], Any]:
    """`log` wrapped so its lines print above any live bar instead of through it."""

    def write(line: str) -> Any:
        with tqdm.external_write_mode(file=sys.stderr):
            return log(line)

    return write


class Progress:
    """A training epoch's bar (tqdm, steps with throughput) and its one-line summary.

    update(step, items): `step` batches done so far, `items` images in this update (also
    accumulated by adding to `.items` directly between updates); close() prints the
    summary line (when enabled, terminal or not) and returns images per second.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True, stream: TextIO | None = None):
        self.total = total
        self.desc = desc
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.items = 0
        self._bar = None
        if enabled and not _QUIET and _is_terminal(self.stream):
            self._bar = tqdm(
                total=total,
                desc=desc,
                unit="step",
                file=self.stream,
                leave=False,
                mininterval=0.5,
                **_width(self.stream),
            )

    def update(self, step: int, items: int, postfix: str = "") -> None:
        self.items += items
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix_str(f"{self.items / elapsed:.1f} img/s {postfix}".strip(), refresh=False)

    def close(self, postfix: str = "") -> float:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.items / elapsed
        if self._bar is not None:
            self._bar.close()
        if self.enabled and not _QUIET:
            self.stream.write(
                f"{self.desc} {self.total}/{self.total} steps, {rate:.1f} img/s, {elapsed:.1f}s {postfix}".rstrip()
                + "\n"
            )
            self.stream.flush()
        return rate


__all__ = [
    "progress_bar",
    "progress_iter",
    "progress_enabled",
    "set_quiet",
    "quiet_if",
    "counting_calls",
    "printing_around_bars",
    "Progress",
]
