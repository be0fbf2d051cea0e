"""Writing a run directory so that a kill, a full disk or a read-only directory never
leaves a half-written file where a good one is expected.

- `atomic_write_bytes` / `atomic_write_text`: the bytes go to a temporary file in the
  same directory (`.NAME.<pid>.<random>.tmp`), are fsynced, then `os.replace`d over
  `NAME` and the directory is fsynced. A kill or an error at any moment leaves either the
  old file or the new one, never a mix; on an error the temporary file is removed.
- `append_line`: one line appended and fsynced; if the write fails part-way the file is
  cut back to its previous length, so a reader never sees half a line from a failed
  write (a kill mid-write can still leave one: readers skip unparseable last lines).
- `check_writable`: try the directory and a probe file before any work is done, so a
  read-only or forbidden run directory fails at once, not after an epoch of training.
- `check_free_space`: refuse to start when the disk cannot hold the checkpoints.

Every OSError becomes a `RunFileError`: one line naming the file, the reason and what
to do (free space, choose a writable directory).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path

from robustfair.errors import RobustfairError

TEMP_SUFFIX = ".tmp"

# The calls that create files and put bytes in them; module attributes so that tests can
# simulate a disk that fills up part-way through a write, or a read-only file system.
_open = os.open
_write = os.write


class RunFileError(RobustfairError, OSError):
    """A run-directory file that could not be written (disk full, read-only, permission).

    Both a `RobustfairError` (the CLI prints its one-line message) and an `OSError`
    (callers that catch OSError keep working); `errno` and `filename` are set.
    """

    def __init__(self, message: str, *, errno_: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.errno = errno_
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0])


_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is exhausted: free some space",
    errno.EROFS: "the file system is read-only: choose a writable --run-dir",
    errno.EACCES: "permission denied: choose a directory you can write to",
    errno.EPERM: "permission denied: choose a directory you can write to",
}


def os_error_advice(err: OSError) -> str:
    """What to do about `err` in a few words ('' when there is nothing specific to say)."""
    return _ADVICE.get(err.errno, "")


def write_error(err: OSError, path: str | os.PathLike, then: str = "") -> RunFileError:
    """A RunFileError for a failed write of `path`: 'cannot write PATH: REASON; ADVICE[; THEN]'."""
    if isinstance(err, RunFileError):
        message = str(err)
    else:
        reason = err.strerror or str(err) or type(err).__name__
        advice = os_error_advice(err)
        message = f"cannot write {os.fspath(path)}: {reason}" + (f"; {advice}" if advice else "")
    if then:
        message += f"; {then}"
    return RunFileError(message, errno_=err.errno, filename=os.fspath(path))


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = _write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; some file systems refuse to open or fsync directories."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """A fresh temporary name beside `path` (hidden, unique per process and call)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` by `data` atomically (see the module docstring); returns the Path.

    Raises RunFileError (the old `path`, if any, is untouched and no temporary file remains).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, path.parent) from None
    tmp = temp_name(path)
    try:
        # 0o666 before the umask, like any new file (mkstemp would give 0600).
        fd = _open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _write_fully(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(err, path) from None
    finally:
        tmp.unlink(missing_ok=True)  # after a successful replace there is nothing left to remove
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append `line` + newline to `path` and fsync; on failure cut the file back and raise RunFileError."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as err:
        raise write_error(err, path) from None
    try:
        size = os.fstat(fd).st_size
        try:
            _write_fully(fd, data)
            os.fsync(fd)
        except OSError as err:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise write_error(err, path) from None
    finally:
        os.close(fd)


def check_writable(directory: str | os.PathLike) -> None:
    """Raise RunFileError unless `directory` (existing or not) can be created and written.

    Creates the missing directories and a probe file, then removes what it created, so
    a failed run start leaves nothing behind.
    """
    directory = Path(directory)
    created: list[Path] = []
    try:
        missing = []
        walk = directory
        while not walk.exists() and walk != walk.parent:
            missing.append(walk)
            walk = walk.parent
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        probe = temp_name(directory / "write-probe")
        fd = _open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            try:
                _write_fully(fd, b"robustfair")
            finally:
                os.close(fd)
        finally:
            probe.unlink(missing_ok=True)
    except OSError as err:
        raise write_error(err, directory) from None
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass


def check_free_space(directory: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """Raise RunFileError if `directory`'s file system has fewer than `needed_bytes` free."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # cannot tell; the writes themselves will report a full disk clearly
    if free < needed_bytes:
        raise RunFileError(
            f"cannot write {os.fspath(directory)}: {free / 2**20:.1f} MiB free but {what} need "
            f"about {needed_bytes / 2**20:.1f} MiB; free some space or choose another --run-dir",
            errno_=errno.ENOSPC,
            filename=os.fspath(directory),
        )


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed writer left in `directory` (only names this module makes)."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
