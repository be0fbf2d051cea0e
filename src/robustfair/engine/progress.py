"""A one-line progress bar with throughput, written to stderr; silent in quiet mode."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, desc: str, *, enabled: bool = True, stream: TextIO | None = None):
        self.total = total
        self.desc = desc
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.items = 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, step: int, items: int, postfix: str = "") -> None:
        """step: batches done so far; items: images processed in this update."""
        self.items += items
        if not self.enabled or not self.tty:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{self.desc} [{bar}] {step}/{self.total} {self.items / elapsed:7.1f} img/s {postfix}")
        self.stream.flush()

    def close(self, postfix: str = "") -> float:
        """Finish the line; returns the throughput in items per second."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.items / elapsed
        if self.enabled:
            end = "\r" if self.tty else ""
            self.stream.write(f"{end}{self.desc} {self.total}/{self.total} steps, {rate:.1f} img/s, "
                              f"{elapsed:.1f}s {postfix}\n")
            self.stream.flush()
        return rate
