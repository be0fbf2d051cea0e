"""ArrayDataset, validate_dataset, splits, the registry and the bundled/synthetic datasets."""

import numpy as np
import pytest

from robustfair.data import (
    DATASETS,
    ArrayDataset,
    class_balanced_subset,
    load_dataset,
    reader_options,
    split_validation,
    stratified_split,
    validate_dataset,
)
from robustfair.data.readers.gaussian import gaussian_means
from robustfair.data.splits import stratified_counts
from robustfair.errors import ConfigError, DataError, UnknownNameError


def _images(labels, classes=("a", "b", "c")):
    labels = np.asarray(labels, dtype=np.int64)
    x = np.arange(len(labels) * 4, dtype=np.uint8).reshape(len(labels), 1, 2, 2)
    return ArrayDataset(x, labels, list(classes), name="toy")


def test_array_dataset_basics():
    ds = ArrayDataset(
        np.array([[[[0, 51]]], [[[255, 102]]]], dtype=np.uint8), np.array([1, 0], dtype=np.int32), ["x", "y"], name="t"
    )
    assert len(ds) == 2 and ds.num_classes == 2 and ds.y.dtype == np.int64 and ds.is_image
    f = ds.as_float()
    assert f.dtype == np.float32
    np.testing.assert_allclose(f.reshape(-1), [0.0, 0.2, 1.0, 0.4], atol=1e-7)
    np.testing.assert_array_equal(ds.class_counts(), [1, 1])
    sub = ds.subset([1])
    assert len(sub) == 1 and sub.y.tolist() == [0] and sub.classes == ["x", "y"] and sub.name == "t"
    np.testing.assert_array_equal(sub.class_counts(), [1, 0])
    with pytest.raises(DataError, match="out of range"):
        ds.subset([2])


def test_validate_accepts_good_data():
    validate_dataset(_images([0, 1, 2, 0]))
    validate_dataset(ArrayDataset(np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32), [0, 1], ["a", "b"]))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ArrayDataset(np.array([[0.0], [1.5]], dtype=np.float32), [0, 1], ["a", "b"]), r"\[0, 1\].*1\.5"),
        (lambda: ArrayDataset(np.array([[-0.1], [0.5]], dtype=np.float32), [0, 1], ["a", "b"]), r"-0\.1"),
        (lambda: ArrayDataset(np.array([[0.5], [np.nan]], dtype=np.float32), [0, 1], ["a", "b"]), "NaN.*sample 1"),
        (lambda: _images([0, 1, 3]), r"out of range \[0, 3\).*\[3\]"),
        (lambda: _images([0, -1, 2]), r"out of range"),
        (lambda: _images([0, 0, 2]), r"no samples: \['b'\]"),
        (lambda: ArrayDataset(np.zeros((3, 1, 2, 2), np.uint8), np.array([0, 1]), ["a", "b"]), "mismatched lengths"),
        (lambda: ArrayDataset(np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 1]), ["a", "a"]), "duplicate"),
        (lambda: ArrayDataset(np.zeros((2, 2), np.int32), np.array([0, 1]), ["a", "b"]), "dtype int32"),
    ],
)
def test_validate_rejects(make, message):
    with pytest.raises(DataError, match=message):
        validate_dataset(make())


def test_validate_allows_empty_classes_when_asked():
    validate_dataset(_images([0, 0, 2]), allow_empty_classes=True)


def test_split_validation_last_and_first():
    # classes interleaved: sample i has label i % 3, 5 per class
    ds = _images([i % 3 for i in range(15)])
    train, val = split_validation(ds, 2, position="last")
    np.testing.assert_array_equal(val.class_counts(), [2, 2, 2])
    np.testing.assert_array_equal(train.class_counts(), [3, 3, 3])
    # last two of class 0 are samples 9 and 12; of class 1: 10, 13; of class 2: 11, 14
    np.testing.assert_array_equal(val.x[:, 0, 0, 0], ds.x[[9, 10, 11, 12, 13, 14], 0, 0, 0])
    train_f, val_f = split_validation(ds, 1, position="first")
    np.testing.assert_array_equal(val_f.x[:, 0, 0, 0], ds.x[[0, 1, 2], 0, 0, 0])
    assert len(train_f) == 12
    with pytest.raises(DataError, match="has 5 samples"):
        split_validation(ds, 5)
    with pytest.raises(ConfigError, match="position"):
        split_validation(ds, 1, position="middle")
    with pytest.raises(ConfigError, match="per_class"):
        split_validation(ds, 0)


def test_class_balanced_subset():
    ds = _images([0] * 6 + [1] * 4 + [2] * 5)
    sub = class_balanced_subset(ds, 3, seed=1)
    np.testing.assert_array_equal(sub.class_counts(), [3, 3, 3])
    again = class_balanced_subset(ds, 3, seed=1)
    np.testing.assert_array_equal(sub.x, again.x)
    firsts = {int(v) for v in sub.x[:, 0, 0, 0]}
    assert firsts <= {int(v) for v in ds.x[:, 0, 0, 0]}
    with pytest.raises(DataError, match="has 4 samples"):
        class_balanced_subset(ds, 5)


