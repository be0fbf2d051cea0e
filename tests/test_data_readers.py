"""Each reader on data written by the test in the real on-disk format."""

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from robustfair.data import load_dataset, read_idx, restricted_loads
from robustfair.data.readers.imagefolder import image_folder_index
from robustfair.errors import ChecksumError, DataError


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("ROBUSTFAIR_CACHE", str(path))
    monkeypatch.delenv("ROBUSTFAIR_DATA", raising=False)
    return path


# ---------------------------------------------------------------- MNIST (IDX)


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist(directory, prefix, images, labels, *, gz=True, name_prefix=""):
    kinds = {"images": ("idx3", images), "labels": ("idx1", labels)}
    for kind, (idx, arr) in kinds.items():
        name = f"{name_prefix}{prefix}-{kind}-{idx}-ubyte" + (".gz" if gz else "")
        data = idx_bytes(arr)
        (directory / name).write_bytes(gzip.compress(data) if gz else data)


def _mnist_like(n_per_class, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10, dtype=np.uint8), n_per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    return images, labels


def test_mnist_idx_gz_and_plain(tmp_path):
    train_x, train_y = _mnist_like(3, 0)
    test_x, test_y = _mnist_like(2, 1)
    write_mnist(tmp_path, "train", train_x, train_y, gz=True)
    write_mnist(tmp_path, "t10k", test_x, test_y, gz=False, name_prefix="mnist-")
    splits = load_dataset("mnist", root=tmp_path)
    assert splits.train.x.shape == (30, 1, 28, 28) and splits.train.x.dtype == np.uint8
    np.testing.assert_array_equal(splits.train.x[:, 0], train_x)
    np.testing.assert_array_equal(splits.test.y, test_y.astype(np.int64))
    assert splits.classes == [str(d) for d in range(10)]


def test_mnist_test_split_only_needs_t10k(tmp_path):
    x, y = _mnist_like(20, 2)  # 200 images
    write_mnist(tmp_path, "t10k", x, y)
    with pytest.raises(DataError, match="split_test_only=True"):
        load_dataset("mnist", root=tmp_path)
    splits = load_dataset("mnist", root=tmp_path, split_test_only=True, test_size=40, seed=0)
    assert (len(splits.train), len(splits.test)) == (160, 40)
    np.testing.assert_array_equal(splits.test.class_counts(), [4] * 10)
    same = load_dataset("mnist_test_split", root=tmp_path, test_size=40, seed=0)
    np.testing.assert_array_equal(same.test.x, splits.test.x)
    # the union of both splits is the test file (as multisets of rows)
    rows = np.concatenate([splits.train.x, splits.test.x]).reshape(200, -1)
    assert sorted(map(bytes, rows)) == sorted(map(bytes, x.reshape(200, -1)))


def test_read_idx_rejects_bad_files(tmp_path):
    good = idx_bytes(np.zeros((2, 3), np.uint8))
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(DataError, match="5 bytes, shape \\(2, 3\\) needs 6"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x01" + good[4:])
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "magic")


# ---------------------------------------------------------------- CIFAR (pickled batches in a tarball)


def _cifar_batch(n, label_key, seed, n_classes):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, n_classes, n).tolist()
    labels[:n_classes] = list(range(n_classes))  # every class present
    return {b"batch_label": b"test", label_key: labels, b"data": data, b"filenames": [b"f%d.png" % i for i in range(n)]}


class _Python2StylePickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (SHORT_BINSTRING/BINSTRING), like the original batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _dump(obj, python2_style=False):
    if not python2_style:
        return pickle.dumps(obj, protocol=2)  # bytes go through _codecs.encode
    buf = io.BytesIO()
    _Python2StylePickler(buf, protocol=2).dump(obj)
    # NumPy 1.x (and the original files) name the reconstructor numpy.core.multiarray
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_cifar10(directory, n=12):
    batches = {f"data_batch_{i}": _cifar_batch(n, b"labels", i, 10) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(n, b"labels", 9, 10)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
        _add(
            tar,
            "cifar-10-batches-py/batches.meta",
            _dump({b"label_names": [s.encode() for s in names], b"num_vis": 3072}, python2_style=True),
        )
        for i, (name, batch) in enumerate(batches.items()):
            _add(tar, f"cifar-10-batches-py/{name}", _dump(batch, python2_style=i % 2 == 0))
    return batches, names


def test_cifar10_tarball(tmp_path):
    batches, names = write_cifar10(tmp_path)
    splits = load_dataset("cifar10", root=tmp_path)
    assert splits.classes == names and splits.train.name == "CIFAR-10"
    assert splits.train.x.shape == (60, 3, 32, 32) and splits.test.x.shape == (12, 3, 32, 32)
    b2 = batches["data_batch_2"]
    # image 3 of batch 2 is train sample 12 + 3; channel G starts at byte 1024, pixel (5, 7)
    assert splits.train.x[15, 1, 5, 7] == b2[b"data"][3, 1024 + 5 * 32 + 7]
    assert splits.train.y[15] == b2[b"labels"][3]
    np.testing.assert_array_equal(splits.test.y, batches["test_batch"][b"labels"])


def test_cifar10_extracted_folder(tmp_path):
    write_cifar10(tmp_path)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path / "ex", filter="data")
    from_tar = load_dataset("cifar10", root=tmp_path)
    from_dir = load_dataset("cifar10", root=tmp_path / "ex")
    np.testing.assert_array_equal(from_tar.train.x, from_dir.train.x)


