"""Reading the pickled CIFAR batches without running arbitrary code or allocating blindly.

The official CIFAR "python version" batches are pickled dicts of lists, strings and one
NumPy uint8 array. Unpickling normally imports and calls whatever the file names; this
unpickler resolves only the few callables those files need to rebuild a NumPy array
(`numpy.core.multiarray._reconstruct` with `numpy.ndarray` as its class argument,
`numpy.dtype`, and `_codecs.encode` for bytes written under protocol 2, restricted to
latin-1) and refuses every other global with `DataError`.

Memory: an array is rebuilt only the way NumPy pickles it, an empty array filled from
bytes stored in the file, and its declared size (shape x item size) is checked before
anything is allocated: it must match the bytes that come with it and fit in the file.
Calling `numpy.ndarray(shape)` directly, which would allocate any size a 91-byte file
asks for, is refused, as are object arrays.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle
from typing import Any

import numpy as np

from robustfair.errors import DataError

try:  # NumPy >= 2 moved the module; both spellings appear in pickles.
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1":
        raise DataError(f"pickle asks for codec {encoding!r}; only latin-1 is allowed")
    return codecs.encode(text, "latin1", errors)


class _ArrayClass:
    """Stands for `numpy.ndarray` in a pickle: accepted as `_reconstruct`'s class argument, never called."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise DataError(
            "refusing to call numpy.ndarray from a pickle (it would allocate an array of any size the file asks for)"
        )


_ARRAY_CLASS = _ArrayClass()


class _CheckedArray(np.ndarray):
    """An array being rebuilt: its state is checked before NumPy allocates it (then viewed as ndarray)."""

    def __setstate__(self, state: Any) -> None:
        _check_array_state(state, self._pickle_size)
        super().__setstate__(state)


def _check_array_state(state: Any, pickle_size: int) -> None:
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise DataError("pickled array has a malformed state")
    shape, dtype, raw = state[-4], state[-3], state[-1]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise DataError(f"pickled array has an invalid shape {shape!r}")
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise DataError(f"pickled array has dtype {dtype!r}; only plain numeric arrays are allowed")
    declared = math.prod(shape) * dtype.itemsize
    # Python 2 pickles carry the bytes as a str read as latin-1: one character per byte.
    carried = isinstance(raw, (bytes, bytearray, str))
    if not carried or declared != len(raw) or declared > pickle_size:
        got = f"{len(raw):,}" if carried else f"a {type(raw).__name__} instead"
        raise DataError(
            f"pickled array declares shape {shape} of {dtype} ({declared:,} bytes) but carries "
            f"{got} bytes of data in a {pickle_size:,}-byte file"
        )


def _reconstruct_checked(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not _ARRAY_CLASS or tuple(shape) != (0,):
        raise DataError("pickle rebuilds an array in an unusual way; only NumPy's own pickles are allowed")
    return _reconstruct(_CheckedArray, (0,), typecode)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_checked,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_checked,
    ("numpy", "ndarray"): _ARRAY_CLASS,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.size = len(data)

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle {module}.{name}: only plain containers and "
                f"NumPy arrays are allowed in a dataset file"
            ) from None
        if found is _reconstruct_checked:
            size = self.size
            return lambda cls, shape, typecode: _with_size(_reconstruct_checked(cls, shape, typecode), size)
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DataError("refusing to unpickle a persistent id")


def _with_size(array: np.ndarray, size: int) -> np.ndarray:
    array._pickle_size = size
    return array


def _plain(obj: Any) -> Any:
    """The loaded tree with every checked array viewed as a plain ndarray."""
    if isinstance(obj, _CheckedArray):
        return obj.view(np.ndarray)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


def restricted_loads(data: bytes, where: str = "pickled batch") -> Any:
    """Unpickle `data` allowing only builtin containers, scalars, strings and NumPy arrays.

    Python 2 strings are decoded as latin-1 (how NumPy arrays from Python 2 pickles must be
    read), so the CIFAR dict keys come back as `str`. Raises DataError (naming `where`) on
    anything else, on a malformed pickle, and on an array whose declared size does not
    match the data it carries.
    """
    try:
        return _plain(_RestrictedUnpickler(data).load())
    except DataError as err:
        raise DataError(f"{where}: {err}") from None
    except MemoryError:
        raise
    except Exception as err:  # a malformed pickle fails in many ways; report it as bad data
        detail = " ".join(str(err).split())
        raise DataError(f"{where}: cannot read pickled data: {type(err).__name__}: {detail}") from None
