"""Tabular datasets with a sensitive attribute: the built-in registry and one loading entry point.

- `load_group_data_from_config(DataConfig, encoder=None)`: the table the config describes,
  built-in (`adult`, `compas`: official files from the data directory, md5-checked,
  documented preprocessing) or a user's CSV table (`data.csv`, optionally `data.test_csv`),
  encoded by `robustfair.group.table.build_group_data`. With a saved `encoder` (a run being
  re-evaluated) the inputs are encoded exactly as in training instead of refitted.
- `load_group_data(name, root, sensitive=..., ...)`: the same for a built-in dataset by name.

The data directory of the built-in datasets is `root`, else `$ROBUSTFAIR_DATA`, else
`<repository>/../shared/data`.
"""

from __future__ import annotations

import dataclasses
import os

from robustfair.errors import ConfigError
from robustfair.group.adult import read_adult
from robustfair.group.compas import read_compas
from robustfair.group.config import BUILTIN_DATASETS, DataConfig
from robustfair.group.csv_table import read_csv_table
from robustfair.group.encoding import TableEncoder
from robustfair.group.files import default_data_dir, download_dataset_files, resolve_data_dir
from robustfair.group.table import RawTable, build_group_data
from robustfair.group.tabular import GroupData
from robustfair.registry import Registry

GROUP_DATASETS = Registry("group dataset", {"adult": read_adult, "compas": read_compas})


def read_raw_table(config: DataConfig) -> RawTable:
    """The rows `config` names, before binarisation and encoding."""
    if config.csv is None:
        if config.test_csv is not None:
            raise ConfigError("data.test_csv: give the training part with data.csv too")
        if config.name not in BUILTIN_DATASETS:
            raise ConfigError(
                f"data.name {config.name!r} is not a built-in dataset ({', '.join(BUILTIN_DATASETS)}); "
                f"for your own table give its CSV file with data.csv (--csv FILE)"
            )
        folder = resolve_data_dir(config.root)
        if config.download:
            download_dataset_files(config.name, folder)
        return GROUP_DATASETS[config.name](folder)
    if config.name in BUILTIN_DATASETS:
        raise ConfigError(
            f"data.name {config.name!r} is a built-in dataset; name your CSV table otherwise (data.name=..., --name)"
        )
    columns, rows = read_csv_table(config.csv, config.delimiter)
    test_rows = None
    if config.test_csv is not None:
        test_columns, test_rows = read_csv_table(config.test_csv, config.delimiter)
        absent = [c for c in columns if c not in test_columns]
        if absent:
            raise ConfigError(f"data.test_csv {config.test_csv!r} lacks column {absent[0]!r} of data.csv")
    return RawTable(config.name, columns, rows, test_rows, source=repr(config.csv))


def load_group_data_from_config(config: DataConfig, encoder: TableEncoder | None = None) -> GroupData:
    """GroupData of the table `config` describes (see the module docstring)."""
    return build_group_data(read_raw_table(config), config, encoder)


def load_group_data(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    sensitive: str | None = None,
    include_sensitive: bool = False,
    split_seed: int = 0,
    test_fraction: float = 0.3,
    download: bool = False,
    verify_checksums: bool = True,
    **data: object,
) -> GroupData:
    """Built-in dataset `name` (adult, compas) with binary sensitive attribute `sensitive`.

    include_sensitive: keep the sensitive attribute among the features (attacks never
    change it). split_seed / test_fraction: COMPAS's seeded split (Adult has an official
    split). download: fetch missing files first (official URLs, md5s). Other `DataConfig`
    fields (privileged, threshold, bounds) may be passed by keyword.
    """
    GROUP_DATASETS[name]  # unknown names: UnknownNameError listing the valid ones
    config = DataConfig(
        name=name,
        root=None if root is None else os.fspath(root),
        sensitive=sensitive,
        include_sensitive=include_sensitive,
        split_seed=split_seed,
        test_fraction=test_fraction,
        download=download,
        **data,
    )
    folder = resolve_data_dir(config.root)
    if config.download:
        download_dataset_files(name, folder)
    raw = GROUP_DATASETS[name](folder, verify_checksums=verify_checksums)
    return build_group_data(raw, dataclasses.replace(config, download=False))


__all__ = [
    "GROUP_DATASETS",
    "load_group_data",
    "load_group_data_from_config",
    "read_raw_table",
    "default_data_dir",
    "download_dataset_files",
    "GroupData",
]
