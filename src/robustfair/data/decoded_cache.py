"""A cache of decoded arrays, written atomically and keyed by the source's checksum.

Decoding tens of thousands of JPEG or PNG files takes seconds to minutes; the decoded
uint8 arrays are saved once as an uncompressed `.npz` (read back with
`allow_pickle=False`). The file name carries a digest of the source, so a changed source
never reads a stale cache, and the file is written to a temporary name and renamed, so
concurrent processes (one per GPU) never read a half-written cache.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robustfair.data.download import publish_mode


def load_or_build(path: Path, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays stored at `path`, or `build()`'s arrays (then saved to `path` when possible)."""
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # an unreadable cache is rebuilt below and replaced
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, **arrays)
            publish_mode(tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"could not write the decoded cache {path}: {err}", stacklevel=2)
    return arrays
