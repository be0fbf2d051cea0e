"""robustfair: adversarial training that is fair across classes.

Subpackages (each keeps an explicit name -> constructor registry):
    data     datasets, readers, splits, device-resident loader
    models   PreActResNet-18, ResNet-18, WideResNet, small CNN, MLP
    attacks  fgsm, pgd, early-stopped pgd, AutoAttack adapter
    losses   pure per-sample losses
    methods  training methods (ERM, PGD-AT, TRADES, FRL, BAT, ...)
    metrics  class-wise evaluation, analysis, sanity checks
    engine   training loop, config, checkpoints, distributed
    report   tables, plots, HTML
    group    group fairness under attack on tabular data
"""

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "models", "attacks", "losses", "methods", "metrics", "engine", "report", "group")


def __getattr__(name: str):
    """Lazy access to `robustfair.train`, `robustfair.evaluate` and the subpackages.

    `import robustfair` stays cheap (no torch import) until one of them is used:
    `robustfair.train(config, model=..., train_data=..., test_data=...)` (engine/trainer.py),
    `robustfair.evaluate(run, ...)` (engine/evaluate_run.py), `robustfair.methods.build(...)`.
    """
    import importlib

    if name == "train":
        return importlib.import_module("robustfair.engine.trainer").train
    if name == "evaluate":
        return importlib.import_module("robustfair.engine.evaluate_run").evaluate
    if name in _SUBPACKAGES:
        return importlib.import_module(f"robustfair.{name}")
    raise AttributeError(f"module 'robustfair' has no attribute {name!r}")
