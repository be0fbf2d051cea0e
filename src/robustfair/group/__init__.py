"""Group fairness under attack on tabular data (seed 002: "To be Robust and to be Fair:
Aligning Fairness with Robustness"; METHODS.md, "Group fairness under attack").

- data:       `load_group_data("adult" | "compas", ...)` -> `GroupData` (official files,
              documented preprocessing, md5-checked), `GROUP_DATASETS`
- models:     `build_group_model("mlp" | "logistic", in_features, hidden)`, `GROUP_MODELS`
- metrics:    DP / EOpp / EOdds gaps of soft predictions, accuracy, balanced accuracy
- attacks:    `accuracy_attack`, the unified `fairness_attack`, `direct_gap_attack`
- training:   erm, fair_erm, acc_at, fair_at, joint (`TRAININGS`, `train_group_model`)
- evaluation: `evaluate_group_model` (clean, under accuracy attack, under fairness attack)
- config:     `GroupConfig`, presets in configs/group/*.yaml
- cli:        `main(argv)` for `robustfair group train|eval|compare`
"""

from robustfair.group.attacks import accuracy_attack, direct_gap_attack, fairness_attack, unified_weights
from robustfair.group.config import GroupConfig, load_group_config
from robustfair.group.data import GROUP_DATASETS, load_group_data
from robustfair.group.evaluation import evaluate_group_model
from robustfair.group.metrics import (NOTIONS, accuracy, balanced_accuracy, demographic_parity_gap,
                                      equal_opportunity_gap, equalized_odds_gap, fairness_gap, group_metrics)
from robustfair.group.models import GROUP_MODELS, build_group_model
from robustfair.group.tabular import FeatureLayout, GroupData, OneHotBlock, TabularSplit
from robustfair.group.training import TRAININGS, train_group_model

__all__ = [
    "accuracy_attack", "direct_gap_attack", "fairness_attack", "unified_weights",
    "GroupConfig", "load_group_config", "GROUP_DATASETS", "load_group_data", "evaluate_group_model",
    "NOTIONS", "accuracy", "balanced_accuracy", "demographic_parity_gap", "equal_opportunity_gap",
    "equalized_odds_gap", "fairness_gap", "group_metrics", "GROUP_MODELS", "build_group_model",
    "FeatureLayout", "GroupData", "OneHotBlock", "TabularSplit", "TRAININGS", "train_group_model",
]
