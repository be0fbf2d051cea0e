"""Imagenette (fast.ai): 10 easy ImageNet classes, from the official `imagenette2-160.tgz`
(or the 320 px / full-size variants).

The archive holds `imagenette2-160/{train,val}/<wnid>/*.JPEG`; it is extracted once with
`safe_extract` beside the archive (or into the cache directory when that is read-only),
bounded in size and refused unless everything lies under `imagenette2-160/`.
Images are resized (shorter side to `size`, default 64, then centre-cropped) and decoded
into memory, uint8 [N, 3, size, size]; at the native 160 px the train split needs about
1 GB, so for larger sizes consider `image_folder_index` + `StreamingLoader`.
Class names are the English names of the WordNet ids, in sorted-wnid label order.
"""

from __future__ import annotations

from pathlib import Path

from robustfair.data.archive import safe_extract
from robustfair.data.checks import check_choice, check_int
from robustfair.data.dataset import DatasetSplits
from robustfair.data.locate import locate_file, search_dirs, writable_dir_beside
from robustfair.data.readers.imagefolder import ImageFileIndex, image_folder_index, read_image_index
from robustfair.data.sources import REMOTE_FILES

WNID_NAMES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}


def imagenette_folder(root=None, download: bool = False, *, variant: str = "160") -> Path:
    """The extracted `imagenette2[-variant]` directory, extracting (or downloading) if needed."""
    check_choice("variant", variant, ("160", "320", "full"))
    remote = REMOTE_FILES[f"imagenette_{variant}"]
    folder = remote.filename.removesuffix(".tgz")
    for d in search_dirs(root, "imagenette"):
        if (d / folder).is_dir():
            return d / folder
    archive = locate_file(remote, dataset="imagenette", root=root, download=download)
    target = writable_dir_beside(archive, "imagenette")
    if not (target / folder).is_dir():
        safe_extract(archive, target, expected_top=folder)
    return target / folder


def imagenette_indexes(
    root=None, download: bool = False, *, variant: str = "160"
) -> tuple[ImageFileIndex, ImageFileIndex]:
    """(train, val) file indexes with English class names."""
    base = imagenette_folder(root, download, variant=variant)
    name = f"Imagenette ({variant} px)" if variant != "full" else "Imagenette"
    train = image_folder_index(base / "train", name=name)
    test = image_folder_index(base / "val", classes=train.classes, name=name)
    for index in (train, test):
        index.info["wnids"] = list(index.classes)
        index.classes = [WNID_NAMES.get(w, w) for w in index.classes]
    return train, test


def load_imagenette(
    root=None, download: bool = False, *, variant: str = "160", size: int = 64, cache: bool = True
) -> DatasetSplits:
    """Imagenette train (9,469) / val (3,925) as uint8 [N, 3, size, size] (val is the test split)."""
    size = check_int("size", size, low=1)
    train, test = imagenette_indexes(root, download, variant=variant)
    splits = []
    for index, split in ((train, "train"), (test, "test")):
        ds = read_image_index(index, size=size, channels=3, cache=cache, split=split)
        ds.name = f"{index.name}, resized to {size}"
        ds.info["wnids"] = index.info["wnids"]
        splits.append(ds)
    return DatasetSplits(*splits)
