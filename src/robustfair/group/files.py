"""Where the tabular data files live, their official URLs, and their checksums.

The data directory is `root` when given, else the environment variable
`ROBUSTFAIR_DATA`, else `<repository>/../shared/data`.

`adult.test` is accepted with either of two md5s: the upstream UCI file (whose first
line is the comment `|1x3 Cross validator`) and the copy in `../shared/data`, which is
the same file with that comment line removed. The reader skips the comment line, so
both produce the same rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from robustfair.errors import ChecksumError, DataError

_REPOSITORY = Path(__file__).resolve().parents[3]


@dataclasses.dataclass(frozen=True)
class DataFile:
    """One published file: its URL, the md5 of the upstream file, and other accepted md5s."""

    filename: str
    url: str
    md5: str
    also_accepted: tuple[str, ...] = ()

    @property
    def accepted_md5s(self) -> tuple[str, ...]:
        return (self.md5, *self.also_accepted)


_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"

DATA_FILES: dict[str, DataFile] = {
    "adult.data": DataFile("adult.data", _UCI + "adult.data", "5d7c39d7b8804f071cdd1f2a7c460872"),
    "adult.test": DataFile(
        "adult.test",
        _UCI + "adult.test",
        "35238206dfdf7f1fe215bbb874adecdc",
        also_accepted=("366c746021dc50ad9d933d2817612fc9",),
    ),  # comment line removed
    "compas-scores-two-years.csv": DataFile(
        "compas-scores-two-years.csv",
        "https://raw.githubusercontent.com/propublica/compas-analysis/master/compas-scores-two-years.csv",
        "9165d40c400bba93a8cffece2b74622b",
    ),
}

DATASET_FILES: dict[str, tuple[str, ...]] = {
    "adult": ("adult.data", "adult.test"),
    "compas": ("compas-scores-two-years.csv",),
}


def default_data_dir() -> Path:
    """`$ROBUSTFAIR_DATA` if set, else `<repository>/../shared/data`."""
    env = os.environ.get("ROBUSTFAIR_DATA")
    return Path(env) if env else _REPOSITORY.parent / "shared" / "data"


def resolve_data_dir(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else default_data_dir()


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_file(root: Path, filename: str, verify_checksum: bool = True) -> Path:
    """The path of `filename` under `root`, checked to exist and (optionally) to match its md5.

    Raises DataError when the file is missing (naming the directory and the fix) and
    ChecksumError when its md5 is not one of the accepted ones.
    """
    path = root / filename
    if not path.is_file():
        raise DataError(
            f"{filename} not found in {root}; pass --data-dir (or set ROBUSTFAIR_DATA) "
            f"to the folder holding it, or download it with --download"
        )
    if verify_checksum:
        spec = DATA_FILES[filename]
        got = md5sum(path)
        if got not in spec.accepted_md5s:
            raise ChecksumError(
                f"{path}: md5 {got} does not match the published file (expected one of {', '.join(spec.accepted_md5s)})"
            )
    return path


def download_dataset_files(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """Download the official files of `dataset` into the data directory, checking md5s.

    Files already present with an accepted checksum are kept. Uses
    `robustfair.data.download.download_file(url, dest, md5=...)`.
    """
    if dataset not in DATASET_FILES:
        raise DataError(f"unknown group dataset {dataset!r}; valid: {', '.join(sorted(DATASET_FILES))}")
    try:
        from robustfair.data.download import download_file  # imported late: another subpackage
    except ImportError:
        raise DataError(
            "downloading needs robustfair.data.download, which this build lacks; "
            "place the files in the data directory by hand"
        ) from None
    folder = resolve_data_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for filename in DATASET_FILES[dataset]:
        spec = DATA_FILES[filename]
        dest = folder / filename
        if dest.is_file() and md5sum(dest) in spec.accepted_md5s:
            continue
        download_file(spec.url, dest, md5=spec.md5)
    return folder
