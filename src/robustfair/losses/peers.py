"""Pure weight computations of the instance- and class-reweighting methods (the "peers").

Each function is the distinctive formula of one method, separated from the training
loop so it can be pinned by hand-computed tests. Shapes: C classes, B samples. Nothing
here reads a model or keeps state; the methods in `robustfair.methods` call these.

- `gairat_weights`: GAIRAT's tanh weight of the geometry value kappa (Zhang et al., ICLR
  2021, "Geometry-aware Instance-reweighted Adversarial Training").
- `cfa_class_eps_scale`, `cfa_class_beta`: CFA's calibrated per-class budget and TRADES
  weight (Wei et al., CVPR 2023, "CFA: Class-wise Calibrated Fair Adversarial Training").
- `hedge_weights`: WAT's exponential weights over C classes + the mean loss (Li & Liu,
  AAAI 2023, "WAT: Improve the Worst-class Robustness in Adversarial Training").
- `dafa_class_weights`: DAFA's distance-aware class weights (Lee et al., ICLR 2024,
  "DAFA: Distance-Aware Fair Adversarial Training").
- `faal_class_weights`: FAAL's worst-case class distribution in a KL ball around uniform
  (Zhang et al., CVPR 2024, "Towards Fairness-Aware Adversarial Learning").
- `inverse_accuracy_weights`, `error_margins`: long-tail reweighting / LDAM-style margins
  applied to adversarial training (Benz et al. 2021, "Robustness May Be at Odds with
  Fairness: An Empirical Study on Class-wise Accuracy").
- `classwise_sums`, `classwise_counts`: per-class accumulation without host syncs.
"""

from __future__ import annotations

import math

import torch

from robustfair.errors import ConfigError


