"""Your data as Python objects -> an in-memory `ArrayDataset`.

`as_array_dataset(data)` accepts:
- a pair `(x, y)` of tensors or NumPy arrays;
- a `torch.utils.data.DataLoader` yielding batches `(x, y)`;
- a map-style dataset (`len()` and `[i] -> (x, y)`), e.g. a `TensorDataset` or a
  torchvision dataset (PIL images are read as uint8 [H, W, C]);
- an `ArrayDataset` (returned as is).

The whole split is read once into memory (robustfair's loaders keep the data on the
device; augmentation is `data.augment`, tensor crop/flip, not the dataset's transforms).
Reading runs under `torch.random.fork_rng`, so a shuffling loader or a random transform
does not move the caller's random stream.

Layouts: tensors are NCHW (torch's convention), uint8 0..255 or float in [0, 1]. NumPy
arrays follow the array reader's convention (`data/readers/arrays.py`): uint8 images NHWC,
float images NCHW; [N, H, W] is one channel; float [N, D] are features.
Labels: integers 0..K-1. Classes: `classes`, else the dataset's `.classes` (a list of
names, as torchvision datasets have), else "0".."K-1" with K = 1 + the largest label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from robustfair.data.dataset import ArrayDataset
from robustfair.errors import DataError

CHANNEL_COUNTS = (1, 3, 4)


def _numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "mode") and hasattr(value, "size") and hasattr(value, "getdata"):  # a PIL image
        return np.asarray(value)
    if isinstance(value, (int, np.integer, float, np.floating)):
        return np.asarray(value)
    raise DataError(f"{what}: expected tensors or NumPy arrays, got {type(value).__name__}")


def image_layout(x: np.ndarray, layout: str, what: str, fix: str = "pass layout={other}") -> np.ndarray:
    """x with images as [N, C, H, W]: layout nhwc, nchw, or auto (uint8 NHWC, float NCHW).

    auto refuses an array whose channel axis is clearly elsewhere (a uint8 [N, 3, 32, 32]),
    naming the layout to pass, rather than guessing.
    """
    if x.ndim == 3:  # [N, H, W] grey images
        return x[:, None]
    if x.ndim != 4:
        return x
    if layout == "auto":
        layout = "nhwc" if x.dtype == np.uint8 else "nchw"
        channel_axis, other_axis, other = (3, 1, "nchw") if layout == "nhwc" else (1, 3, "nhwc")
        if x.shape[channel_axis] not in CHANNEL_COUNTS and x.shape[other_axis] in CHANNEL_COUNTS:
            raise DataError(
                f"{what}: shape {list(x.shape)} looks {other.upper()}, but {x.dtype} images are read as "
                f"{layout.upper()}; {fix.format(other=other)}"
            )
    if layout == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def check_pixels(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 kept; floats as float32 in [0, 1] (DataError naming the range found otherwise)."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{what}: dtype {x.dtype}; expected uint8 images (0..255) or floats in [0, 1]")
    x = x.astype(np.float32, copy=False)
    if x.size:
        if np.isnan(x).any():
            raise DataError(f"{what}: {int(np.isnan(x).sum())} NaN values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            hint = " (divide by 255, or store uint8)" if hi > 1.0 and hi <= 255.0 and lo >= 0.0 else ""
            raise DataError(f"{what}: floats in [{lo:g}, {hi:g}]; inputs must lie in [0, 1]{hint}")
    return x


def check_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    """int64 [n] labels >= 0 (DataError otherwise)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{what}: labels of shape {list(y.shape)} for {n} samples; expected integers [{n}]")
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise DataError(f"{what}: labels of dtype {y.dtype}; expected integer class indices 0..K-1")
    if y.size and int(y.min()) < 0:
        raise DataError(f"{what}: negative label {int(y.min())}; expected class indices 0..K-1")
    return y.astype(np.int64, copy=False)


def _stack(parts: list[np.ndarray], what: str) -> np.ndarray:
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise DataError(f"{what}: samples of different shapes {sorted(shapes)[:3]}; resize them to one shape")
    return np.concatenate(parts)


def _pair(item: Any, what: str) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    if isinstance(item, dict):
        raise DataError(f"{what}: items are dicts (keys {sorted(item)[:4]}); robustfair needs (x, y) pairs")
    raise DataError(
        f"{what}: items must be (x, y) pairs, got {type(item).__name__}"
        + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
    )


def _read(data: Any, what: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x, y, from_tensors): the whole split as arrays; from_tensors tells the layout convention."""
    from torch.utils.data import DataLoader, TensorDataset

    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (tuple, list)):
        return _numpy(data[0], what), _numpy(data[1], what), isinstance(data[0], torch.Tensor)
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise DataError(f"{what}: a TensorDataset of {len(data.tensors)} tensors; expected (x, y)")
        return _numpy(data.tensors[0], what), _numpy(data.tensors[1], what), True
    if isinstance(data, DataLoader):
        xs, ys, tensors = [], [], True
        for batch in data:
            x, y = _pair(batch, what)
            tensors = tensors and isinstance(x, torch.Tensor)
            xs.append(_numpy(x, what))
            ys.append(_numpy(y, what).reshape(-1))
        if not xs:
            raise DataError(f"{what}: the DataLoader yielded no batches")
        return _stack(xs, what), np.concatenate(ys), tensors
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        n = len(data)
        if n == 0:
            raise DataError(f"{what}: the dataset is empty")
        xs, ys, tensors = [], [], True
        for i in range(n):
            x, y = _pair(data[i], what)
            tensors = tensors and isinstance(x, torch.Tensor)
            xs.append(_numpy(x, what)[None])
            ys.append(_numpy(y, what).reshape(-1))
        return _stack(xs, what), np.concatenate(ys), tensors
    raise DataError(
        f"{what}: expected (x, y) tensors or arrays, a DataLoader or a map-style dataset, got {type(data).__name__}"
    )


def as_array_dataset(
    data: Any,
    *,
    classes: Sequence[str] | None = None,
    name: str = "your data",
    what: str = "data",
    layout: str = "auto",
) -> ArrayDataset:
    """The split `data` (see the module docstring) as an ArrayDataset; DataError naming the problem."""
    if isinstance(data, ArrayDataset):
        return data
    with torch.random.fork_rng(devices=[]):
        x, y, from_tensors = _read(data, what)
    if x.ndim < 2:
        raise DataError(f"{what}: x of shape {list(x.shape)}; expected [N, C, H, W] images or [N, D] features")
    x = image_layout(
        x,
        "nchw" if from_tensors and layout == "auto" else layout,
        what,
        fix="give it as a torch tensor (read as NCHW) or transpose the array",
    )
    x = check_pixels(x, what)
    y = check_labels(y, x.shape[0], what)
    if classes is None:
        found = getattr(data, "classes", None)
        if isinstance(found, (list, tuple)) and found and all(isinstance(c, str) for c in found):
            classes = list(found)
    if classes is None:
        classes = [str(k) for k in range(int(y.max()) + 1 if y.size else 0)]
    return ArrayDataset(x, y, list(classes), name=name)


__all__ = ["as_array_dataset", "image_layout", "check_pixels", "check_labels"]
