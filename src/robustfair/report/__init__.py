"""Tables, plots and the HTML report built from run directories.

    runs.py             load run directories (results.json, config.yaml, metrics.jsonl, analysis.json)
    tables.py           BAT Table 1 tables: Markdown for the demo; Markdown, CSV, LaTeX, HTML with mean ± std
    compare.py          group runs that differ only in seed; summary and per-class comparison tables
    analysis_tables.py  per-class table and correlations of a source/target-class analysis
    plots.py            matplotlib figures (Agg canvas, no pyplot): per-class bars, confusion, steps, targets, curves
    html.py             one self-contained HTML report (embedded PNGs, no JavaScript, no network)

Submodules are imported on use, so `import robustfair.report` does not load matplotlib.
"""