def classwise_sums(values: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sum of `values` over the samples of each class.

    values: [B] or [B, K]; y: [B] int64 in [0, C). Returns [C] or [C, K] in values' dtype.
    """
    out = torch.zeros((num_classes,) + tuple(values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, y, values)


def classwise_counts(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Number of samples of each class in y ([B] int64) -> [C] (float, for accumulation)."""
    return torch.bincount(y, minlength=num_classes)[:num_classes].to(dtype)


def gairat_weights(kappa: torch.Tensor, steps: int, lam: float) -> torch.Tensor:
    """GAIRAT's instance weights, normalised to mean 1 over the batch.

    kappa: [B], the number of the K PGD iterates x^0 .. x^{K-1} the model still classifies
    correctly (0..K); steps: K; lam: the offset lambda (official default -1).
    `w = (1 + tanh(lam + 5 * (h - kappa) / h)) / 2` with h = floor(K / 2), exactly the
    official `GAIR(..., "Tanh")`; for even K this is the paper's `5 (1 - 2 kappa / K)`.
    lam = +inf gives uniform weights (the official code's value before lambda switches on).
    Returns [B] float32, `w * B / sum(w)`.
    """
    if steps < 2:
        raise ConfigError(f"gairat steps: {steps!r} must be >= 2 (the weight divides by floor(steps / 2))")
    if math.isinf(lam) and lam > 0:
        return torch.ones_like(kappa, dtype=torch.float32)
    half = steps // 2
    # float64: weights of guarded samples are ~1e-5 and must keep their relative precision
    weight = (torch.tanh(lam + (half - kappa.double()) * 5.0 / half) + 1.0) / 2.0
    return (weight * kappa.numel() / weight.sum()).float()


def cfa_class_eps_scale(train_robust_acc: torch.Tensor, lambda_1: float = 0.5) -> torch.Tensor:
    """CFA's class-wise calibrated margin (CCM): eps_k = (lambda_1 + t_k) * eps; returns the factor.

    train_robust_acc: [C] in [0, 1], t_k = class k's robust accuracy on the previous
    epoch's training adversarial examples. Returns [C] `lambda_1 + t_k`.
    """
    return lambda_1 + train_robust_acc


def cfa_class_beta(train_robust_acc: torch.Tensor, beta: float, lambda_2: float = 0.5) -> torch.Tensor:
    """CFA's class-wise calibrated regularisation (CCR) weight of the KL term.

    beta_k = (lambda_2 + t_k) beta / (1 + (lambda_2 + t_k) beta); the loss of a sample of
    class k is `(1 - beta_k) CE + beta_k KL`. train_robust_acc: [C] -> [C].
    """
    scaled = (lambda_2 + train_robust_acc) * beta
    return scaled / (1.0 + scaled)


def hedge_weights(cumulative_cost: torch.Tensor, eta: float, num_classes: int) -> torch.Tensor:
    """WAT's Hedge (exponential weights) distribution over C classes plus the mean loss.

    cumulative_cost: [C + 1], the validation TRADES cost of each class (entries 0..C-1)
    and of the whole split (entry C), summed over the epochs so far. Returns [C + 1]
    `C * exp(eta * L) / sum(exp(eta * L))` (the official code's scale: the weights sum
    to C, so uniform costs give C / (C + 1) each). Computed as a softmax for stability.
    """
    if cumulative_cost.dim() != 1 or cumulative_cost.shape[0] != num_classes + 1:
        raise ConfigError(
            f"hedge_weights: cumulative_cost must have shape [{num_classes + 1}] "
            f"(C classes + the mean loss), got {tuple(cumulative_cost.shape)}"
        )
    return num_classes * torch.softmax(eta * cumulative_cost.double(), dim=0).to(cumulative_cost.dtype)


DAFA_RULES = ("code", "paper", "early_code")


def dafa_class_weights(similarity: torch.Tensor, lam: float, rule: str = "code") -> torch.Tensor:
    """DAFA's class weights from the class-similarity matrix of adversarial predictions.

    similarity: [C, C], p_ij = mean softmax probability of class j over class i's
    adversarial examples (rows sum to 1, p_ii = class i's own "accuracy" score).
    For every pair i != j, the harder class (smaller p_ii) takes weight from the easier:
      rule "code" (the official `calculate_class_weights` since rucy74/DAFA@74657cd,
      September 2024; the default) and "paper" (the paper's formula, the same weights):
        W_i = 1 + lam * sum_{j != i} (p_ij p_jj if p_ii < p_jj else -p_ji p_ii)
      so the weight class i gives to j is exactly what j takes from i, and the total stays C;
      rule "early_code" (the official code before that commit):
        W_i = 1 + lam * sum_{j != i} (p_ij p_jj if p_ii < p_jj else -p_ij p_jj)
    Ties (p_ii == p_jj) take the "else" branch, as in the code.
    Returns [C] in similarity's dtype.
    """
    if rule not in DAFA_RULES:
        raise ConfigError(f"dafa weight_rule: {rule!r} is not allowed; valid values: {', '.join(DAFA_RULES)}")
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ConfigError(f"dafa similarity must be a square [C, C] matrix, got {tuple(similarity.shape)}")
    p = similarity
    diag = torch.diagonal(p)
    harder = diag[:, None] < diag[None, :]  # [i, j]: class i harder than class j
    gain = p * diag[None, :]  # p_ij p_jj
    if rule == "early_code":
        loss = gain
    else:
        loss = p.transpose(0, 1) * diag[:, None]  # p_ji p_ii
    terms = torch.where(harder, gain, -loss)
    terms = terms - torch.diag(torch.diagonal(terms))  # j != i only
    return 1.0 + lam * terms.sum(dim=1)


def faal_class_weights(
    scores: torch.Tensor, radius: float, present: torch.Tensor | None = None, iterations: int = 60
) -> torch.Tensor:
    """FAAL's worst-case class distribution: argmax_p sum_c p_c m_c s.t. KL(U || p) <= r.

    scores: [C], m_c (e.g. class c's mean adversarial margin or loss in the batch);
    radius: r >= 0; present: [C] bool, the classes in the batch (default all). The
    simplex, U and the KL are over the present classes; absent classes get weight 0.

    Solution (derived from the KKT conditions; linear objective, convex feasible set,
    Slater holds for r > 0, so KKT is sufficient): with d_c = max(m) - m_c >= 0 the
    optimum is `p_c = (1 / (t + d_c)) / sum_k 1 / (t + d_k)` for the unique t > 0 with
    KL(U || p(t)) = r. KL(U || p(t)) = log(mean 1/(t+d)) + mean log(t+d) is decreasing in t
    (its derivative is (mean(u)^2 - mean(u^2)) / mean(u) <= 0 with u = 1/(t+d)), going to 0
    as t -> inf and to +inf as t -> 0 when the scores differ, so a bisection on log t
    finds it. The returned p is at the feasible end of the final bracket (KL <= r).
    Equal scores (or r = 0) give the uniform distribution. Runs on scores' device with a
    fixed number of iterations: no host synchronisation. Returns [C] float64.
    """
    if radius < 0 or not math.isfinite(radius):
        raise ConfigError(f"faal radius: {radius!r} must be a finite number >= 0")
    m = scores.detach().double()
    if present is None:
        present = torch.ones_like(m, dtype=torch.bool)
    present = present.to(device=m.device, dtype=torch.bool)
    count = present.sum().clamp(min=1).double()
    top = torch.where(present, m, torch.full_like(m, -math.inf)).max()
    d = torch.where(present, top - m, torch.zeros_like(m))
    spread = d.max()
    scale = torch.where(spread > 0, spread, torch.ones_like(spread))

    def distribution(t: torch.Tensor) -> torch.Tensor:
        u = torch.where(present, 1.0 / (t + d), torch.zeros_like(d))
        return u / u.sum()

    def kl_from_uniform(p: torch.Tensor) -> torch.Tensor:
        logs = torch.where(present, torch.log(p.clamp(min=1e-300)), torch.zeros_like(p))
        return -torch.log(count) - logs.sum() / count

    # log t in [log(scale) - 40, log(scale) + 40]: p(t) is uniform to ~1e-17 at the top end
    # and concentrated on the top class(es) to ~1e-17 at the bottom end; 60 halvings
    # leave a bracket of 80 / 2^60 in log t.
    low = torch.log(scale) - 40.0
    high = torch.log(scale) + 40.0
    for _ in range(iterations):
        mid = (low + high) / 2
        feasible = kl_from_uniform(distribution(torch.exp(mid))) <= radius
        high = torch.where(feasible, mid, high)
        low = torch.where(feasible, low, mid)
    p = distribution(torch.exp(high))
    uniform = present.double() / count
    if radius == 0:
        return uniform
    return torch.where(spread > 0, p, uniform)


def inverse_accuracy_weights(accuracy: torch.Tensor, floor: float = 0.05, power: float = 1.0) -> torch.Tensor:
    """Class weights proportional to accuracy^-power, normalised to mean 1 over the classes.

    accuracy: [C] in [0, 1] (e.g. last epoch's per-class robust accuracy); floor: the
    smallest accuracy used (keeps a class at 0% finite). Returns [C].
    """
    raw = accuracy.clamp(min=floor) ** (-power)
    return raw * raw.numel() / raw.sum()


def error_margins(error: torch.Tensor, max_margin: float, power: float = 1.0) -> torch.Tensor:
    """LDAM-style per-class logit margins from per-class (robust) error.

    `Delta_c = max_margin * (e_c / max_k e_k) ** power`: the class with the largest error
    gets `max_margin`, an error-free class 0. error: [C] in [0, 1]. Returns [C]
    (all zero when every error is 0).
    """
    top = error.max()
    ratio = torch.where(top > 0, error / top.clamp(min=1e-12), torch.zeros_like(error))
    return max_margin * ratio.clamp(min=0) ** power


def margin_adjusted_logits(logits: torch.Tensor, y: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
    """LDAM's adjustment: subtract Delta_{y_i} from each sample's true-class logit.

    logits: [B, C]; y: [B]; margins: [C]. Returns [B, C]; a CE on it asks the true class
    to win by at least its margin.
    """
    shift = torch.zeros_like(logits).scatter_(1, y[:, None], margins.to(logits.dtype)[y][:, None])
    return logits - shift
