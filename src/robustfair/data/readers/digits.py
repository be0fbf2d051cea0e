"""scikit-learn's bundled 8x8 handwritten digits: the offline default dataset.

1,797 images of 10 digits (UCI "Optical Recognition of Handwritten Digits"), pixel values
0..16 scaled to [0, 1] by /16, shape [N, 1, 8, 8] float32. Fixed stratified split:
450 test images (25%, per-class counts by largest remainder) chosen with `seed` (default
0), 1,347 train images, each split in original order.
"""

from __future__ import annotations

import numpy as np

from robustfair.data.checks import check_int
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.data.splits import stratified_split


def load_digits(root=None, download: bool = False, *, test_size: int = 450, seed: int = 0) -> DatasetSplits:
    """Train/test splits of the scikit-learn digits (no files needed; root/download ignored)."""
    from sklearn.datasets import load_digits as sklearn_digits

    test_size = check_int("test_size", test_size, low=1)
    seed = check_int("seed", seed, low=0)
    bunch = sklearn_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    full = ArrayDataset(
        x,
        np.asarray(bunch.target, dtype=np.int64),
        [str(d) for d in range(10)],
        name="Digits (8x8)",
        info={"source": "sklearn.datasets.load_digits"},
    )
    train, test = stratified_split(full, test_size, seed=seed)
    return DatasetSplits(train, test)
