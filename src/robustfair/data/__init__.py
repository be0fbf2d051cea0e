"""Datasets, readers, splits and loaders.

- `ArrayDataset` / `DatasetSplits`: in-memory splits (uint8 [N, C, H, W] images or float
  [N, ...] in [0, 1]); `validate_dataset` checks them.
- `DATASETS` (name -> reader) and `load_dataset(name, root=None, download=False, **options)`;
  your own data: `imagefolder` (class folders), `arrays` (.npz/.npy), or Python objects
  through `as_array_dataset` (tensors, DataLoaders, map-style datasets).
- Splits: `split_validation`, `class_balanced_subset`, `stratified_split`.
- Loaders: `DeviceLoader` (data on the device), `StreamingLoader` (image files, workers);
  augmentation `random_crop_flip`.
- Files: `download_file`, `verify_file`, `safe_extract`, `restricted_loads`.
"""

from __future__ import annotations

import os
from typing import Any

from robustfair.data.archive import safe_extract
from robustfair.data.augment import apply_crop_flip, crop_flip_params, random_crop_flip
from robustfair.data.dataset import ArrayDataset, DatasetSplits, validate_dataset
from robustfair.data.device_loader import DeviceLoader
from robustfair.data.download import download_file, file_digest, verify_file
from robustfair.data.loading import call_reader, reader_options
from robustfair.data.locate import cache_dir
from robustfair.data.objects import as_array_dataset
from robustfair.data.readers.arrays import load_arrays
from robustfair.data.readers.cifar import load_cifar10, load_cifar100
from robustfair.data.readers.cifar10_jpeg import load_cifar10_jpeg
from robustfair.data.readers.digits import load_digits
from robustfair.data.readers.gaussian import load_gaussian
from robustfair.data.readers.imagefolder import ImageFileIndex, image_folder_index, load_image_folder
from robustfair.data.readers.imagenette import imagenette_indexes, load_imagenette
from robustfair.data.readers.mnist import load_mnist, load_mnist_test_split, read_idx
from robustfair.data.readers.svhn import load_svhn
from robustfair.data.safe_pickle import restricted_loads
from robustfair.data.sources import REMOTE_FILES, RemoteFile
from robustfair.data.splits import class_balanced_subset, split_validation, stratified_split
from robustfair.data.streaming import StreamingLoader
from robustfair.registry import Registry

DATASETS = Registry(
    "dataset",
    {
        "digits": load_digits,
        "gaussian": load_gaussian,
        "mnist": load_mnist,
        "mnist_test_split": load_mnist_test_split,
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "cifar10_jpeg": load_cifar10_jpeg,
        "svhn": load_svhn,
        "imagenette": load_imagenette,
        "imagefolder": load_image_folder,
        "arrays": load_arrays,
    },
)


def load_dataset(
    name: str, root: str | os.PathLike | None = None, download: bool = False, **options: Any
) -> DatasetSplits:
    """Train and test splits of dataset `name`, validated.

    root: directory holding the dataset's files (default: `$ROBUSTFAIR_DATA`, then the cache
    directory). download: fetch missing files (checksummed) into root or the cache.
    options: the reader's keyword options (`reader_options(DATASETS[name])` lists them).
    Raises UnknownNameError, ConfigError (bad option) or DataError (missing or bad data).
    """
    return call_reader(name, DATASETS[name], root, download, options)


__all__ = [
    "ArrayDataset",
    "DatasetSplits",
    "validate_dataset",
    "DATASETS",
    "load_dataset",
    "reader_options",
    "split_validation",
    "class_balanced_subset",
    "stratified_split",
    "DeviceLoader",
    "StreamingLoader",
    "random_crop_flip",
    "crop_flip_params",
    "apply_crop_flip",
    "download_file",
    "verify_file",
    "file_digest",
    "safe_extract",
    "restricted_loads",
    "cache_dir",
    "REMOTE_FILES",
    "RemoteFile",
    "ImageFileIndex",
    "image_folder_index",
    "imagenette_indexes",
    "read_idx",
    "as_array_dataset",
    "load_arrays",
]
