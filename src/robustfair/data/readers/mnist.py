"""MNIST from the official IDX files (LeCun et al., "Gradient-based learning applied to
document recognition"), gzipped or not.

Files: train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz),
t10k-labels-idx1-ubyte(.gz); a "mnist-" prefix is also accepted. Images come out uint8
[N, 1, 28, 28].

`split_test_only=True` (or the dataset name `mnist_test_split`) uses only the canonical
10,000-image test file and splits it class-stratified into 8,000 train / 2,000 test
(`test_size`, seeded): the protocol for experiments where only the t10k files exist.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path

import numpy as np

from robustfair.data.checks import check_int, check_labels
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.data.locate import locate_file
from robustfair.data.sources import REMOTE_FILES
from robustfair.data.splits import stratified_split
from robustfair.errors import DataError

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CLASSES = [str(d) for d in range(10)]


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzip detected from its magic bytes, not its name).

    Raises DataError on a bad magic number, an unknown type code or a size mismatch.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gunzip_bounded(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: corrupt gzip data: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX data has {len(raw) - header} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_MAX_IDX_BYTES = 2**28  # the MNIST files are at most 47 MB; a gzip that inflates past this is refused


def _gunzip_bounded(raw: bytes) -> bytes:
    """gzip.decompress that refuses to inflate past _MAX_IDX_BYTES (a decompression bomb)."""
    stream = gzip.GzipFile(fileobj=io.BytesIO(raw))
    data = stream.read(_MAX_IDX_BYTES + 1)
    if len(data) > _MAX_IDX_BYTES:
        raise OSError(f"inflates past {_MAX_IDX_BYTES:,} bytes; refused as a possible decompression bomb")
    return data


def _locate(key: str, root, download: bool) -> Path:
    remote = REMOTE_FILES[key]
    plain = remote.filename[:-3]
    return locate_file(
        remote,
        dataset="mnist",
        root=root,
        download=download,
        aliases=(plain, "mnist-" + remote.filename, "mnist-" + plain),
    )


def _read_split(prefix: str, root, download: bool, split: str) -> ArrayDataset:
    images_path = _locate(f"mnist_{prefix}_images", root, download)
    labels_path = _locate(f"mnist_{prefix}_labels", root, download)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images [N, 28, 28], got {images.dtype} {list(images.shape)}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels [N], got shape {list(labels.shape)}")
    labels = check_labels(labels, str(labels_path), len(CLASSES))
    if len(images) != len(labels):
        raise DataError(
            f"MNIST {split}: {len(images)} images in {images_path} but {len(labels)} labels in {labels_path}"
        )
    return ArrayDataset(images[:, None, :, :].copy(), labels, CLASSES, name="MNIST", info={"split": split})


def load_mnist(
    root=None, download: bool = False, *, split_test_only: bool = False, test_size: int = 2000, seed: int = 0
) -> DatasetSplits:
    """MNIST train (60,000) / test (10,000), or with `split_test_only` the 10,000 test images
    split class-stratified into (10,000 - test_size) train / test_size test with `seed`."""
    if split_test_only:
        return load_mnist_test_split(root, download, test_size=test_size, seed=seed)
    try:
        train = _read_split("train", root, download, "train")
    except DataError as err:
        raise DataError(
            f"{err}. If only the t10k test files are available, use split_test_only=True (dataset 'mnist_test_split')"
        ) from None
    return DatasetSplits(train, _read_split("test", root, download, "test"))


def load_mnist_test_split(root=None, download: bool = False, *, test_size: int = 2000, seed: int = 0) -> DatasetSplits:
    """The canonical MNIST test set split class-stratified into 8,000 train / 2,000 test."""
    test_size = check_int("test_size", test_size, low=1)
    seed = check_int("seed", seed, low=0)
    full = _read_split("test", root, download, "t10k")
    train, test = stratified_split(full, test_size, seed=seed)
    for part, split in ((train, "train"), (test, "test")):
        part.name = "MNIST (test-set split)"
        part.info = {"split": split, "source": "t10k", "test_size": test_size, "seed": seed}
    return DatasetSplits(train, test)
