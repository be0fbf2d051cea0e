"""Extraction of tar(.gz) and zip archives that cannot write outside their target.

Every member is checked before anything is written: absolute paths, `..` components,
symbolic and hard links, device files and FIFOs are refused with `UnsafeArchiveError`.
Members are copied out one by one as plain files (no permissions, owners or times taken
from the archive) into a temporary directory beside the target, and each top-level entry
is then renamed into place, so an interrupted extraction leaves no half-written entry
under its final name.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from robustfair.errors import DataError, UnsafeArchiveError


@dataclass(frozen=True)
class _Member:
    name: str
    is_dir: bool
    open: Callable[[], IO[bytes]]


def _safe_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The member's path components, or UnsafeArchiveError if it could leave the target."""
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} has an absolute path")
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} contains '..' and could escape the target")
    return parts


def _tar_members(archive: Path, tar: tarfile.TarFile) -> Iterator[_Member]:
    for info in tar.getmembers():
        if info.issym() or info.islnk():
            raise UnsafeArchiveError(f"{archive.name}: member {info.name!r} is a link (to {info.linkname!r})")
        if info.ischr() or info.isblk() or info.isfifo():
            raise UnsafeArchiveError(f"{archive.name}: member {info.name!r} is a device file or FIFO")
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(f"{archive.name}: member {info.name!r} is not a regular file or directory")
        yield _Member(info.name, info.isdir(), lambda info=info: tar.extractfile(info))


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is not a regular file or directory")
        yield _Member(info.filename, info.is_dir(), lambda info=info: zf.open(info))


def _open_archive(archive: Path):
    if tarfile.is_tarfile(archive):
        tar = tarfile.open(archive, "r:*")
        return tar, _tar_members(archive, tar)
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        return zf, _zip_members(archive, zf)
    raise DataError(f"{archive}: not a tar or zip archive")


def safe_extract(archive_path: str | os.PathLike, target_dir: str | os.PathLike) -> list[Path]:
    """Extract a tar(.gz/.bz2/.xz) or zip archive into `target_dir` safely.

    Returns the top-level paths created in `target_dir`. Raises UnsafeArchiveError for any
    unsafe member (nothing is written then), and DataError if a top-level entry already
    exists in `target_dir` (remove it first; existing data is never overwritten).
    """
    archive = Path(archive_path)
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    target = Path(target_dir)
    handle, members = _open_archive(archive)
    with handle:
        checked = [(_safe_parts(archive, m.name), m) for m in members]
        checked = [(parts, m) for parts, m in checked if parts]
        top_level = sorted({parts[0] for parts, _ in checked})
        existing = [name for name in top_level if (target / name).exists()]
        if existing:
            raise DataError(f"{target}: {existing} already exist; remove them before extracting {archive.name}")
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target, prefix=f".{archive.name}.extract-"))
        try:
            for parts, member in checked:
                path = staging.joinpath(*parts)
                if member.is_dir:
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with member.open() as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            for name in top_level:
                os.replace(staging / name, target / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return [target / name for name in top_level]
