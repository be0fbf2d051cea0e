"""Finding dataset files on disk, and fetching them when asked to.

Search order for a reader's files:
- `root` when given (and only there);
- otherwise `$ROBUSTFAIR_DATA` (a directory of dataset files, e.g. `../shared/data`),
  then the cache directory `$ROBUSTFAIR_CACHE/<dataset>` (default `~/.cache/robustfair`).
`download=True` fetches a missing file, checksummed, into `root` or the cache directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from robustfair.data.download import download_file
from robustfair.data.sources import RemoteFile
from robustfair.errors import DataError

DATA_ENV = "ROBUSTFAIR_DATA"
CACHE_ENV = "ROBUSTFAIR_CACHE"


def cache_dir() -> Path:
    """`$ROBUSTFAIR_CACHE`, or `~/.cache/robustfair`."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "robustfair"


def search_dirs(root: str | os.PathLike | None, dataset: str) -> list[Path]:
    """Directories searched for `dataset`'s files, in order."""
    if root is not None:
        return [Path(root).expanduser()]
    dirs = []
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]).expanduser())
    dirs.append(cache_dir() / dataset)
    return dirs


def find_file(names: Sequence[str], dirs: Sequence[Path]) -> Path | None:
    """The first existing file named one of `names` in one of `dirs` (dirs outer loop)."""
    for d in dirs:
        for name in names:
            candidate = d / name
            if candidate.is_file():
                return candidate
    return None


def writable_dir_beside(path: Path, dataset: str) -> Path:
    """`path`'s directory if we may write there, else the cache directory for `dataset`."""
    parent = path.parent
    if os.access(parent, os.W_OK):
        return parent
    target = cache_dir() / dataset
    target.mkdir(parents=True, exist_ok=True)
    return target


def locate_file(
    remote: RemoteFile, *, dataset: str, root: str | os.PathLike | None, download: bool, aliases: Sequence[str] = ()
) -> Path:
    """Path of `remote.filename` (or an alias) for `dataset`, downloading it if allowed.

    Raises DataError naming where it looked and how to obtain the file; refuses to download
    a file without a public URL or a known checksum.
    """
    dirs = search_dirs(root, dataset)
    names = (remote.filename, *aliases)
    found = find_file(names, dirs)
    if found is not None:
        return found
    where = ", ".join(str(d) for d in dirs)
    if not download:
        hint = (
            f"download=True fetches it from {remote.urls[0]} (md5 {remote.md5})"
            if remote.urls
            else "it has no public download URL"
        )
        raise DataError(
            f"{dataset}: {remote.filename} not found in {where}; pass root=<directory holding it> "
            f"or set {DATA_ENV}; {hint}"
        )
    if not remote.urls:
        raise DataError(
            f"{dataset}: {remote.filename} has no public download URL; place the file in a "
            f"directory and pass root=<that directory> or set {DATA_ENV}"
        )
    if remote.md5 is None:
        raise DataError(
            f"{dataset}: no verified checksum is known for {remote.filename}; refusing to "
            f"download it unchecked. Download it yourself and pass root=<directory>"
        )
    target = Path(root).expanduser() if root is not None else cache_dir() / dataset
    return download_file(remote.urls, target / remote.filename, md5=remote.md5)
