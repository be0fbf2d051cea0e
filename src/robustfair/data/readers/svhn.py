"""SVHN, cropped digits (Netzer et al. 2011, "Reading Digits in Natural Images with
Unsupervised Feature Learning"), from the official `train_32x32.mat` / `test_32x32.mat`.

The .mat files hold X uint8 [32, 32, 3, N] and y [N, 1] with label 10 for the digit 0;
here x is uint8 [N, 3, 32, 32] and the digit 0 is label 0. `include_extra=True` appends
`extra_32x32.mat` (531,131 images) to the train split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustfair.data.checks import check_labels
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.data.locate import locate_file
from robustfair.data.sources import REMOTE_FILES
from robustfair.errors import DataError

CLASSES = [str(d) for d in range(10)]


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 [N, 3, 32, 32], y int64 [N] in 0..9) from one SVHN .mat file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except MemoryError:
        raise
    except Exception as err:  # scipy's MATLAB parser fails on a damaged file in many ways
        detail = " ".join(str(err).split())
        raise DataError(f"{path}: cannot read MATLAB file ({type(err).__name__}: {detail})") from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: expected X of shape [32, 32, 3, N], got {getattr(x, 'shape', None)}")
    if y is None:
        raise DataError(f"{path}: no labels 'y'")
    y = check_labels(np.asarray(y).reshape(-1), f"{path} (y)")
    if len(y) != x.shape[3]:
        raise DataError(f"{path}: {len(y)} labels for {x.shape[3]} images")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: SVHN labels must be 1..10, found {y.min()}..{y.max()}")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1).astype(np.uint8)), y


def load_svhn(root=None, download: bool = False, *, include_extra: bool = False) -> DatasetSplits:
    """SVHN: 73,257 train (604,388 with extra) / 26,032 test, 10 classes."""

    def read(key: str, split: str) -> ArrayDataset:
        path = locate_file(REMOTE_FILES[key], dataset="svhn", root=root, download=download)
        x, y = read_svhn_mat(path)
        return ArrayDataset(x, y, CLASSES, name="SVHN", info={"split": split, "source": str(path)})

    train = read("svhn_train", "train")
    if include_extra:
        extra = read("svhn_extra", "extra")
        train = ArrayDataset(
            np.concatenate([train.x, extra.x]),
            np.concatenate([train.y, extra.y]),
            CLASSES,
            name="SVHN (+extra)",
            info={"split": "train+extra"},
        )
    return DatasetSplits(train, read("svhn_test", "test"))
