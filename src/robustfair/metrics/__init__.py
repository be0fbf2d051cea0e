"""Class-wise evaluation: per-sample predictions -> per-class errors -> results.json."""

from robustfair.metrics.classwise import ClasswiseResult, classwise_result, evaluate_classwise

__all__ = ["ClasswiseResult", "classwise_result", "evaluate_classwise"]
