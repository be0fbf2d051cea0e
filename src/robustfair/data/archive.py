"""Extraction of tar(.gz) and zip archives that cannot write outside their target, nor
more than they are allowed to.

Every member is checked before anything is written: absolute paths, `..` components,
symbolic and hard links, device files and FIFOs are refused with `UnsafeArchiveError`.
The archive is bounded (`ExtractionLimits`): total bytes, number of members and the
expansion ratio (bytes out per byte of archive) are checked against the sizes the members
declare before extraction, and again against the bytes actually written, so a member
that lies about its size is stopped too. With `expected_top`, every member must lie under
that one top-level folder: an archive without it is refused rather than scattered into
the target. Members are copied out one by one as plain files (no permissions, owners or
times taken from the archive) into a temporary directory beside the target, and each
top-level entry is then renamed into place, so an interrupted or refused extraction
leaves nothing behind. A damaged archive (truncated, inconsistent headers) is a
`DataError` naming it.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from robustfair.errors import DataError, UnsafeArchiveError

# What a damaged archive raises while it is listed or read (truncated gzip, bad headers).
# A decompressor's OSError without an errno (bz2 "Invalid data stream") is one too; an OSError with
# an errno (a full disk while writing) is not the archive's fault and is left alone.
ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds on what one archive may extract.

    max_bytes: total bytes of all members. max_members: number of entries. max_ratio:
    total bytes per byte of the archive file, enforced once the total exceeds
    `ratio_floor` bytes (image and pickle datasets expand about 1:1, text up to ~10:1;
    a decompression bomb by factors of 1000 and more).
    """

    max_bytes: int = 16 * 2**30
    max_members: int = 1_000_000
    max_ratio: float = 100.0
    ratio_floor: int = 2**20


@dataclass(frozen=True)
class _Member:
    name: str
    is_dir: bool
    size: int
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
        yield _Member(
            info.name, info.isdir(), info.size if info.isfile() else 0, lambda info=info: tar.extractfile(info)
        )


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is not a regular file or directory")
        yield _Member(
            info.filename, info.is_dir(), 0 if info.is_dir() else info.file_size, lambda info=info: zf.open(info)
        )


def _open_archive(archive: Path):
    if tarfile.is_tarfile(archive):
        tar = tarfile.open(archive, "r:*")
        return tar, _tar_members(archive, tar)
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        return zf, _zip_members(archive, zf)
    raise DataError(f"{archive}: not a tar or zip archive")


class _Budget:
    """Bytes extracted so far against the limits; raises UnsafeArchiveError past them."""

    def __init__(self, archive: Path, limits: ExtractionLimits):
        self.archive = archive
        self.limits = limits
        self.archive_size = archive.stat().st_size
        self.allowed = min(limits.max_bytes, max(int(limits.max_ratio * self.archive_size), limits.ratio_floor))
        self.used = 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.allowed:
            limits = self.limits
            raise UnsafeArchiveError(
                f"{self.archive}: extracts more than {self.allowed:,} bytes from a {self.archive_size:,}-byte "
                f"archive (limits: {limits.max_ratio:g} times its size past {limits.ratio_floor:,} bytes, "
                f"{limits.max_bytes:,} bytes in all); refused as a possible decompression bomb, nothing was extracted"
            )


def _check_members(archive: Path, checked: list, limits: ExtractionLimits, expected_top: str | None) -> None:
    if len(checked) > limits.max_members:
        raise UnsafeArchiveError(
            f"{archive}: {len(checked):,} members, more than the limit of "
            f"{limits.max_members:,}; refused, nothing was extracted"
        )
    if expected_top is not None:
        outside = sorted({parts[0] for parts, _ in checked if parts[0] != expected_top})
        if outside or not checked:
            found = ", ".join(repr(name) for name in outside[:3]) + (", ..." if len(outside) > 3 else "")
            raise UnsafeArchiveError(
                f"{archive}: expected everything under {expected_top}/, found "
                f"{found or 'no members'} at the top; refused rather than scattering "
                f"its files, nothing was extracted"
            )
    declared = _Budget(archive, limits)
    declared.take(sum(member.size for _, member in checked))


def safe_extract(
    archive_path: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    expected_top: str | None = None,
    limits: ExtractionLimits = ExtractionLimits(),
) -> list[Path]:
    """Extract a tar(.gz/.bz2/.xz) or zip archive into `target_dir` safely.

    Returns the top-level paths created in `target_dir`. Raises UnsafeArchiveError for any
    unsafe member, an archive beyond `limits`, or (with `expected_top`) a member outside
    that top-level folder (nothing is written then); DataError for a damaged archive, or
    if a top-level entry already exists in `target_dir` (existing data is never overwritten).
    """
    archive = Path(archive_path)
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    target = Path(target_dir)
    try:
        return _extract(archive, target, expected_top, limits)
    except ARCHIVE_ERRORS as err:
        raise damaged_archive(archive, err) from None
    except OSError as err:
        if err.errno is not None:
            raise
        raise damaged_archive(archive, err) from None


def damaged_archive(archive: Path, err: BaseException) -> DataError:
    """The one-line DataError for an archive that cannot be read to its end."""
    detail = " ".join(str(err).split()) or "no detail"
    return DataError(f"{archive}: damaged archive ({type(err).__name__}: {detail}); delete it and fetch it again")


def _extract(archive: Path, target: Path, expected_top: str | None, limits: ExtractionLimits) -> list[Path]:
    handle, members = _open_archive(archive)
    with handle:
        checked = [(_safe_parts(archive, m.name), m) for m in members]
        checked = [(parts, m) for parts, m in checked if parts]
        _check_members(archive, checked, limits, expected_top)
        top_level = sorted({parts[0] for parts, _ in checked})
        existing = [name for name in top_level if (target / name).exists()]
        if existing:
            raise DataError(f"{target}: {existing} already exist; remove them before extracting {archive.name}")
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target, prefix=f".{archive.name}.extract-"))
        written = _Budget(archive, limits)
        try:
            for parts, member in checked:
                path = staging.joinpath(*parts)
                if member.is_dir:
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with member.open() as src, open(path, "wb") as dst:
                    _copy_bounded(src, dst, written)
            for name in top_level:
                os.replace(staging / name, target / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return [target / name for name in top_level]


def _copy_bounded(src: IO[bytes], dst: IO[bytes], budget: _Budget) -> None:
    while True:
        block = src.read(1 << 20)
        if not block:
            return
        budget.take(len(block))
        dst.write(block)
