"""A synthetic K-class Gaussian mixture whose classes differ in variance.

Xu et al. 2021, "To be Robust or to be Fair: Towards Fairness in Adversarial Training",
Section 2.2: with two classes N(-theta, sigma_0^2 I) and N(+theta, sigma_1^2 I),
theta = (eta, ..., eta) and sigma_1 : sigma_0 = K : 1, the robust optimal classifier
leaves the high-variance class with a larger robust error, even on balanced data.

Definition (float64, then float32):
- K = 2: means mu_0 = -separation * 1, mu_1 = +separation * 1 (the paper's eta).
- K > 2: mu_k = separation * sqrt(dim) * e_k (needs dim >= K; same norm as K = 2).
- stds: the list `stds` if given, else std * std_ratio ** (k / (K - 1)), so class 0 has
  `std` and the last class `std * std_ratio`.
- Features are mapped into [0, 1] by x01 = clip(0.5 + x / (2 * bound), 0, 1) with
  bound = max_k |mu_k|_inf + 4 * max_k std_k, so attacks in [0, 1] still apply; an eps in
  [0, 1] units is eps / info["affine_scale"] in feature units.
Samples: one `numpy.random.default_rng(seed)` draws the train split then the test split,
class by class; deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustfair.data.checks import check_float, check_int
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.errors import ConfigError


def gaussian_means(num_classes: int, dim: int, separation: float) -> np.ndarray:
    """float64 [K, dim] class means as defined in the module docstring."""
    if num_classes == 2:
        return np.stack([-separation * np.ones(dim), separation * np.ones(dim)])
    if dim < num_classes:
        raise ConfigError(f"dim: {dim} is out of range; with {num_classes} classes dim must be >= {num_classes}")
    return separation * np.sqrt(dim) * np.eye(num_classes, dim)


def load_gaussian(
    root=None,
    download: bool = False,
    *,
    num_classes: int = 2,
    dim: int = 10,
    n_per_class: int = 500,
    n_test_per_class: int = 500,
    std: float = 1.0,
    std_ratio: float = 2.0,
    stds: Sequence[float] | None = None,
    separation: float = 1.0,
    seed: int = 0,
) -> DatasetSplits:
    """Train/test splits of the Gaussian mixture (root/download ignored); x float32 [N, dim]."""
    num_classes = check_int("num_classes", num_classes, low=2)
    dim = check_int("dim", dim, low=1)
    n_train = check_int("n_per_class", n_per_class, low=1)
    n_test = check_int("n_test_per_class", n_test_per_class, low=1)
    separation = check_float("separation", separation, low=0.0)
    seed = check_int("seed", seed, low=0)
    if stds is None:
        std = check_float("std", std, low=0.0, low_open=True)
        ratio = check_float("std_ratio", std_ratio, low=0.0, low_open=True)
        class_stds = std * ratio ** (np.arange(num_classes) / (num_classes - 1))
    else:
        if len(stds) != num_classes:
            raise ConfigError(f"stds: {len(stds)} values given for {num_classes} classes")
        class_stds = np.array([check_float(f"stds[{i}]", s, low=0.0, low_open=True) for i, s in enumerate(stds)])
    means = gaussian_means(num_classes, dim, separation)
    bound = float(np.abs(means).max() + 4.0 * class_stds.max())
    rng = np.random.default_rng(seed)

    def draw(n: int, split: str) -> ArrayDataset:
        feats = [means[k] + class_stds[k] * rng.standard_normal((n, dim)) for k in range(num_classes)]
        x = np.clip(0.5 + np.concatenate(feats) / (2.0 * bound), 0.0, 1.0).astype(np.float32)
        y = np.repeat(np.arange(num_classes, dtype=np.int64), n)
        info = {
            "split": split,
            "affine_scale": 1.0 / (2.0 * bound),
            "affine_offset": 0.5,
            "stds": class_stds.tolist(),
            "separation": separation,
            "seed": seed,
        }
        return ArrayDataset(x, y, [f"class{k}" for k in range(num_classes)], name="Gaussian mixture", info=info)

    return DatasetSplits(draw(n_train, "train"), draw(n_test, "test"))
