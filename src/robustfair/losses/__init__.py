"""Pure, unreduced per-sample losses: every function returns a tensor of shape [B].

Methods apply class weights and reductions themselves, so reweighting (FRL, CFA, WAT,
DAFA) is a multiplication, never a new loop.
"""

from robustfair.losses.classification import cross_entropy, margin, probability_margin
from robustfair.losses.divergence import kl_divergence, trades_kl, uniform_kl

__all__ = ["cross_entropy", "margin", "probability_margin", "kl_divergence", "trades_kl", "uniform_kl"]
