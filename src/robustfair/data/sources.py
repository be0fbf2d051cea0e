"""Where each dataset file comes from, and the checksum it must have.

`md5` is the checksum the file must match; `checksum_source` says who published it.
Where the dataset's authors publish no checksum, the value is the one the torchvision
dataset classes have verified against the official files for years (noted as such).
A file whose checksum we do not know has `md5=None`, and `download=True` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One official dataset file: name on disk, URLs (official first), checksum and its origin."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None
    checksum_source: str


_LECUN = "http://yann.lecun.com/exdb/mnist/"
# LeCun's server often refuses scripted downloads; torchvision's S3 mirror holds the same bytes.
_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_TORCHVISION = "torchvision dataset class (the authors publish no checksum)"


def _mnist(name: str, md5: str) -> RemoteFile:
    return RemoteFile(name, (_LECUN + name, _MNIST_MIRROR + name), md5, _TORCHVISION)


REMOTE_FILES: dict[str, RemoteFile] = {
    "mnist_train_images": _mnist("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "mnist_train_labels": _mnist("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "mnist_test_images": _mnist("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "mnist_test_labels": _mnist("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    "cifar10": RemoteFile(
        "cifar-10-python.tar.gz",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        "c58f30108f718f92721af3b95e74349a",
        "published by the authors on https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": RemoteFile(
        "cifar-100-python.tar.gz",
        ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        "eb9058c3a382ffc7106e4002c42a8d85",
        "published by the authors on https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "svhn_train": RemoteFile(
        "train_32x32.mat",
        ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
        "e26dedcc434d2e4c54c9b2d4a06d8373",
        _TORCHVISION,
    ),
    "svhn_test": RemoteFile(
        "test_32x32.mat",
        ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
        "eb5a983be6a315427106f1b164d9cef3",
        _TORCHVISION,
    ),
    "svhn_extra": RemoteFile(
        "extra_32x32.mat",
        ("http://ufldl.stanford.edu/housenumbers/extra_32x32.mat",),
        "a93ce644f1a588dc4d68dda5feec44a7",
        _TORCHVISION,
    ),
    "imagenette_160": RemoteFile(
        "imagenette2-160.tgz",
        ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",),
        "e793b78cc4c9e9a4ccc0c1155377a412",
        _TORCHVISION,
    ),
    "imagenette_320": RemoteFile(
        "imagenette2-320.tgz",
        ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",),
        "3df6f0d01a2c9592104656642f5e78a3",
        _TORCHVISION,
    ),
    "imagenette_full": RemoteFile(
        "imagenette2.tgz",
        ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",),
        "fe2fc210e6bb7c5664d602c3cd71e612",
        _TORCHVISION,
    ),
    # Re-encoded CIFAR-10 kept beside the project (shared/data/README.md); no public URL.
    "cifar10_jpeg": RemoteFile(
        "cifar10_jpeg.npz", (), "ec7efd27f0694c5f78717cd2defeba50", "shared/data/README.md of this project"
    ),
}
