"""Group fairness under attack on tabular data (seed 002: "To be Robust and to be Fair:
Aligning Fairness with Robustness"; METHODS.md, "Group fairness under attack").

- data:       `load_group_data_from_config(DataConfig)` -> `GroupData` for Adult, COMPAS
              (official files, documented preprocessing, md5-checked) or any CSV table;
              `load_group_data("adult" | "compas", ...)`, `GROUP_DATASETS`
- table:      label / sensitive binarisation, column roles, split (`build_group_data`)
- encoding:   `TableEncoder`, the fitted encoding saved with every run
- domain:     each feature's domain (`FeatureDomain`), `domain_violations`
- models:     `build_group_model("mlp" | "logistic", in_features, hidden)`, `GROUP_MODELS`
- metrics:    DP / EOpp / EOdds gaps (differentiable), `group_metrics` (hard and soft,
              per-group rates, direction); rates: the cell arithmetic behind them
- bootstrap:  seeded percentile intervals over test rows for every gap
- attacks:    `accuracy_attack`, the unified `fairness_attack`, `direct_gap_attack`
- training:   erm, fair_erm, acc_at, fair_at, joint (`TRAININGS`, `train_group_model`)
- evaluation: `evaluate_group_model` (clean, under accuracy attack, under fairness attack)
- config:     `GroupConfig`, presets in configs/group/*.yaml
- runs:       run directories (`save_run`, `load_run_data`, `load_run_model`)
- compare:    comparison tables (`format_comparison`)
- cli:        the actions of `robustfair group train|eval|compare`
"""

from robustfair.group.attacks import accuracy_attack, direct_gap_attack, fairness_attack, unified_weights
from robustfair.group.bootstrap import bootstrap_intervals
from robustfair.group.config import GroupConfig, load_group_config
from robustfair.group.data import GROUP_DATASETS, load_group_data, load_group_data_from_config
from robustfair.group.domain import FeatureDomain, domain_violations
from robustfair.group.encoding import TableEncoder
from robustfair.group.evaluation import evaluate_group_model
from robustfair.group.metrics import (
    NOTIONS,
    accuracy,
    balanced_accuracy,
    demographic_parity_gap,
    equal_opportunity_gap,
    equalized_odds_gap,
    fairness_gap,
    group_metrics,
)
from robustfair.group.models import GROUP_MODELS, build_group_model
from robustfair.group.runs import load_run_data, load_run_model, save_run
from robustfair.group.tabular import FeatureLayout, GroupData, OneHotBlock, TabularSplit
from robustfair.group.training import TRAININGS, train_group_model

__all__ = [
    "accuracy_attack",
    "direct_gap_attack",
    "fairness_attack",
    "unified_weights",
    "bootstrap_intervals",
    "GroupConfig",
    "load_group_config",
    "GROUP_DATASETS",
    "load_group_data",
    "load_group_data_from_config",
    "FeatureDomain",
    "domain_violations",
    "TableEncoder",
    "evaluate_group_model",
    "NOTIONS",
    "accuracy",
    "balanced_accuracy",
    "demographic_parity_gap",
    "equal_opportunity_gap",
    "equalized_odds_gap",
    "fairness_gap",
    "group_metrics",
    "GROUP_MODELS",
    "build_group_model",
    "load_run_data",
    "load_run_model",
    "save_run",
    "FeatureLayout",
    "GroupData",
    "OneHotBlock",
    "TabularSplit",
    "TRAININGS",
    "train_group_model",
]
