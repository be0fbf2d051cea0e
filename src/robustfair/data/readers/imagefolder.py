"""Your own images: any directory tree of images, one sub-directory per class.

Layouts (`data.root` is `root`; options in `data.options`):

    root/train/cat/0001.png        root/cat/0001.png      (with test_size: a seeded
    root/train/dog/0002.jpg        root/dog/0002.jpg       class-stratified split)
    root/test/cat/0100.png
    root/test/dog/0101.jpg

- `root/train/<class>/*` and `root/test/<class>/*` (folder names via train_dir/test_dir);
- `root/<class>/*` with `test_size` set (a count or a fraction): a seeded class-stratified split.
Image files: the extensions in `data/images.py` (png, jpg, jpeg, bmp, gif, ...).
Classes are the sorted sub-directory names of the train directory (label order); the test
directory must have the same classes. Files are taken recursively, sorted by path.
Images are decoded with Pillow to uint8 [N, C, H, W]: `size=None` keeps the native size
(all images must share it), `size=s` resizes the shorter side to s and centre-crops s x s.
Decoded arrays are cached (see `decoded_cache`) keyed by the files' paths, sizes and
modification times. `image_folder_index` gives the file list alone, for `StreamingLoader`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robustfair.data.checks import check_choice, check_float, check_int
from robustfair.data.dataset import ArrayDataset, DatasetSplits
from robustfair.data.decoded_cache import load_or_build
from robustfair.data.images import IMAGE_EXTENSIONS, decode_image
from robustfair.data.locate import cache_dir
from robustfair.data.splits import stratified_split
from robustfair.errors import ConfigError, DataError


@dataclass
class ImageFileIndex:
    """Image files and their labels. paths[i] has label y[i] (int64), classes in label order."""

    paths: list[Path]
    y: np.ndarray
    classes: list[str]
    name: str = ""
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageFileIndex:
        idx = np.asarray(indices, dtype=np.int64)
        return ImageFileIndex([self.paths[i] for i in idx], self.y[idx], list(self.classes), self.name, dict(self.info))


def image_folder_index(directory: str | Path, classes: Sequence[str] | None = None, name: str = "") -> ImageFileIndex:
    """Index `directory/<class>/**/<image>`; `classes` (if given) must equal the sub-directories."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: image folder not found")
    found = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{directory}: no class sub-directories")
    if classes is not None and list(classes) != found:
        raise DataError(f"{directory}: classes {found} differ from the train classes {list(classes)}")
    paths, labels = [], []
    for label, cls in enumerate(found):
        files = sorted(p for p in (directory / cls).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(
                f"{directory / cls}: class folder has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        paths.extend(files)
        labels.extend([label] * len(files))
    return ImageFileIndex(paths, np.asarray(labels, dtype=np.int64), found, name or directory.name)


def _index_digest(index: ImageFileIndex, size: int | None, channels: int) -> str:
    digest = hashlib.sha256(f"size={size};channels={channels}".encode())
    for path in index.paths:
        st = path.stat()
        digest.update(f"\n{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def decode_index(index: ImageFileIndex, *, size: int | None = None, channels: int = 3) -> np.ndarray:
    """uint8 [N, C, H, W] pixels of every file in `index` (DataError on mixed native sizes)."""
    images = [decode_image(p, channels=channels, size=size) for p in index.paths]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"images have different sizes {sorted(shapes)[:4]}; pass size=<pixels> to resize them")
    return np.stack(images)


def read_image_index(
    index: ImageFileIndex, *, size: int | None = None, channels: int = 3, cache: bool = True, split: str = ""
) -> ArrayDataset:
    """Decode an index into an ArrayDataset, through the decoded-array cache if `cache`."""

    def build() -> dict[str, np.ndarray]:
        return {"x": decode_index(index, size=size, channels=channels)}

    if cache:
        key = _index_digest(index, size, channels)
        x = load_or_build(cache_dir() / "decoded" / f"imagefolder-{key}.npz", build)["x"]
    else:
        x = build()["x"]
    return ArrayDataset(
        x, index.y.copy(), index.classes, name=index.name, info={"split": split, "size": size, "files": len(index)}
    )


def image_folder_splits(
    root: str | Path | None,
    *,
    train_dir: str = "train",
    test_dir: str = "test",
    test_size: int | float | None = None,
    seed: int = 0,
    name: str | None = None,
) -> tuple[ImageFileIndex, ImageFileIndex]:
    """(train, test) file indexes of an image-folder tree (see the module docstring)."""
    if root is None:
        raise ConfigError("root: required for imagefolder; pass the directory holding the class folders")
    root = Path(root).expanduser()
    label = name or root.name
    if not root.is_dir():
        raise DataError(
            f"{root}: data folder {'is not a directory' if root.exists() else 'not found'}; "
            f"pass root=<directory holding the class folders>"
        )
    if test_size is None:
        if not (root / train_dir).is_dir() or not (root / test_dir).is_dir():
            raise DataError(
                f"{root}: expected {train_dir}/ and {test_dir}/ sub-directories; or pass "
                f"test_size=<count or fraction> to split root/<class>/ folders"
            )
        train = image_folder_index(root / train_dir, name=label)
        return train, image_folder_index(root / test_dir, classes=train.classes, name=label)
    if isinstance(test_size, float):
        check_float("test_size", test_size, low=0.0, low_open=True)
    else:
        check_int("test_size", test_size, low=1)
    full = image_folder_index(root, name=label)
    # Split positions through stratified_split so the rule is the one every reader uses.
    positions = ArrayDataset(np.arange(len(full), dtype=np.int64)[:, None], full.y, full.classes)
    train_pos, test_pos = stratified_split(positions, test_size, seed=seed)
    return full.subset(train_pos.x[:, 0]), full.subset(test_pos.x[:, 0])


def load_image_folder(
    root=None,
    download: bool = False,
    *,
    train_dir: str = "train",
    test_dir: str = "test",
    test_size: int | float | None = None,
    seed: int = 0,
    size: int | None = None,
    channels: int = 3,
    cache: bool = True,
    name: str | None = None,
) -> DatasetSplits:
    """Your own images in data.root, one folder per class: train/<class>/*, test/<class>/* (or <class>/*).

    With root/<class>/* folders, `test_size` (count or fraction) makes a seeded stratified
    test split. See the module docstring for sizes, channels and the decoded cache.
    """
    if download:
        raise DataError("imagefolder: nothing to download; pass root=<directory of class folders>")
    if size is not None:
        size = check_int("size", size, low=1)
    check_choice("channels", channels, (1, 3))
    train, test = image_folder_splits(
        root, train_dir=train_dir, test_dir=test_dir, test_size=test_size, seed=seed, name=name
    )
    return DatasetSplits(
        read_image_index(train, size=size, channels=channels, cache=cache, split="train"),
        read_image_index(test, size=size, channels=channels, cache=cache, split="test"),
    )
