"""Speed and memory benchmarks of robustfair, each printing a table of ratios.

Run one as a script from the repository root, e.g. `python benchmarks/train_step.py`
(`--help` lists its sizes; `--json PATH` also writes its figures). The reference
implementations the benchmarks compare against live beside them (`bat_reference`,
`eval_throughput`, `data_pipeline`), so `tests/test_fast_paths.py` can check that the fast
paths compute the same numbers. No benchmark is a test.
"""
