"""Every data fault is a data error: exit 2 and one line naming the file and what is wrong.

Each case builds its corrupt file here (nothing downloaded), places it where a reader
looks, and runs `robustfair train` on it through `robustfair.cli.main`: the run is
refused before any training step with one `robustfair: error:` line, never an
"internal error" (exit 70) or a traceback, and leaves no run directory behind. Archive
bounds (bomb, member count, scattered files) and the pickled-array size check are also
pinned at the library level.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from robustfair.cli import main
from robustfair.data import safe_extract
from robustfair.data.archive import ExtractionLimits
from robustfair.data.safe_pickle import restricted_loads
from robustfair.errors import DataError, UnsafeArchiveError

TINY = ["train.epochs=1", "data.val_per_class=0", "--quiet"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTFAIR_CACHE", str(tmp_path / "cache"))


def refused(tmp_path, capsys, *overrides: str) -> str:
    """Run `train` on the given data; assert exit 2, one error line, nothing left; return the line."""
    run = tmp_path / "run"
    status = main(["train", "digits_erm", *overrides, *TINY, "--run-dir", str(run)])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert captured.err.count("\n") == 1 and captured.err.startswith("robustfair: error: "), captured.err
    assert "internal error" not in captured.err and "Traceback" not in captured.err
    assert not run.exists()
    return captured.err.strip()


# ---------------------------------------------------------------------------- building bad files


def png_bytes(size: int = 8, value: int = 128) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(out, format="PNG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def write_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def imagenette_files(top: str = "imagenette2-160") -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        f"{top}/{split}/n0{c}/img{i}.JPEG": png_bytes(value=int(rng.integers(0, 255)))
        + rng.bytes(2000)  # incompressible padding so a cut lands mid-stream
        for split in ("train", "val")
        for c in range(2)
        for i in range(3)
    }


def zip_with_inconsistent_names(path: Path, first: str, second: str, data: bytes) -> Path:
    """A zip whose local header names `second` while its directory names `first` (same length)."""
    assert len(first) == len(second)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(first, data)
    raw = path.read_bytes()
    local = raw.index(first.encode())  # the local header comes first, the central directory last
    path.write_bytes(raw[:local] + second.encode() + raw[local + len(first) :])
    return path


def cifar_folder(root: Path, labels_of=lambda n: list(np.arange(n) % 10), data_batch_1: bytes | None = None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n: int) -> bytes:
        return pickle.dumps(
            {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": labels_of(n)}, protocol=2
        )

    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    )
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(batch(20))
    (folder / "test_batch").write_bytes(batch(20))
    if data_batch_1 is not None:
        (folder / "data_batch_1").write_bytes(data_batch_1)
    return folder


class _HugeArray:
    """Pickles as numpy.ndarray((10**6, 3072), uint8): a 3 GB allocation asked for by ~120 bytes."""

    def __reduce__(self):
        return (np.ndarray, ((10**6, 3072), np.dtype("u1")))


# ---------------------------------------------------------------------------- the cases


def test_a_truncated_archive_is_a_data_error(tmp_path, capsys):
    archive = write_tgz(tmp_path / "imagenette2-160.tgz", imagenette_files())
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    line = refused(tmp_path, capsys, "data.name=imagenette", f"data.root={tmp_path}")
    assert f"{archive}: damaged archive (" in line and "delete it and fetch it again" in line
    assert not (tmp_path / "imagenette2-160").exists()


def test_a_zip_whose_member_names_disagree_is_a_data_error(tmp_path, capsys):
    zip_with_inconsistent_names(
        tmp_path / "imagenette2-160.tgz", "imagenette2-160/train/a/x.png", "imagenette2-160/train/b/x.png", png_bytes()
    )
    line = refused(tmp_path, capsys, "data.name=imagenette", f"data.root={tmp_path}")
    assert f"{tmp_path / 'imagenette2-160.tgz'}: damaged archive (BadZipFile: File name in directory" in line


def test_an_npz_whose_member_names_disagree_is_a_data_error(tmp_path, capsys):
    path = tmp_path / "cifar10_jpeg.npz"
    keys = ("classes", "train_jpeg", "train_offsets", "train_labels", "test_jpeg", "test_offsets", "test_labels")
    np.savez(path, **{key: np.zeros(2, np.uint8) for key in keys})
    raw = path.read_bytes()
    at = raw.index(b"train_jpeg.npy")  # its local header; the directory still says train_jpeg
    path.write_bytes(raw[:at] + b"train_jpog.npy" + raw[at + 14 :])
    line = refused(tmp_path, capsys, "data.name=cifar10_jpeg", f"data.root={tmp_path}")
    assert f"{path}: damaged NumPy archive (BadZipFile: File name in directory" in line


def image_folder(root: Path, bad: dict[str, bytes] = {}) -> Path:  # noqa: B006 - read only
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                (root / split / c / f"{i}.png").write_bytes(png_bytes(value=40 * i + (c == "b") * 100))
    for name, data in bad.items():
        (root / name).write_bytes(data)
    return root


def test_a_png_decompression_bomb_is_a_data_error(tmp_path, capsys):
    root = image_folder(tmp_path / "images", {"train/a/bomb.png": png_claiming(60000, 60000)})
    line = refused(tmp_path, capsys, "data.name=imagefolder", f"data.root={root}", "data.options={size: 8}")
    assert f"{root / 'train/a/bomb.png'}: image too large to decode safely" in line
    assert "3600000000 pixels" in line


def test_a_png_that_is_not_an_image_is_a_data_error(tmp_path, capsys):
    root = image_folder(tmp_path / "images", {"test/b/broken.png": png_bytes()[:40]})
    line = refused(tmp_path, capsys, "data.name=imagefolder", f"data.root={root}", "data.options={size: 8}")
    assert f"cannot decode {root / 'test/b/broken.png'}: " in line


@pytest.mark.parametrize(
    "labels, problem",
    [
        (lambda n: [str(i % 10) for i in range(n)], "labels must be integers, found strings (e.g. '0')"),
        (lambda n: [0.5] * n, "labels must be integers, found 0.5 (20 such labels)"),
        (lambda n: [i % 10 + 10 for i in range(n)], "20 labels out of range [0, 10), e.g. [10, 11, 12, 13, 14]"),
        (lambda n: [True] * n, "labels must be integers, found booleans (e.g. True)"),
    ],
)
def test_cifar_labels_must_be_integers_in_range(tmp_path, capsys, labels, problem):
    folder = cifar_folder(tmp_path, labels)
    line = refused(tmp_path, capsys, "data.name=cifar10", f"data.root={tmp_path}")
    assert line.endswith(f"{folder / 'data_batch_1'} ('labels'): {problem}"), line


def test_mnist_labels_of_one_half_are_refused_not_truncated(tmp_path, capsys):
    def idx(array: np.ndarray, code: int) -> bytes:
        header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        return gzip.compress(header + array.astype(array.dtype.newbyteorder(">")).tobytes())

    images = np.zeros((20, 28, 28), np.uint8)
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx(images, 0x08))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx(np.full(20, 0.5, np.float32), 0x0D))
    line = refused(tmp_path, capsys, "data.name=mnist", f"data.root={tmp_path}")
    assert f"{tmp_path / 'train-labels-idx1-ubyte.gz'}: labels must be integers, found 0.5" in line


def test_a_text_file_named_npz_is_called_what_it_is(tmp_path, capsys):
    (tmp_path / "cifar10_jpeg.npz").write_text("hello, this is not an array archive\n")
    line = refused(tmp_path, capsys, "data.name=cifar10_jpeg", f"data.root={tmp_path}")
    assert line.endswith(
        f"{tmp_path / 'cifar10_jpeg.npz'}: not a NumPy .npz archive (it starts with text b'hello, this is n'...)"
    )
    assert "pickle" not in line


def test_a_missing_data_folder_is_called_missing(tmp_path, capsys):
    line = refused(tmp_path, capsys, "data.name=imagefolder", f"data.root={tmp_path / 'nowhere'}")
    assert line.endswith(
        f"{tmp_path / 'nowhere'}: data folder not found; pass root=<directory holding the class folders>"
    )
    (tmp_path / "a_file").write_text("x")
    line = refused(tmp_path, capsys, "data.name=imagefolder", f"data.root={tmp_path / 'a_file'}")
    assert "a_file: data folder is not a directory" in line


def test_demo_with_no_methods_is_one_line(capsys):
    for spec in ("", ",", " , "):
        assert main(["demo", "--methods", spec]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"demo --methods: {spec!r} names no method; give default, all" in err


# ---------------------------------------------------------------------------- bounded extraction


def test_an_archive_bomb_is_refused_and_nothing_is_extracted(tmp_path, capsys):
    bomb = write_tgz(tmp_path / "imagenette2-160.tgz", {"imagenette2-160/train/a/zeros.JPEG": bytes(8 * 2**20)})
    assert bomb.stat().st_size < 20_000  # 8 MiB of zeros in a few KB
    line = refused(tmp_path, capsys, "data.name=imagenette", f"data.root={tmp_path}")
    assert (
        f"{bomb}: extracts more than 1,048,576 bytes from a {bomb.stat().st_size:,}-byte archive (limits: 100 "
        f"times its size past 1,048,576 bytes, 17,179,869,184 bytes in all); refused as a possible decompression "
        f"bomb, nothing was extracted" in line
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imagenette2-160.tgz"]


def test_a_zip_bomb_is_refused_and_the_running_count_stops_a_member_that_lies(tmp_path):
    from robustfair.data import archive

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("top/zeros", bytes(4 * 2**20))
    limits = ExtractionLimits(max_ratio=10, ratio_floor=2**10)
    with pytest.raises(UnsafeArchiveError, match="possible decompression bomb"):
        safe_extract(bomb, tmp_path / "out", limits=limits)
    assert not (tmp_path / "out").exists()  # refused from the declared sizes, before anything was created
    # the bytes actually written are counted as well, in case a member's declared size lies
    budget = archive._Budget(bomb, limits)
    with zipfile.ZipFile(bomb) as zf, zf.open("top/zeros") as src, open(tmp_path / "copy", "wb") as dst:
        with pytest.raises(UnsafeArchiveError, match="extracts more than"):
            archive._copy_bounded(src, dst, budget)
    assert (tmp_path / "copy").stat().st_size <= budget.allowed


def test_member_count_and_total_bytes_are_bounded(tmp_path):
    many = write_tgz(tmp_path / "many.tgz", {f"top/{i}": b"x" for i in range(20)})
    with pytest.raises(UnsafeArchiveError, match="20 members, more than the limit of 10"):
        safe_extract(many, tmp_path / "out", limits=ExtractionLimits(max_members=10))
    with pytest.raises(UnsafeArchiveError, match="10 bytes in all"):
        safe_extract(many, tmp_path / "out", limits=ExtractionLimits(max_bytes=10))
    assert safe_extract(many, tmp_path / "out") == [tmp_path / "out" / "top"]


def test_an_archive_without_the_expected_top_folder_is_refused_not_scattered(tmp_path, capsys):
    files = {name.replace("imagenette2-160/", ""): data for name, data in imagenette_files().items()}
    write_tgz(tmp_path / "imagenette2-160.tgz", files)
    line = refused(tmp_path, capsys, "data.name=imagenette", f"data.root={tmp_path}")
    assert (
        "expected everything under imagenette2-160/, found 'train', 'val' at the top; refused rather than "
        "scattering its files" in line
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imagenette2-160.tgz"]
    with pytest.raises(UnsafeArchiveError, match="found 'other'"):  # one stray entry is enough
        safe_extract(
            write_tgz(tmp_path / "mixed.tgz", {"top/a": b"1", "other": b"2"}), tmp_path / "t", expected_top="top"
        )


def test_a_good_imagenette_archive_still_extracts_and_loads(tmp_path):
    from robustfair.data import load_dataset

    write_tgz(
        tmp_path / "imagenette2-160.tgz", {name: png_bytes(8, value=i * 9) for i, name in enumerate(imagenette_files())}
    )
    splits = load_dataset("imagenette", root=tmp_path, size=8)
    assert splits.train.x.shape == (6, 3, 8, 8) and splits.test.x.shape == (6, 3, 8, 8)


# ---------------------------------------------------------------------------- pickled arrays


def test_a_pickled_array_cannot_ask_for_memory_it_does_not_carry(tmp_path, capsys):
    bomb = pickle.dumps({b"data": _HugeArray(), b"labels": [0]}, protocol=2)
    assert len(bomb) < 200
    folder = cifar_folder(tmp_path, data_batch_1=bomb)
    line = refused(tmp_path, capsys, "data.name=cifar10", f"data.root={tmp_path}")
    assert f"{folder / 'data_batch_1'}: refusing to call numpy.ndarray from a pickle" in line

    # numpy's own layout with a forged shape: checked against the bytes it carries, before allocating
    forged = pickle.dumps(np.zeros(3, np.uint8), protocol=2).replace(b"K\x03\x85", b"J\x00\xe1\xf5\x05\x85")
    with pytest.raises(
        DataError,
        match=r"declares shape \(100000000,\) of uint8 \(100,000,000 bytes\) but carries "
        r"3 bytes of data",
    ):
        restricted_loads(forged, "forged")
    with pytest.raises(DataError, match="only plain numeric arrays"):
        restricted_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_real_numpy_pickles_still_load(protocol):
    data = {b"data": np.arange(24, dtype=np.uint8).reshape(2, 12), b"labels": [1, 2], b"f": np.ones(3)}
    loaded = restricted_loads(pickle.dumps(data, protocol=protocol))
    assert type(loaded[b"data"]) is np.ndarray and np.array_equal(loaded[b"data"], data[b"data"])
    assert np.array_equal(loaded[b"f"], data[b"f"]) and loaded[b"labels"] == [1, 2]
