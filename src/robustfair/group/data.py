"""Tabular datasets with a sensitive attribute: the registry and one loading entry point.

`load_group_data("adult" | "compas", root=None, ...)` reads the official files from the
data directory (`root`, else `$ROBUSTFAIR_DATA`, else `<repository>/../shared/data`),
checks their md5s, and returns encoded, standardised `GroupData`. Preprocessing of each
dataset is documented in `robustfair.group.adult` and `robustfair.group.compas`.
"""

from __future__ import annotations

import os

from robustfair.group.adult import load_adult
from robustfair.group.compas import load_compas
from robustfair.group.files import default_data_dir, download_dataset_files, resolve_data_dir
from robustfair.group.tabular import GroupData
from robustfair.registry import Registry

GROUP_DATASETS = Registry("group dataset", {"adult": load_adult, "compas": load_compas})


def load_group_data(name: str, root: str | os.PathLike | None = None, *, sensitive: str,
                    include_sensitive: bool = False, split_seed: int = 0, test_fraction: float = 0.3,
                    download: bool = False, verify_checksums: bool = True) -> GroupData:
    """Load dataset `name` with binary sensitive attribute `sensitive`.

    include_sensitive: keep the sensitive attribute's one-hot block among the features
    (attacks never change it). split_seed / test_fraction: COMPAS's seeded split (Adult
    has an official split). download: fetch missing files first (official URLs, md5s).
    """
    loader = GROUP_DATASETS[name]
    folder = resolve_data_dir(root)
    if download:
        download_dataset_files(name, folder)
    return loader(folder, sensitive=sensitive, include_sensitive=include_sensitive,
                  split_seed=split_seed, test_fraction=test_fraction, verify_checksums=verify_checksums)


__all__ = ["GROUP_DATASETS", "load_group_data", "default_data_dir", "download_dataset_files", "GroupData"]
