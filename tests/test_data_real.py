"""The readers on the real files in ../shared/data (skipped when absent).

Located through $ROBUSTFAIR_DATA, falling back to <repo>/../shared/data.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from robustfair.data import file_digest, load_dataset, read_idx
from robustfair.data.sources import REMOTE_FILES

DATA = Path(os.environ.get("ROBUSTFAIR_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
# per-class counts of the canonical MNIST test set (LeCun et al.)
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _require(name):
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not found; set ROBUSTFAIR_DATA to the directory holding the real datasets")
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ROBUSTFAIR_CACHE", str(tmp_path_factory.getbasetemp() / "real-data-cache"))


def test_mnist_t10k_files():
    images = _require("mnist-t10k-images-idx3-ubyte.gz")
    labels = _require("mnist-t10k-labels-idx1-ubyte.gz")
    # md5s listed in shared/data/README.md, equal to the official files' checksums in our table
    assert file_digest(images) == "9fb629c4189551a2d022fa330f9573f3" == REMOTE_FILES["mnist_test_images"].md5
    assert file_digest(labels) == "ec29112dd5afa0611ce80d1b7f02629c" == REMOTE_FILES["mnist_test_labels"].md5
    x, y = read_idx(images), read_idx(labels)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    assert np.bincount(y).tolist() == MNIST_TEST_COUNTS


def test_mnist_test_split_8000_2000():
    _require("mnist-t10k-images-idx3-ubyte.gz")
    splits = load_dataset("mnist_test_split", root=DATA)
    assert (len(splits.train), len(splits.test)) == (8000, 2000)
    assert splits.test.class_counts().tolist() == [196, 227, 206, 202, 196, 178, 192, 206, 195, 202]
    assert (splits.train.class_counts() + splits.test.class_counts()).tolist() == MNIST_TEST_COUNTS
    assert splits.train.x.shape == (8000, 1, 28, 28)


def test_cifar10_jpeg_archive():
    path = _require("cifar10_jpeg.npz")
    assert file_digest(path) == "ec7efd27f0694c5f78717cd2defeba50" == REMOTE_FILES["cifar10_jpeg"].md5
    splits = load_dataset("cifar10_jpeg", root=DATA, verify_md5=True)
    assert splits.train.name == "CIFAR-10 (JPEG)" and splits.classes == CIFAR10_CLASSES
    assert splits.train.x.shape == (50000, 3, 32, 32) and splits.test.x.shape == (10000, 3, 32, 32)
    assert splits.train.class_counts().tolist() == [5000] * 10
    assert splits.test.class_counts().tolist() == [1000] * 10
    # natural images: mean pixel near CIFAR-10's ~0.47 (JPEG changes it by far less than 0.02)
    assert abs(float(splits.test.x.mean()) / 255 - 0.473) < 0.02
