"""Class-wise evaluation: per-sample predictions -> per-class errors -> results.json.

Also the source/target-class fairness analysis (`analysis`) and the evaluation sanity
checks (`sanity`).
"""

from robustfair.metrics.analysis import fairness_analysis, steps_to_flip, steps_to_flip_by_class, target_distribution
from robustfair.metrics.classwise import ClasswiseResult, classwise_result, evaluate_classwise

__all__ = [
    "ClasswiseResult",
    "classwise_result",
    "evaluate_classwise",
    "fairness_analysis",
    "steps_to_flip",
    "steps_to_flip_by_class",
    "target_distribution",
]