def test_cifar100_fine_and_coarse(tmp_path):
    train = _cifar_batch(120, b"fine_labels", 1, 100)
    train[b"coarse_labels"] = [v // 5 for v in train[b"fine_labels"]]
    test = _cifar_batch(100, b"fine_labels", 2, 100)
    test[b"coarse_labels"] = [v // 5 for v in test[b"fine_labels"]]
    meta = {
        b"fine_label_names": [b"c%d" % i for i in range(100)],
        b"coarse_label_names": [b"s%d" % i for i in range(20)],
    }
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        for name, obj in (("meta", meta), ("train", train), ("test", test)):
            _add(tar, f"cifar-100-python/{name}", _dump(obj))
    fine = load_dataset("cifar100", root=tmp_path)
    assert fine.num_classes == 100 and fine.classes[7] == "c7"
    coarse = load_dataset("cifar100", root=tmp_path, label_mode="coarse")
    assert coarse.num_classes == 20
    np.testing.assert_array_equal(coarse.train.y, fine.train.y // 5)


class _Exploit:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_restricted_unpickler_refuses_code(tmp_path):
    with pytest.raises(DataError, match=r"refusing to unpickle (__builtin__|builtins)\.eval"):
        restricted_loads(pickle.dumps({"data": _Exploit()}, protocol=2))
    with pytest.raises(DataError, match="refusing to unpickle"):
        restricted_loads(pickle.dumps(os.getcwd, protocol=2))
    ok = restricted_loads(_dump({b"data": np.arange(4, dtype=np.uint8)}, python2_style=True))
    assert b"numpy.core.multiarray" in _dump({b"d": np.zeros(1)}, python2_style=True)
    np.testing.assert_array_equal(ok["data"], [0, 1, 2, 3])  # Python 2 str keys come back as str
    # a malicious batch inside a CIFAR tarball is refused, not run
    batch = _cifar_batch(12, b"labels", 0, 10)
    batch[b"filenames"] = _Exploit()
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/batches.meta", _dump({b"label_names": [b"a"] * 10}))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            _add(tar, f"cifar-10-batches-py/{name}", _dump(batch))
    with pytest.raises(DataError, match="refusing"):
        load_dataset("cifar10", root=tmp_path)


# ---------------------------------------------------------------- SVHN (.mat)


def test_svhn_mat(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    n = 20
    X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # labels 1..10, 10 = digit 0
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": X, "y": y})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X[..., :10], "y": y[:10]})
    splits = load_dataset("svhn", root=tmp_path)
    assert splits.train.x.shape == (20, 3, 32, 32)
    assert splits.train.y[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert splits.train.x[4, 2, 10, 3] == X[10, 3, 2, 4]


# ---------------------------------------------------------------- image folders (PNG)


def _png(path, pixels):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_folder(root, classes=("cat", "dog"), per_class=3, shape=(6, 6), seed=0):
    rng = np.random.default_rng(seed)
    written = {}
    for c in classes:
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
            _png(root / c / f"{i:02d}.png", pixels)
            written[(c, i)] = pixels
    return written


def test_image_folder_train_test(tmp_path):
    train_px = write_folder(tmp_path / "train", seed=0)
    write_folder(tmp_path / "test", per_class=2, seed=1)
    splits = load_dataset("imagefolder", root=tmp_path)
    assert splits.classes == ["cat", "dog"]
    assert splits.train.x.shape == (6, 3, 6, 6) and splits.test.x.shape == (4, 3, 6, 6)
    np.testing.assert_array_equal(splits.train.x[4], train_px[("dog", 1)].transpose(2, 0, 1))
    assert splits.train.y.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_split_resize_and_cache(tmp_path, monkeypatch):
    write_folder(tmp_path, per_class=5, shape=(10, 6))
    splits = load_dataset("imagefolder", root=tmp_path, test_size=0.4, size=4, seed=0)
    assert splits.train.x.shape == (6, 3, 4, 4) and splits.test.x.shape == (4, 3, 4, 4)
    np.testing.assert_array_equal(splits.test.class_counts(), [2, 2])
    # a second load reads the decoded cache instead of the image files
    import robustfair.data.readers.imagefolder as imagefolder

    monkeypatch.setattr(imagefolder, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
    again = load_dataset("imagefolder", root=tmp_path, test_size=0.4, size=4, seed=0)
    np.testing.assert_array_equal(again.train.x, splits.train.x)


def test_image_folder_errors(tmp_path):
    write_folder(tmp_path / "train", classes=("a", "b"))
    write_folder(tmp_path / "test", classes=("a", "c"))
    with pytest.raises(DataError, match="differ from the train classes"):
        load_dataset("imagefolder", root=tmp_path)
    _png(tmp_path / "mixed" / "a" / "big.png", np.zeros((8, 8, 3), np.uint8))
    _png(tmp_path / "mixed" / "a" / "small.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "mixed" / "b" / "x.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "mixed" / "b" / "y.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="pass size="):
        load_dataset("imagefolder", root=tmp_path / "mixed", test_size=2, cache=False)
    assert len(image_folder_index(tmp_path / "mixed")) == 4


def test_imagenette_tgz_is_extracted_and_named(tmp_path):
    src = tmp_path / "src"
    for split, n in (("train", 2), ("val", 1)):
        for wnid in ("n01440764", "n03888257"):
            for i in range(n):
                _png(src / "imagenette2-160" / split / wnid / f"{i}.JPEG", np.full((12, 16, 3), 40 * i, np.uint8))
    archive = tmp_path / "data" / "imagenette2-160.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "imagenette2-160", arcname="imagenette2-160")
    splits = load_dataset("imagenette", root=tmp_path / "data", size=8)
    assert splits.classes == ["tench", "parachute"]
    assert splits.train.x.shape == (4, 3, 8, 8) and len(splits.test) == 2
    assert (tmp_path / "data" / "imagenette2-160" / "val" / "n03888257").is_dir()
    assert splits.train.info["wnids"] == ["n01440764", "n03888257"]


# ---------------------------------------------------------------- cifar10_jpeg.npz


def write_cifar10_jpeg(path, per_class=(3, 2), n_classes=3, side=8):
    from PIL import Image

    arrays = {"classes": np.array([f"k{i}" for i in range(n_classes)])}
    expected = {}
    for split, n in zip(("train", "test"), per_class):
        blobs, labels, colors = [], [], []
        for i in range(n * n_classes):
            color = (i * 37 % 256, 255 - i * 11 % 256, 128)
            buf = io.BytesIO()
            Image.fromarray(np.full((side, side, 3), color, np.uint8)).save(buf, format="JPEG", quality=95)
            blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
            labels.append(i % n_classes)
            colors.append(color)
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        arrays.update(
            {
                f"{split}_jpeg": np.concatenate(blobs),
                f"{split}_offsets": offsets,
                f"{split}_labels": np.array(labels, np.uint8),
            }
        )
        expected[split] = np.array(colors)
    np.savez(path, **arrays)
    return expected


def test_cifar10_jpeg_layout_and_cache(tmp_path, cache, monkeypatch):
    expected = write_cifar10_jpeg(tmp_path / "cifar10_jpeg.npz")
    splits = load_dataset("cifar10_jpeg", root=tmp_path)
    assert splits.train.name == "CIFAR-10 (JPEG)" and splits.classes == ["k0", "k1", "k2"]
    assert splits.train.x.shape == (9, 3, 8, 8) and splits.test.x.shape == (6, 3, 8, 8)
    # constant-colour JPEGs decode to within a couple of levels of their colour
    np.testing.assert_allclose(splits.train.x[:, :, 3, 3], expected["train"], atol=3)
    np.testing.assert_array_equal(splits.test.class_counts(), [2, 2, 2])
    md5 = splits.train.info["md5"]
    assert (cache / "decoded" / f"cifar10_jpeg-{md5}.npz").is_file()
    assert splits.train.info["matches_published_md5"] is False
    import robustfair.data.readers.cifar10_jpeg as reader

    monkeypatch.setattr(reader, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
    again = load_dataset("cifar10_jpeg", root=tmp_path)
    np.testing.assert_array_equal(again.train.x, splits.train.x)
    with pytest.raises(ChecksumError, match="ec7efd27f0694c5f78717cd2defeba50"):
        load_dataset("cifar10_jpeg", root=tmp_path, verify_md5=True)


def test_cifar10_jpeg_bad_offsets_and_no_download(tmp_path):
    write_cifar10_jpeg(tmp_path / "cifar10_jpeg.npz")
    with np.load(tmp_path / "cifar10_jpeg.npz") as z:
        arrays = dict(z)
    arrays["test_offsets"] = arrays["test_offsets"][::-1].copy()
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "cifar10_jpeg.npz", **arrays)
    with pytest.raises(DataError, match="offsets"):
        load_dataset("cifar10_jpeg", root=bad, cache=False)
    with pytest.raises(DataError, match="no public download URL"):
        load_dataset("cifar10_jpeg", root=tmp_path / "empty", download=True)


def test_data_env_var_is_the_default_root(tmp_path, monkeypatch):
    write_cifar10_jpeg(tmp_path / "cifar10_jpeg.npz")
    monkeypatch.setenv("ROBUSTFAIR_DATA", str(tmp_path))
    assert len(load_dataset("cifar10_jpeg").train) == 9
    monkeypatch.setenv("ROBUSTFAIR_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="not found in .*nowhere"):
        load_dataset("cifar10_jpeg")
