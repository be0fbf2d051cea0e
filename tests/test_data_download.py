"""Checksummed atomic downloads, download through load_dataset, and safe archive extraction."""

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
import zipfile

import numpy as np
import pytest

import robustfair.data.locate as locate
from robustfair.data import download_file, file_digest, load_dataset, safe_extract, verify_file
from robustfair.data.sources import REMOTE_FILES, RemoteFile
from robustfair.errors import ChecksumError, ConfigError, DataError, UnsafeArchiveError

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes, read in many chunks
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


def test_verify_file_and_digest(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert file_digest(path) == "900150983cd24fb0d6963f7d28e17f72"  # md5("abc"), RFC 1321
    assert file_digest(path, "sha256").startswith("ba7816bf8f01cfea")
    verify_file(path, md5="900150983CD24FB0D6963F7D28E17F72")
    with pytest.raises(ChecksumError, match="expected 0000"):
        verify_file(path, md5="0" * 32)
    with pytest.raises(DataError, match="not found"):
        verify_file(tmp_path / "missing", md5=MD5)


def test_download_from_file_url_is_verified_and_atomic(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    out = tmp_path / "out"
    got = download_file(src.as_uri(), out / "data.bin", md5=MD5)
    assert got.read_bytes() == PAYLOAD
    assert leftovers(out) == ["data.bin"]
    # an existing good file is kept without fetching
    assert download_file("file:///nonexistent", out / "data.bin", md5=MD5) == out / "data.bin"


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match="expected ffff"):
        download_file(src.as_uri(), out / "data.bin", md5="f" * 32)
    assert leftovers(out) == []


class _Response(io.BytesIO):
    def __init__(self, data, fail_after=None, headers=None):
        super().__init__(data)
        self.fail_after = fail_after
        self.headers = headers or {}

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(min(n, 1000) if n > 0 else 1000)


def test_partial_download_never_becomes_the_file(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="connection reset"):
        download_file(
            "https://example.invalid/d.bin",
            out / "d.bin",
            md5=MD5,
            opener=lambda url: _Response(PAYLOAD, fail_after=5000),
        )
    assert leftovers(out) == []
    # a server that closes early without an error is caught by Content-Length
    with pytest.raises(DataError, match="cut off after 5000 of 1024000 bytes"):
        download_file(
            "https://example.invalid/d.bin",
            out / "d.bin",
            md5=MD5,
            opener=lambda url: _Response(PAYLOAD[:5000], headers={"Content-Length": str(len(PAYLOAD))}),
        )
    assert leftovers(out) == []


def test_mirror_fallback_and_existing_corrupt_file(tmp_path):
    calls = []

    def opener(url):
        calls.append(url)
        if "bad" in url:
            raise OSError("503 service unavailable")
        return _Response(PAYLOAD)

    dest = download_file(
        ["https://bad.invalid/d", "https://good.invalid/d"], tmp_path / "d.bin", md5=MD5, opener=opener
    )
    assert calls == ["https://bad.invalid/d", "https://good.invalid/d"] and dest.read_bytes() == PAYLOAD
    corrupt = tmp_path / "c.bin"
    corrupt.write_bytes(PAYLOAD[:-1])
    with pytest.raises(ChecksumError, match="corrupt"):
        download_file("https://good.invalid/d", corrupt, md5=MD5, opener=opener)
    assert corrupt.read_bytes() == PAYLOAD[:-1]  # never silently replaced
    with pytest.raises(ConfigError, match="checksum is required"):
        download_file("https://good.invalid/d", tmp_path / "x", opener=opener)


def _idx_gz(array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes())


def test_load_dataset_download_fetches_into_the_cache(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    labels = np.repeat(np.arange(10, dtype=np.uint8), 5)
    images = np.arange(50 * 28 * 28, dtype=np.int64).reshape(50, 28, 28).astype(np.uint8)
    for key, arr in (("mnist_test_images", images), ("mnist_test_labels", labels)):
        name = REMOTE_FILES[key].filename
        (server / name).write_bytes(_idx_gz(arr))
        monkeypatch.setitem(
            REMOTE_FILES, key, RemoteFile(name, ((server / name).as_uri(),), file_digest(server / name), "test")
        )
    monkeypatch.setenv("ROBUSTFAIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ROBUSTFAIR_DATA", raising=False)
    with pytest.raises(DataError, match="download=True fetches it"):
        load_dataset("mnist_test_split", test_size=10)
    splits = load_dataset("mnist_test_split", download=True, test_size=10)
    assert (len(splits.train), len(splits.test)) == (40, 10)
    assert leftovers(tmp_path / "cache" / "mnist") == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_refused_without_known_checksum(tmp_path, monkeypatch):
    remote = RemoteFile("x.bin", ("https://example.invalid/x.bin",), None, "unknown")
    with pytest.raises(DataError, match="no verified checksum"):
        locate.locate_file(remote, dataset="x", root=tmp_path, download=True)


def test_checksum_table_is_well_formed():
    for key, remote in REMOTE_FILES.items():
        assert remote.md5 is None or (len(remote.md5) == 32 and int(remote.md5, 16) >= 0), key
        assert all(u.endswith(remote.filename) for u in remote.urls), key
    assert REMOTE_FILES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert REMOTE_FILES["mnist_test_images"].md5 == "9fb629c4189551a2d022fa330f9573f3"


# ---------------------------------------------------------------- archives


def _tar(path, members):
    """members: list of (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    return tarfile.TarInfo(name), data


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_safe_tar_extracts(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar.gz", [_file("pkg/a.txt", b"hello"), _file("pkg/sub/b.txt", b"bye"), _file("./top.txt", b"t")]
    )
    target = tmp_path / "target"
    created = safe_extract(archive, target)
    assert sorted(p.name for p in created) == ["pkg", "top.txt"]
    assert (target / "pkg" / "sub" / "b.txt").read_bytes() == b"bye"
    assert sorted(leftovers(target)) == ["pkg", "top.txt"]  # no staging directory left
    with pytest.raises(DataError, match="already exist"):
        safe_extract(archive, target)


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("../evil.txt"), "contains '..'"),
        (_file("pkg/../../evil.txt"), "contains '..'"),
        (_file("/etc/evil.txt"), "absolute path"),
        (_special("pkg/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (_special("pkg/hard", tarfile.LNKTYPE, "pkg/a.txt"), "is a link"),
        (_special("pkg/fifo", tarfile.FIFOTYPE), "device file or FIFO"),
        (_special("pkg/dev", tarfile.CHRTYPE), "device file or FIFO"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path, member, message):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("pkg/a.txt"), member])
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, target)
    assert not target.exists() or leftovers(target) == []
    assert not (tmp_path / "evil.txt").exists()


def test_zip_archives(tmp_path):
    ok = tmp_path / "ok.zip"
    with zipfile.ZipFile(ok, "w") as zf:
        zf.writestr("d/a.txt", b"zip!")
    safe_extract(ok, tmp_path / "t1")
    assert (tmp_path / "t1" / "d" / "a.txt").read_bytes() == b"zip!"
    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as zf:
        zf.writestr("../evil.txt", b"no")
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        safe_extract(escape, tmp_path / "t2")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("d/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(link, tmp_path / "t3")
    not_archive = tmp_path / "plain.bin"
    not_archive.write_bytes(os.urandom(64))
    with pytest.raises(DataError, match="not a tar or zip"):
        safe_extract(not_archive, tmp_path / "t4")
