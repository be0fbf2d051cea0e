"""Reading the pickled CIFAR batches without running arbitrary code.

The official CIFAR "python version" batches are pickled dicts of lists, strings and one
NumPy uint8 array. Unpickling normally imports and calls whatever the file names; this
unpickler resolves only the few callables those files need to rebuild a NumPy array
(`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`, and
`_codecs.encode` for bytes written under protocol 2, restricted to latin-1) and refuses
every other global with `DataError`.
"""

from __future__ import annotations

import codecs
import io
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


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: only plain containers and "
                            f"NumPy arrays are allowed in a dataset file") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError("refusing to unpickle a persistent id")


def restricted_loads(data: bytes) -> Any:
    """Unpickle `data` allowing only builtin containers, scalars, strings and NumPy arrays.

    Python 2 strings are decoded as latin-1 (how NumPy arrays from Python 2 pickles must be
    read), so the CIFAR dict keys come back as `str`. Raises DataError on anything else.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError:
        raise
    except Exception as err:  # a malformed pickle fails in many ways; report it as bad data
        raise DataError(f"cannot read pickled batch: {type(err).__name__}: {err}") from None