def test_stratified_counts_largest_remainder():
    mnist_test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # hand-computed: 20% shares 196, 227, 206.4, 202, 196.4, 178.4, 191.6, 205.6, 194.8, 201.8;
    # floors sum to 1996, the 4 leftovers go to remainders .8, .8, .6, .6 (classes 8, 9, 6, 7)
    got = stratified_counts(np.array(mnist_test_counts), 2000)
    assert got.tolist() == [196, 227, 206, 202, 196, 178, 192, 206, 195, 202]
    assert stratified_counts(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]


def test_stratified_split_is_disjoint_and_seeded():
    ds = _images([i % 3 for i in range(30)])
    train, test = stratified_split(ds, 0.3, seed=4)
    assert len(train) == 21 and len(test) == 9
    np.testing.assert_array_equal(test.class_counts(), [3, 3, 3])
    ids = np.concatenate([train.x[:, 0, 0, 0], test.x[:, 0, 0, 0]])
    assert sorted(ids.tolist()) == sorted(ds.x[:, 0, 0, 0].tolist())
    _, test2 = stratified_split(ds, 0.3, seed=4)
    np.testing.assert_array_equal(test.x, test2.x)
    _, test3 = stratified_split(ds, 0.3, seed=5)
    assert not np.array_equal(test.x, test3.x)


def test_registry_and_option_errors():
    assert set(DATASETS) == {
        "digits",
        "gaussian",
        "mnist",
        "mnist_test_split",
        "cifar10",
        "cifar100",
        "cifar10_jpeg",
        "svhn",
        "imagenette",
        "imagefolder",
        "arrays",
    }
    with pytest.raises(UnknownNameError, match="cifar10, cifar100"):
        load_dataset("cifar11")
    with pytest.raises(ConfigError, match="unknown option 'bogus'.*test_size, seed"):
        load_dataset("digits", bogus=1)
    assert reader_options(DATASETS["mnist"]) == ["split_test_only", "test_size", "seed"]


def test_digits_split():
    splits = load_dataset("digits")
    tr, te = splits.train, splits.test
    assert (len(tr), len(te)) == (1347, 450)
    assert tr.x.shape == (1347, 1, 8, 8) and tr.x.dtype == np.float32
    assert tr.x.min() == 0.0 and tr.x.max() == 1.0
    # sklearn's per-class totals 178 182 177 183 181 182 181 179 174 180, 25% test by largest remainder
    np.testing.assert_array_equal(
        te.class_counts() + tr.class_counts(), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )
    np.testing.assert_array_equal(
        te.class_counts(), stratified_counts(np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]), 450)
    )
    again = load_dataset("digits")
    np.testing.assert_array_equal(te.x, again.test.x)
    # values are k/16
    np.testing.assert_array_equal(np.round(tr.x * 16), tr.x * 16)


def test_gaussian_mixture_definition():
    splits = load_dataset(
        "gaussian",
        num_classes=2,
        dim=4,
        n_per_class=4000,
        n_test_per_class=10,
        std=0.5,
        std_ratio=3.0,
        separation=1.0,
        seed=3,
    )
    tr = splits.train
    assert tr.x.shape == (8000, 4) and tr.x.dtype == np.float32 and tr.y.tolist()[:1] == [0]
    np.testing.assert_array_equal(tr.class_counts(), [4000, 4000])
    scale = tr.info["affine_scale"]
    # bound = 1 + 4 * 1.5 = 7, so scale = 1 / 14
    assert scale == pytest.approx(1 / 14)
    feats = (tr.x.astype(np.float64) - 0.5) / scale
    for k, (mean, std) in enumerate([(-1.0, 0.5), (1.0, 1.5)]):
        part = feats[tr.y == k]
        assert part.mean() == pytest.approx(mean, abs=0.05)
        assert part.std() == pytest.approx(std, rel=0.05)
    same = load_dataset(
        "gaussian",
        num_classes=2,
        dim=4,
        n_per_class=4000,
        n_test_per_class=10,
        std=0.5,
        std_ratio=3.0,
        separation=1.0,
        seed=3,
    )
    np.testing.assert_array_equal(tr.x, same.train.x)


def test_gaussian_many_classes_and_errors():
    means = gaussian_means(3, 4, 2.0)
    np.testing.assert_allclose(means, 2.0 * 2.0 * np.eye(3, 4))
    splits = load_dataset("gaussian", num_classes=3, dim=4, n_per_class=5, n_test_per_class=5, stds=[1, 2, 3])
    assert splits.train.info["stds"] == [1.0, 2.0, 3.0] and splits.num_classes == 3
    with pytest.raises(ConfigError, match="dim"):
        load_dataset("gaussian", num_classes=5, dim=3)
    with pytest.raises(ConfigError, match="stds"):
        load_dataset("gaussian", num_classes=3, stds=[1, 2])
    with pytest.raises(ConfigError, match="std_ratio"):
        load_dataset("gaussian", std_ratio=0)
