"""Each feature's domain, for attacks that produce inputs a real row could have.

The domain of a continuous column is `[low, high]` in raw units (declared bounds, else
the training range; `FeatureLayout.low/high`) and, for columns declared to hold whole
numbers (`FeatureLayout.integer`), the integers. Inputs are standardised, so the bounds
are mapped to `(bound - mean) / std`.

- `FeatureDomain.clamp(x_adv, x)`: every continuous column into
  `[min(low, x_j), max(high, x_j)]`, i.e. into the domain, except that a clean value that
  is already outside it (a test row beyond the training range) is never pushed further
  out. Clamping after the eps-ball projection keeps the ball: every coordinate only moves
  towards the clean value.
- `FeatureDomain.round(x_adv, x, eps, norm)`: whole-number columns get a whole-number
  shift `k` from the clean value (so a whole clean value stays whole): L-inf rounds the
  shift to the nearest integer within `floor(eps * std)`; L2 rounds it towards zero
  (which never lengthens the perturbation). Then clamped again.
- `domain_violations(x, x_adv, layout)`: how often attacked rows left the domain, the
  measurement behind docs/RESULTS.md's report on the unconstrained attack.

Tensors: x, x_adv float [B, D]; computations of raw-unit shifts in float64.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from robustfair.errors import ConfigError
from robustfair.group.tabular import FeatureLayout

RANGE_TOLERANCE = 1e-5  # standardised units: float32 rounding of values exactly at a bound
INTEGER_TOLERANCE = 0.05  # raw units: float32 round trips of whole-number shifts


@dataclasses.dataclass(frozen=True)
class FeatureDomain:
    """Per input column [D]: bounds in standardised units (+-inf where unbounded), whole-number
    flag, and the standardisation (mean, std; 0 and 1 on non-continuous columns)."""

    lower: torch.Tensor
    upper: torch.Tensor
    integer: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_layout(cls, layout: FeatureLayout) -> FeatureDomain:
        if not layout.has_domain:
            raise ConfigError(
                "attack.domain=bounded needs each continuous feature's domain, which this feature "
                "layout lacks (build the data with robustfair.group.load_group_data); "
                "or set attack.domain=unbounded"
            )
        d = layout.num_features
        lower = torch.full((d,), -math.inf, dtype=torch.float64)
        upper = torch.full((d,), math.inf, dtype=torch.float64)
        integer = torch.zeros(d, dtype=torch.bool)
        mean = torch.zeros(d, dtype=torch.float64)
        std = torch.ones(d, dtype=torch.float64)
        for k, j in enumerate(layout.continuous):
            mean[j], std[j] = layout.mean[k], layout.std[k]
            lower[j] = (layout.low[k] - layout.mean[k]) / layout.std[k]
            upper[j] = (layout.high[k] - layout.mean[k]) / layout.std[k]
            integer[j] = bool(layout.integer[k])
        return cls(lower.float(), upper.float(), integer, mean, std)

    def clamp(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x_adv with each column in [min(lower, x), max(upper, x)] (see the module docstring)."""
        lower = torch.minimum(self.lower.to(x.device, x.dtype), x)
        upper = torch.maximum(self.upper.to(x.device, x.dtype), x)
        return torch.maximum(torch.minimum(x_adv, upper), lower)

    def round(self, x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
        """x_adv with a whole-number raw shift from x on the whole-number columns (then clamped)."""
        cols = self.integer.nonzero().flatten().tolist()
        if not cols:
            return x_adv
        out = x_adv.clone()
        std = self.std[cols].to(x.device)
        shift = (x_adv[:, cols].double() - x[:, cols].double()) * std
        if norm == "linf":
            reach = torch.floor(eps * std + 1e-9)
            k = torch.maximum(torch.minimum(torch.round(shift), reach), -reach)
        else:
            k = torch.trunc(shift)
        out[:, cols] = (x[:, cols].double() + k / std).to(x.dtype)
        return self.clamp(out, x)


def domain_violations(x: torch.Tensor, x_adv: torch.Tensor, layout: FeatureLayout) -> dict:
    """How often attacked rows left the feature domain (see the module docstring).

    Returns {"rows_out_of_range": fraction of rows with some continuous column outside
    [min(low, clean), max(high, clean)], "rows_non_integer": fraction with a fractional
    shift of a whole-number column, "out_of_range_by_feature": {column: fraction of rows},
    "below_by_feature": {column: fraction of rows under the lower bound}}; {} without
    domain information.
    """
    if not layout.has_domain or len(x) == 0:
        return {}
    domain = FeatureDomain.from_layout(layout)
    cols = list(layout.continuous)
    lower = torch.minimum(domain.lower[cols], x[:, cols]) - RANGE_TOLERANCE
    upper = torch.maximum(domain.upper[cols], x[:, cols]) + RANGE_TOLERANCE
    values = x_adv[:, cols]
    below, above = values < lower, values > upper
    outside = below | above
    shift = (x_adv[:, cols].double() - x[:, cols].double()) * domain.std[cols]
    fractional = ((shift - shift.round()).abs() > INTEGER_TOLERANCE) & domain.integer[cols]
    names = [layout.names[j] for j in cols]
    return {
        "rows_out_of_range": float(outside.any(dim=1).float().mean()),
        "rows_non_integer": float(fractional.any(dim=1).float().mean()),
        "out_of_range_by_feature": {n: float(outside[:, k].float().mean()) for k, n in enumerate(names)},
        "below_by_feature": {n: float(below[:, k].float().mean()) for k, n in enumerate(names)},
    }
