"""Checksummed, atomic downloads.

`download_file` streams into a temporary file in the destination's directory, hashes
while it writes, checks the checksum, and only then renames the file into place with
`os.replace` (atomic on one file system). A download that fails or is cut off midway
leaves no file under the final name, so a partial file is never mistaken for a complete
one. Downloads without a checksum are refused: the whole point is to know what was read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from robustfair.errors import ChecksumError, ConfigError, DataError

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes (`algorithm`: "md5" or "sha256"), read in 1 MiB chunks."""
    digest = _new_hash(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_hash(algorithm: str):
    if algorithm not in ("md5", "sha256"):
        raise ConfigError(f"algorithm: {algorithm!r} is not allowed; valid values: md5, sha256")
    # md5 only identifies files here (the datasets publish md5 sums), it guards no secret.
    return hashlib.new(algorithm, usedforsecurity=False)


def _expected(md5: str | None, sha256: str | None) -> tuple[str, str]:
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    raise ConfigError("a checksum is required: pass md5=... or sha256=...")


def verify_file(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise ChecksumError unless the file's digest matches (sha256 preferred when both given).

    Raises DataError if the file does not exist.
    """
    algorithm, want = _expected(md5, sha256)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    got = file_digest(path, algorithm)
    if got != want:
        raise ChecksumError(
            f"{path}: {algorithm} is {got}, expected {want}; the file is corrupt, "
            f"truncated or a different version (delete it and fetch it again)"
        )


Opener = Callable[[str], IO[bytes]]


def _default_opener(timeout: float) -> Opener:
    def open_url(url: str) -> IO[bytes]:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - URLs come from the checksum table

    return open_url


def download_file(
    url: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    opener: Opener | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` (or the first mirror that works) to `dest`, verified and atomic.

    A checksum (md5 or sha256) is required. If `dest` already exists it is verified and
    kept when it matches; a mismatching existing file raises ChecksumError (it is never
    silently overwritten). opener(url) -> binary stream (default `urllib.request.urlopen`;
    injectable for tests and proxies). Returns `dest` as a Path.
    """
    algorithm, want = _expected(md5, sha256)
    dest = Path(dest)
    if dest.exists():
        verify_file(dest, md5=md5, sha256=sha256)
        return dest
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ConfigError("url: at least one URL is required")
    dest.parent.mkdir(parents=True, exist_ok=True)
    open_url = opener or _default_opener(timeout)
    failures = []
    for candidate in urls:
        try:
            _fetch_verified(candidate, dest, algorithm, want, open_url)
            return dest
        except ChecksumError as err:
            failures.append(err)
        except (OSError, ValueError, DataError) as err:
            failures.append(DataError(f"{candidate}: {err}"))
    if all(isinstance(f, ChecksumError) for f in failures):
        raise failures[-1]
    raise DataError(f"could not download {dest.name}: " + "; ".join(str(f) for f in failures))


def _fetch_verified(url: str, dest: Path, algorithm: str, want: str, open_url: Opener) -> None:
    digest = _new_hash(algorithm)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open_url(url) as response:
            expected_size = _content_length(response)
            received = 0
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                digest.update(block)
                received += len(block)
            if expected_size is not None and received != expected_size:
                raise DataError(f"download cut off after {received} of {expected_size} bytes")
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != want:
            raise ChecksumError(f"{url}: downloaded {algorithm} is {got}, expected {want}")
        publish_mode(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def publish_mode(path: str | os.PathLike) -> None:
    """Give a file made by `tempfile.mkstemp` (mode 0600) the usual mode for new files (umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _content_length(response: object) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
