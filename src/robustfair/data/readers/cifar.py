"""CIFAR-10 and CIFAR-100 from the official "python version" tarballs
(Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images").

Reads `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` member by member without
extracting (or an already extracted `cifar-10-batches-py/` / `cifar-100-python/`
directory). The batches are pickled dicts; they are read with `restricted_loads`, which
rebuilds NumPy arrays and plain containers only and never runs code from the file.
Images come out uint8 [N, 3, 32, 32] in the files' order.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robustfair.data.archive import ARCHIVE_ERRORS, damaged_archive
from robustfair.data.checks import check_choice, check_labels
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.data.locate import locate_file, search_dirs
from robustfair.data.safe_pickle import restricted_loads
from robustfair.data.sources import REMOTE_FILES
from robustfair.errors import DataError

_MAX_MEMBER_BYTES = 2**30  # the largest official batch (CIFAR-100 train) is about 155 MB

_LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "name": "CIFAR-10",
        "meta": "batches.meta",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "name": "CIFAR-100",
        "meta": "meta",
        "train": ["train"],
        "test": ["test"],
    },
}


def _member_reader(dataset: str, root, download: bool) -> tuple[Callable[[str], bytes], str]:
    """A function member name -> bytes, over the extracted folder or the tarball."""
    layout = _LAYOUT[dataset]
    folder = layout["folder"]
    for d in search_dirs(root, dataset):
        if (d / folder).is_dir():
            base = d / folder
            return lambda member, base=base: _read_plain(base / member), str(base)
    archive = locate_file(REMOTE_FILES[dataset], dataset=dataset, root=root, download=download)
    wanted = [layout["meta"], *layout["train"], *layout["test"]]
    members = _read_from_tar(archive, {f"{folder}/{m}": m for m in wanted})
    return members.__getitem__, str(archive)


def _read_plain(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: batch file missing")
    return path.read_bytes()


def _read_from_tar(archive: Path, wanted: dict[str, str]) -> dict[str, bytes]:
    """{short name: bytes} of the regular-file members named in `wanted`, in one pass."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                short = wanted.get(info.name.removeprefix("./"))
                if short is None:
                    continue
                if not info.isfile():
                    raise DataError(f"{archive}: member {info.name!r} is not a regular file")
                if info.size > _MAX_MEMBER_BYTES:
                    raise DataError(
                        f"{archive}: member {info.name!r} declares {info.size:,} bytes, more than any "
                        f"CIFAR batch ({_MAX_MEMBER_BYTES:,}); refused"
                    )
                with tar.extractfile(info) as stream:
                    found[short] = stream.read()
    except ARCHIVE_ERRORS as err:
        raise damaged_archive(archive, err) from None
    except OSError as err:
        if err.errno is not None:
            raise
        raise damaged_archive(archive, err) from None
    missing = sorted(set(wanted) - {k for k, v in wanted.items() if v in found})
    if missing:
        raise DataError(f"{archive}: members missing: {missing}")
    return found


def _as_str_keys(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: Any, where: str) -> list[str]:
    if not isinstance(values, (list, tuple)) or not values:
        raise DataError(f"{where}: class names must be a non-empty list")
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def _read_batches(
    read: Callable[[str], bytes], members: list[str], label_key: str, where: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for member in members:
        batch = _as_str_keys(restricted_loads(read(member), f"{where}/{member}"), f"{where}/{member}")
        data, labels = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{where}/{member}: 'data' must be a uint8 [N, 3072] array")
        if labels is None:
            raise DataError(f"{where}/{member}: no {label_key!r} entry")
        labels = check_labels(labels, f"{where}/{member} ({label_key!r})", num_classes)
        if labels.shape != (data.shape[0],):
            raise DataError(f"{where}/{member}: {labels.shape[0]} labels for {data.shape[0]} images")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _load(dataset: str, root, download: bool, label_key: str, names_key: str, display: str) -> DatasetSplits:
    layout = _LAYOUT[dataset]
    read, where = _member_reader(dataset, root, download)
    meta_where = f"{where}/{layout['meta']}"
    meta = _as_str_keys(restricted_loads(read(layout["meta"]), meta_where), meta_where)
    classes = _names(meta.get(names_key), meta_where)
    splits = []
    for split in ("train", "test"):
        x, y = _read_batches(read, layout[split], label_key, where, len(classes))
        splits.append(ArrayDataset(x, y, classes, name=display, info={"split": split, "source": where}))
    return DatasetSplits(*splits)


def load_cifar10(root=None, download: bool = False) -> DatasetSplits:
    """CIFAR-10: 50,000 train / 10,000 test, 10 classes."""
    return _load("cifar10", root, download, "labels", "label_names", "CIFAR-10")


def load_cifar100(root=None, download: bool = False, *, label_mode: str = "fine") -> DatasetSplits:
    """CIFAR-100: 50,000 train / 10,000 test; label_mode "fine" (100 classes) or "coarse" (20)."""
    check_choice("label_mode", label_mode, ("fine", "coarse"))
    display = "CIFAR-100" if label_mode == "fine" else "CIFAR-100 (coarse)"
    return _load("cifar100", root, download, f"{label_mode}_labels", f"{label_mode}_label_names", display)
