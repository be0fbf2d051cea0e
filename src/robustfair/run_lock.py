"""One writer per run directory: an OS file lock held for the life of the writing process.

Shared by the engine (writers: `engine/run_directory.py`, `engine/sweep.py`) and the
readers (`report/runs.py`, `engine/evaluation.py`); the readers' side imports nothing heavy.

A process that writes a run directory (`train`, `train --resume`, a sweep worker,
`group train` for each of its runs) first
takes an exclusive `fcntl.flock` on `<run>/.writer.lock` and records its PID, host and
start time in that file. The lock belongs to the open file, so it is released when the
writer lets go, and also when it dies for any reason, SIGKILL included: the next writer
never finds a stale lock. A second writer fails at once with one line naming the holder.

Within one process the lock is re-entrant (like `threading.RLock`): a sweep worker that
has claimed a run may start the trainer on it, and the trainer's own acquisition shares
the claim; only the outermost release lets go.

Readers (`eval`, `report`, `compare`, `analyze`) never take the lock and never wait:
`writer_of(run)` probes it with a non-blocking shared lock held for microseconds (a
writer starting at that instant retries for a moment rather than failing) and says who
is writing, so a reader can note that a run is still being written.

On NFS, Linux emulates `flock` with the server's byte-range locks (NFSv4, or NFSv3 with
lockd): the lock then works across machines that share the file system, and a crashed
client's lock is released when the server's lease expires (about 90 s on NFSv4). A file
system mounted without locking (`nolock`, some FUSE file systems) refuses locks; then
writing fails with a line saying so, and `ROBUSTFAIR_RUN_LOCK=off` trains without the
lock (one writer per run is then up to you).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from robustfair.errors import RunLockedError

LOCK_NAME = ".writer.lock"
LOCK_ENV = "ROBUSTFAIR_RUN_LOCK"
# A reader's probe holds a shared lock for microseconds; a writer retries this long before
# concluding that another writer holds the run.
_RETRY_S = 0.5
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run's lock, as recorded in the lock file."""

    pid: int | None = None
    host: str = ""
    since: str = ""
    command: str = ""

    def describe(self) -> str:
        """e.g. 'PID 4242 on host gpu3 (train, since 2025-01-01 10:00:00 UTC)'."""
        who = f"PID {self.pid}" if self.pid is not None else "a process whose PID is not recorded yet"
        if self.host:
            who += f" on host {self.host}"
        details = ", ".join(part for part in (self.command, f"since {self.since}" if self.since else "") if part)
        return who + (f" ({details})" if details else "")


def locked_message(run_dir: Path, holder: Holder) -> str:
    return (
        f"run directory {str(run_dir)!r} is being written by {holder.describe()}; a second writer would "
        "corrupt it: wait for that process to finish, or stop it and continue with --resume"
    )


def lock_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / LOCK_NAME


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def _parse_holder(text: str) -> Holder:
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return Holder()
    if not isinstance(record, dict):
        return Holder()
    pid = record.get("pid")
    return Holder(
        pid=pid if isinstance(pid, int) else None,
        host=str(record.get("host", "")),
        since=str(record.get("since", "")),
        command=str(record.get("command", "")),
    )


def _read_holder(fd: int) -> Holder:
    """The holder recorded in an open lock file (it writes its record just after locking)."""
    holder = Holder()
    for _ in range(5):
        try:
            holder = _parse_holder(os.pread(fd, 4096, 0).decode("utf-8", errors="replace"))
        except OSError:
            return holder
        if holder.pid is not None:
            break
        time.sleep(0.02)
    return holder


def _locking_disabled() -> bool:
    return os.environ.get(LOCK_ENV, "").strip().lower() in ("off", "0", "false", "no")


@dataclass
class RunLock:
    """The exclusive lock on one run directory, held by this process (see the module docstring)."""

    run_dir: Path
    fd: int | None
    created: list[Path] = field(default_factory=list)  # folders the acquisition created, outermost first
    depth: int = 1

    def release(self, *, remove_if_unused: bool = False) -> None:
        """Let go (the outermost release only). remove_if_unused: also remove the folders the
        acquisition created if nothing else was written into them (a run refused before it began)."""
        self.depth -= 1
        if self.depth > 0:
            return
        _HELD.pop(_key(self.run_dir), None)
        if self.fd is not None:
            path = lock_path(self.run_dir)
            try:  # remove the file while still holding it; a new writer checks it locked the file on disk
                if os.path.samestat(os.stat(path), os.fstat(self.fd)):
                    path.unlink()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None
        if remove_if_unused:
            for folder in reversed(self.created):
                try:
                    folder.rmdir()  # only if empty
                except OSError:
                    break

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


_HELD: dict[str, RunLock] = {}


def _missing_folders(run_dir: Path) -> list[Path]:
    missing, walk = [], run_dir
    while not walk.exists() and walk != walk.parent:
        missing.append(walk)
        walk = walk.parent
    return list(reversed(missing))


def _open_locked(path: Path, deadline: float) -> int:
    """An fd of `path` holding the exclusive lock; RunLockedError if another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _BUSY and time.monotonic() < deadline:
                os.close(fd)
                time.sleep(0.05)
                continue
            holder = _read_holder(fd) if err.errno in _BUSY else None
            os.close(fd)
            if holder is None:
                raise
            raise RunLockedError(locked_message(path.parent, holder), holder=holder) from None
        try:  # a writer that just let go removed the file we opened: lock the one on disk instead
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def acquire(run_dir: str | os.PathLike, command: str = "train") -> RunLock:
    """Take the run directory's writer lock (creating the directory), or raise.

    Raises RunLockedError (one line naming the holder's PID and host) when another process
    writes the run, and RunFileError when the lock file cannot be created or the file
    system refuses locks. Re-entrant within this process.
    """
    run_dir = Path(run_dir)
    held = _HELD.get(_key(run_dir))
    if held is not None:
        held.depth += 1
        return held
    created = _missing_folders(run_dir)
    path = lock_path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if _locking_disabled():
            fd = None
        else:
            fd = _open_locked(path, time.monotonic() + _RETRY_S)
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": command,
                "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except RunLockedError:
        _remove_empty(created)
        raise
    except OSError as err:
        from robustfair.engine.run_files import write_error  # the writers' one-line message and advice

        _remove_empty(created)
        then = (
            "the file system refuses locks (NFS mounted with nolock?); set ROBUSTFAIR_RUN_LOCK=off to write "
            "without the one-writer check"
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
            else ""
        )
        raise write_error(err, run_dir, then) from None
    lock = RunLock(run_dir, fd, created)
    _HELD[_key(run_dir)] = lock
    return lock


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


def writer_of(run_dir: str | os.PathLike) -> Holder | None:
    """Who is writing `run_dir` now (None if nobody); never waits, never takes the lock for long."""
    run_dir = Path(run_dir)
    if _key(run_dir) in _HELD:  # never open a lock file this process holds (closing it could drop the lock on NFS)
        return Holder(os.getpid(), socket.gethostname(), "", "this process")
    try:
        fd = os.open(lock_path(run_dir), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return _read_holder(fd) if err.errno in _BUSY else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def being_written_note(run_dir: str | os.PathLike) -> str | None:
    """'RUN is still being written by PID ... on host ...' when a writer holds it, else None."""
    holder = writer_of(run_dir)
    if holder is None:
        return None
    return f"{run_dir} is still being written by {holder.describe()}"


__all__ = [
    "Holder",
    "RunLock",
    "acquire",
    "writer_of",
    "being_written_note",
    "locked_message",
    "lock_path",
    "LOCK_NAME",
    "LOCK_ENV",
]
