"""Your own arrays: `.npz` or `.npy` files of images or features with integer labels.

Files, relative to `root` (`data.root`; the current directory when unset) unless absolute:
- `train` (default `train.npz`) and `test` (default `test.npz`): an `.npz` holding arrays
  `x` and `y` (names `x_key`, `y_key`) and optionally `classes`; or an `.npy` of x, with
  the labels in the `.npy` named by `train_labels` / `test_labels`.
- No test file: `test_size` (a count or a fraction) carves a seeded class-stratified test
  split out of train (`stratified_split`).

x: uint8 images [N, H, W, C] (NHWC, as image libraries and NumPy code write them) or
[N, H, W] (one channel); float images [N, C, H, W] (NCHW, as torch tensors) in [0, 1]; or
float features [N, D] in [0, 1]. `layout: nhwc | nchw` overrides the convention; an array
that plainly has its channels elsewhere is refused with the layout to pass, not guessed.
y: integer class indices 0..K-1 [N]. Class names: the `classes` option, else a string
array `classes` in the train `.npz`, else "0".."K-1".
Validation splits and class-balanced test subsets come from the run's `data.val_per_class`
and `data.test_per_class`, as for every dataset.

Every file is read with `allow_pickle=False`: an object array (a pickle, which could run
code) is refused with a one-line `DataError`, never loaded.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robustfair.data.checks import check_choice, check_float, check_int
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.data.objects import check_labels, check_pixels, image_layout
from robustfair.data.splits import stratified_split
from robustfair.errors import ConfigError, DataError

LAYOUTS = ("auto", "nhwc", "nchw")


def _path(root: Path, name: str, field: str) -> Path:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{field}: expected a file name, got {name!r}")
    path = Path(name).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DataError(
            f"arrays: {field} file {str(path)!r} not found (set data.root to its directory, or "
            f"data.options.{field} to its path)"
        )
    return path


def _load(path: Path, key: str | None = None) -> np.ndarray:
    """One array of an .npy, or array `key` of an .npz; never unpickles."""
    try:
        if path.suffix == ".npz" or zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as archive:
                if key not in archive.files:
                    held = ", ".join(archive.files) or "none"
                    raise DataError(
                        f"{str(path)!r} has no array {key!r}; it holds: {held} (pass x_key / y_key to name yours)"
                    )
                return archive[key]
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise DataError(
                f"{str(path)!r}{' array ' + repr(key) if key else ''} holds Python objects (a pickle), "
                "which robustfair never loads: store numbers (and class names as np.array(names), "
                "a string array)"
            ) from None
        raise DataError(f"{str(path)!r} is not a readable NumPy file: {str(err).splitlines()[0]}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(
            f"{str(path)!r} is not a readable NumPy file: {str(err).splitlines()[0] or type(err).__name__}"
        ) from None


def _class_names(path: Path) -> list[str] | None:
    if path.suffix != ".npz" and not zipfile.is_zipfile(path):
        return None
    with np.load(path, allow_pickle=False) as archive:
        if "classes" not in archive.files:
            return None
    names = _load(path, "classes")
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(
            f"{str(path)!r}: 'classes' must be a 1-D string array (np.array(names)), got "
            f"{names.dtype} {list(names.shape)}"
        )
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]


def read_split(path: Path, labels: Path | None, *, x_key: str, y_key: str, layout: str, split: str) -> tuple:
    """(x uint8 [N, C, H, W] or float32 [N, ...] in [0, 1], y int64 [N]) of one file (pair)."""
    what = f"arrays {split} ({path.name})"
    is_npz = path.suffix == ".npz" or zipfile.is_zipfile(path)
    if is_npz and labels is not None:
        raise ConfigError(f"arrays: {split}_labels is for an .npy of x; {path.name!r} is an .npz holding both")
    if not is_npz:
        if labels is None:
            raise ConfigError(
                f"arrays: {split} {path.name!r} is an .npy of x; name its labels file with data.options.{split}_labels"
            )
        x, y = _load(path), _load(labels)
    else:
        x, y = _load(path, x_key), _load(path, y_key)
    if x.ndim < 2:
        raise DataError(f"{what}: x of shape {list(x.shape)}; expected images or [N, D] features")
    x = check_pixels(image_layout(x, layout, what, fix="set data.options.layout={other}"), what)
    return x, check_labels(y, x.shape[0], what)


def load_arrays(
    root=None,
    download: bool = False,
    *,
    train: str = "train.npz",
    test: str | None = None,
    train_labels: str | None = None,
    test_labels: str | None = None,
    classes: Sequence[str] | None = None,
    x_key: str = "x",
    y_key: str = "y",
    layout: str = "auto",
    test_size: int | float | None = None,
    seed: int = 0,
    name: str | None = None,
) -> DatasetSplits:
    """Your own .npz/.npy arrays in data.root: uint8 NHWC or float NCHW images in [0, 1], integer labels.

    `test` defaults to test.npz; `test_size` splits train instead. See the module docstring.
    """
    if download:
        raise DataError("arrays: nothing to download; pass data.root=<directory of your .npz/.npy files>")
    check_choice("layout", layout, LAYOUTS)
    seed = check_int("seed", seed, low=0)
    base = Path(root).expanduser() if root is not None else Path.cwd()
    train_path = _path(base, train, "train")
    x, y = read_split(
        train_path,
        _path(base, train_labels, "train_labels") if train_labels else None,
        x_key=x_key,
        y_key=y_key,
        layout=layout,
        split="train",
    )
    if test_size is not None:
        if test is not None or test_labels is not None:
            raise ConfigError("arrays: give either a test file or test_size (a split of train), not both")
        if isinstance(test_size, float):
            check_float("test_size", test_size, low=0.0, low_open=True)
        else:
            check_int("test_size", test_size, low=1)
        tx = ty = None
    else:
        test_path = _path(base, test or "test.npz", "test")
        tx, ty = read_split(
            test_path,
            _path(base, test_labels, "test_labels") if test_labels else None,
            x_key=x_key,
            y_key=y_key,
            layout=layout,
            split="test",
        )
        if tx.shape[1:] != x.shape[1:] or tx.dtype != x.dtype:
            raise DataError(
                f"arrays: test samples are {tx.dtype} {list(tx.shape[1:])} but train samples are "
                f"{x.dtype} {list(x.shape[1:])}"
            )
    names = list(classes) if classes is not None else _class_names(train_path)
    largest = int(max(y.max(initial=0), ty.max(initial=0) if ty is not None else 0))
    if names is None:
        names = [str(k) for k in range(largest + 1)]
    elif largest >= len(names):
        raise DataError(f"arrays: label {largest} but only {len(names)} class names {names[:5]}")
    label = name or (base.name if root is not None else train_path.stem) or "arrays"
    info = {"train_file": str(train_path)}
    full = ArrayDataset(x, y, names, name=label, info=dict(info, split="train"))
    if tx is None:
        train_split, test_split = stratified_split(full, test_size, seed=seed)
        return DatasetSplits(train_split, test_split)
    return DatasetSplits(full, ArrayDataset(tx, ty, names, name=label, info=dict(info, split="test")))
