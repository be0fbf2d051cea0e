"""CIFAR-10 re-encoded as JPEG (`cifar10_jpeg.npz`): the CIFAR-10 stand-in of this project.

All 60,000 CIFAR-10 images, each JPEG-encoded once (quality about 75, mean absolute
pixel difference about 5/255 from the original), same split and class balance. Results
on it must be labelled "CIFAR-10 (JPEG)", which is this dataset's `name`.

Layout (a plain NumPy archive, no pickled objects): `classes` [10] str; `train_jpeg`,
`test_jpeg` uint8, the split's JPEG files concatenated; `train_offsets`, `test_offsets`
int64 [n + 1], image i = jpeg[offsets[i]:offsets[i + 1]]; `train_labels`, `test_labels`
uint8. Images are decoded with Pillow to uint8 [N, 3, 32, 32] and cached under
`$ROBUSTFAIR_CACHE/decoded/cifar10_jpeg-<md5>.npz` (the md5 of the archive), so a
changed archive never reads a stale cache. Looked up in `root`, else `$ROBUSTFAIR_DATA`.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from robustfair.data.checks import check_labels, check_magic
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.data.decoded_cache import load_or_build
from robustfair.data.download import file_digest, verify_file
from robustfair.data.images import decode_image
from robustfair.data.locate import cache_dir, locate_file
from robustfair.data.sources import REMOTE_FILES
from robustfair.errors import DataError

DISPLAY_NAME = "CIFAR-10 (JPEG)"
_KEYS = ("classes", "train_jpeg", "train_offsets", "train_labels", "test_jpeg", "test_offsets", "test_labels")


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as stream:
        check_magic(path, stream.read(64), (b"PK\x03\x04", b"PK\x05\x06"), "a NumPy .npz archive")
    try:
        _check_expansion(path)
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in _KEYS if k not in archive.files]
            if missing:
                raise DataError(f"{path}: not in the cifar10_jpeg layout; missing arrays {missing}")
            return {k: archive[k] for k in _KEYS}
    except (ValueError, EOFError, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as err:
        raise DataError(f"{path}: damaged NumPy archive ({type(err).__name__}: {' '.join(str(err).split())})") from None
    except OSError as err:
        if err.errno is not None:
            raise
        raise DataError(f"{path}: damaged NumPy archive ({' '.join(str(err).split())})") from None


def _check_expansion(path: Path, max_ratio: float = 100.0) -> None:
    """DataError if the archive's arrays would expand to more than `max_ratio` times its size
    (a few MB of zeros can declare gigabytes); JPEG bytes barely compress."""
    with zipfile.ZipFile(path) as archive:
        declared = sum(info.file_size for info in archive.infolist())
    allowed = max_ratio * path.stat().st_size + 2**20
    if declared > allowed:
        raise DataError(
            f"{path}: its arrays declare {declared:,} bytes, more than {max_ratio:g} times the "
            f"file's size; refused as a possible decompression bomb"
        )


def decode_jpeg_split(jpeg: np.ndarray, offsets: np.ndarray, where: str) -> np.ndarray:
    """uint8 [N, 3, H, W] from concatenated JPEG bytes and their int64 [N + 1] offsets."""
    if jpeg.dtype != np.uint8 or jpeg.ndim != 1 or offsets.dtype.kind not in "iu":
        raise DataError(
            f"{where}: expected uint8 [bytes] JPEG data and integer offsets, got {jpeg.dtype} "
            f"{list(jpeg.shape)} and {offsets.dtype}"
        )
    offsets = offsets.astype(np.int64)
    if (
        offsets.ndim != 1
        or len(offsets) < 2
        or offsets[0] != 0
        or offsets[-1] != len(jpeg)
        or np.any(np.diff(offsets) <= 0)
    ):
        raise DataError(f"{where}: offsets must rise from 0 to the byte count {len(jpeg)}")
    buffer = jpeg.tobytes()
    images = []
    for i in range(len(offsets) - 1):
        try:
            images.append(decode_image(buffer[offsets[i] : offsets[i + 1]], channels=3))
        except DataError as err:
            raise DataError(f"{where}, image {i}: {err}") from None
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"{where}: images have different sizes {sorted(shapes)[:4]}")
    return np.stack(images)


def load_cifar10_jpeg(
    root=None, download: bool = False, *, cache: bool = True, verify_md5: bool = False
) -> DatasetSplits:
    """CIFAR-10 (JPEG): 50,000 train / 10,000 test uint8 [N, 3, 32, 32], 10 classes.

    verify_md5: also require the archive's md5 to equal the published one (ChecksumError).
    """
    remote = REMOTE_FILES["cifar10_jpeg"]
    path = locate_file(remote, dataset="cifar10_jpeg", root=root, download=download)
    if verify_md5:
        verify_file(path, md5=remote.md5)
    arrays = _read_archive(path)
    md5 = file_digest(path, "md5")

    def build() -> dict[str, np.ndarray]:
        return {
            f"{split}_x": decode_jpeg_split(arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"], f"{path} ({split})")
            for split in ("train", "test")
        }

    decoded = load_or_build(cache_dir() / "decoded" / f"cifar10_jpeg-{md5}.npz", build) if cache else build()
    classes = [str(c) for c in arrays["classes"].tolist()]
    splits = []
    for split in ("train", "test"):
        x = decoded[f"{split}_x"]
        y = check_labels(arrays[f"{split}_labels"], f"{path} ({split}_labels)", len(classes))
        if len(x) != len(y):
            raise DataError(f"{path}: {split} has {len(x)} images but {len(y)} labels")
        info = {"split": split, "source": str(path), "md5": md5, "matches_published_md5": md5 == remote.md5}
        splits.append(ArrayDataset(x, y, classes, name=DISPLAY_NAME, info=info))
    return DatasetSplits(*splits)
