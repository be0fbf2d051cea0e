"""Your own data: the `arrays` reader (.npz/.npy, never unpickling), image folders with
per-class validation and balanced test subsets, and `robustfair list datasets`."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from robustfair.cli import main
from robustfair.data import load_dataset
from robustfair.errors import ConfigError, DataError

TINY = [
    "train.epochs=2",
    "data.train_per_class=6",
    "data.val_per_class=2",
    "data.test_per_class=3",
    "train.batch_size=30",
    "method.steps=2",
    "eval.sanity_checks=false",
    "model.name=mlp",
]
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def nhwc_uint8(x: np.ndarray) -> np.ndarray:
    """float NCHW [0, 1] -> uint8 NHWC, the layout image code writes."""
    return np.round(x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)


def test_an_array_dataset_trains_and_evaluates(tmp_path, digits):
    data = tmp_path / "mydata"
    data.mkdir()
    np.savez(data / "train.npz", x=nhwc_uint8(digits.train.x), y=digits.train.y, classes=np.array(NAMES))
    np.savez(data / "test.npz", x=nhwc_uint8(digits.test.x), y=digits.test.y)
    run = tmp_path / "run"
    code, _, err = run_cli(
        ["train", "digits_pgd_at", "data.name=arrays", f"data.root={data}", *TINY, "--run-dir", run, "--quiet"]
    )
    assert code == 0, err
    results = json.loads((run / "results.json").read_text())
    assert results["classes"] == NAMES and results["per_class"]["count"] == [3] * 10  # balanced test subset
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(len(line["val"]["robust_acc"]) == 10 for line in lines)  # per-class validation
    code, _, err = run_cli(["eval", run, "--attack", "pgd10", "--json", tmp_path / "e.json"])
    assert code == 0, err
    assert json.loads((tmp_path / "e.json").read_text())["classes"] == NAMES


def test_layouts_and_files(tmp_path, digits):
    x = digits.train.x[:100]  # float NCHW in [0, 1]
    y = digits.train.y[:100]
    np.savez(tmp_path / "float.npz", x=x, y=y)
    np.savez(tmp_path / "uint8.npz", x=nhwc_uint8(x), y=y)
    np.savez(tmp_path / "grey.npz", x=nhwc_uint8(x)[..., 0], y=y)
    np.save(tmp_path / "x.npy", x.reshape(100, -1))
    np.save(tmp_path / "y.npy", y.astype(np.int32))
    np.savez(tmp_path / "nchw_uint8.npz", x=np.round(x * 255).astype(np.uint8), y=y)
    float_splits = load_dataset("arrays", root=tmp_path, train="float.npz", test="float.npz")
    uint8_splits = load_dataset("arrays", root=tmp_path, train="uint8.npz", test="uint8.npz")
    grey = load_dataset("arrays", root=tmp_path, train="grey.npz", test="grey.npz").train
    assert float_splits.train.x.dtype == np.float32 and float_splits.train.x.shape == (100, 1, 8, 8)
    assert uint8_splits.train.x.dtype == np.uint8 and uint8_splits.train.x.shape == (100, 1, 8, 8)
    np.testing.assert_allclose(uint8_splits.train.as_float(), x, atol=0.5 / 255 + 1e-7)
    np.testing.assert_array_equal(grey.x, uint8_splits.train.x)
    explicit = load_dataset("arrays", root=tmp_path, train="nchw_uint8.npz", test="nchw_uint8.npz", layout="nchw")
    np.testing.assert_array_equal(explicit.train.x, uint8_splits.train.x)
    features = load_dataset(
        "arrays", root=tmp_path, train="x.npy", train_labels="y.npy", test_size=0.2, seed=1, classes=NAMES
    )
    assert features.train.x.shape == (80, 64) and len(features.test) == 20
    assert features.train.y.dtype == np.int64 and features.classes == NAMES
    assert float_splits.classes == [str(k) for k in range(10)]


def test_bad_arrays_are_one_line_errors(tmp_path, digits):
    x, y = digits.train.x[:20], digits.train.y[:20]
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x, y=y)
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "objclasses.npz", x=x, y=y, classes=np.array(NAMES, dtype=object))
    np.savez(tmp_path / "scaled.npz", x=x * 255, y=y)
    np.savez(tmp_path / "nchw.npz", x=np.round(x * 255).astype(np.uint8), y=y)
    np.savez(tmp_path / "keys.npz", images=x, labels=y)
    np.savez(tmp_path / "floaty.npz", x=x, y=y.astype(np.float32))
    cases = [
        (dict(train="objects.npy", train_labels="objects.npy"), DataError, r"holds Python objects \(a pickle\)"),
        (dict(train="objclasses.npz"), DataError, r"holds Python objects \(a pickle\)"),
        (dict(train="scaled.npz"), DataError, r"floats in \[0, 255\]; inputs must lie in \[0, 1\] \(divide by 255"),
        (
            dict(train="nchw.npz"),
            DataError,
            "looks NCHW, but uint8 images are read as NHWC; set data.options.layout=nchw",
        ),
        (dict(train="keys.npz"), DataError, "has no array 'x'; it holds: images, labels"),
        (dict(train="floaty.npz"), DataError, "labels of dtype float32"),
        (dict(train="nope.npz"), DataError, "train file .* not found"),
        (dict(train="x.npy"), DataError, "not found"),
        (dict(test_size=5, test="test.npz"), ConfigError, "either a test file or test_size"),
        (dict(classes=["a", "b"]), DataError, "label 9 but only 2 class names"),
        (dict(layout="hwc"), ConfigError, "layout: 'hwc' is not allowed"),
    ]
    for options, error, match in cases:
        with pytest.raises(error, match=match) as err:
            load_dataset("arrays", root=tmp_path, **options)
        assert "\n" not in str(err.value)
    keyed = load_dataset("arrays", root=tmp_path, train="keys.npz", test="keys.npz", x_key="images", y_key="labels")
    assert len(keyed.train) == 20
    code, _, err = run_cli(
        [
            "train",
            "digits_erm",
            "data.name=arrays",
            f"data.root={tmp_path}",
            "data.options.train=objects.npy",
            "data.options.train_labels=objects.npy",
        ]
    )
    assert code == 2 and err.count("\n") == 1 and "never loads" in err


def test_image_folder_with_validation_split_and_balanced_test_subset(tmp_path, digits):
    from PIL import Image

    for split, ds, per_class in (("train", digits.train, 8), ("test", digits.test, 4)):
        for c in range(3):
            folder = tmp_path / "images" / split / NAMES[c]
            folder.mkdir(parents=True)
            for i, image in enumerate(nhwc_uint8(ds.x[ds.y == c][:per_class])):
                Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
    run = tmp_path / "run"
    code, _, err = run_cli(
        [
            "train",
            "digits_pgd_at",
            "data.name=imagefolder",
            f"data.root={tmp_path / 'images'}",
            "data.options.channels=1",
            "data.options.cache=false",
            "data.val_per_class=2",
            "data.test_per_class=3",
            "train.epochs=1",
            "method.steps=2",
            "eval.sanity_checks=false",
            "model.name=mlp",
            "--run-dir",
            run,
            "--quiet",
        ]
    )
    assert code == 0, err
    results = json.loads((run / "results.json").read_text())
    assert results["classes"] == sorted(NAMES[:3])  # label order: the sorted folder names
    assert results["per_class"]["count"] == [3, 3, 3]
    assert len(json.loads((run / "metrics.jsonl").read_text())["val"]["robust_acc"]) == 3


def test_list_datasets_shows_each_datasets_options():
    code, out, _ = run_cli(["list", "datasets"])
    assert code == 0
    lines = out.splitlines()
    arrays = lines.index(next(line for line in lines if line.startswith("  arrays:")))
    assert "train='train.npz'" in lines[arrays + 1] and "layout='auto'" in lines[arrays + 1]
    assert any(line.startswith("  digits:") for line in lines)
    assert "options: test_size=450, seed=0" in out
    code, out, _ = run_cli(["list", "models"])
    assert code == 0 and "wide_resnet: options: depth=34, widen_factor=10, dropout=0.0" in out
    assert "package.module:factory" in out
