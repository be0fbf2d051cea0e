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
