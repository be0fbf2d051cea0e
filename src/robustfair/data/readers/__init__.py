"""One reader per dataset format. Each is `load_<name>(root, download, **options) -> DatasetSplits`."""
