"""FRL: Xu et al., ICML 2021, "To be Robust or to be Fair: Towards Fairness in Adversarial Training".

Fair Robust Learning fine-tunes an adversarially trained model ("hot start": set
`init_from` to a PGD-AT or TRADES run) for 40 epochs, SGD lr 0.001, momentum 0.9, wd 5e-4,
batch 128, PreActResNet-18 without normalisation.

Each epoch, before training (`on_epoch_start`), on the validation split (the last 300
training images of each class) under PGD-20 (CE, step 2/255, uniform start):
1. per-class clean error e_c, boundary error b_c = acc_c - advacc_c, overall e, b
   (`frl_validation_errors`);
2. violations g0 = e_c - e - tau0, g1 = b_c - b - tau1 (`frl_violations`);
3. multipliers l0 += a1 g0, l1 += 2 a1 g1, each clamped >= 0 and rescaled to sum to `lim`
   when its sum exceeds it; Remargin l2 += a2 g1, unclamped (`frl_update_multipliers`);
4. class weights w = 1/C + l - sum(l)/C (`frl_class_weights`), eps factors
   s = clamp(exp(2 l2), 0.98, cap) (`frl_margin_factors`);
5. a1 halves every 40 epochs (`frl_multiplier_rate`).

Training step: TRADES KL-PGD (eval mode, start x + 0.001 N, 10 sign steps) with per-sample
eps_i = eps * s_{y_i}; loss = sum_i w0_{y_i} CE_i / sum_i w0_{y_i}
+ beta * sum_i w1_{y_i} KL_i / sum_i w1_{y_i} (`frl_weighted_loss`).

Official code (github.com/hannxu123/fair_robust) versus paper, and the switches here:
- Violations carry no positive part in the code (`clamp(min=-1000)`); the paper's
  Lagrangian has one: `positive_part: true`.
- The latest code normalises the two loss terms separately (default); the earlier scripts,
  including the removed Remargin-only one, divide both by sum(w0 + w1):
  `loss_normalization: joint`.
- Reweight+Remargin steps by max_i(eps_i) / 4 (`step_rule: max_eps_quarter`), Reweight and
  Remargin by 2/255 (`step_rule: fixed`, using `step_size`).
- Remargin (`frl_rm`, from the removed `frlrm.py`) still reweights the clean term (l0 with
  a1, lim 0.3) but keeps l1 = 0; only Reweight+Remargin caps s at 3 (others 2.5).
- The attack start x + 0.001 N is not clamped to [0, 1] before the first gradient, as in
  the code's `trades_adv`.
- The code runs f(x), f(x'), f(x) in train mode (CE, then the KL's two sides); so does the
  default `forward_order: clean_adv_clean`; `clean_adv` shares one f(x) (faster, the same
  gradients up to rounding, other BatchNorm running statistics), as in `TRADES`.
- The KL is the code's `kl_div(log_softmax(f(x')), softmax(f(x)))` (`losses.trades_kl`).
- b_c uses the plain adversarial accuracy, as the code does; `ClasswiseResult.boundary_err`
  counts a sample robust only when it is also clean-correct (they differ only for
  inputs the attack happens to fix).
- Multipliers are kept in float64 (the code's are float32).
- Under DDP the weighted-mean denominators are summed over ranks (`all_reduce_sum` from
  the epoch context), so N processes optimise exactly what one process does.

Checked side by side against hannxu123/fair_robust@a80547def881cb4ca99b50e7544f997f9a0210a7
(`utils_frl.py` for Reweight, `utils_frl2.py` for Reweight+Remargin: `trades_adv` and the
loss of `train_model`) with the same multipliers and start noise on a small BatchNorm
CNN: bit-identical adversarial points, the same loss, parameter gradients equal to 2e-6
(relative; the weights are float64 here), identical BatchNorm running statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robustfair.errors import ConfigError
from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod
from robustfair.methods.trades import FORWARD_ORDERS, trades_adversarial, trades_terms
from robustfair.typed_config import param

# ---------------------------------------------------------------------------------------
# Pure update steps. Vectors are float tensors [C]; nothing here touches a model.
# ---------------------------------------------------------------------------------------


def frl_violations(
    class_clean_error: torch.Tensor,
    class_boundary_error: torch.Tensor,
    clean_error: float,
    boundary_error: float,
    *,
    tau0: float,
    tau1: float,
    positive_part: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fairness-constraint violations (g0, g1), each [C].

    g0_c = e_c - e - tau0 (clean error), g1_c = b_c - b - tau1 (boundary error).
    positive_part=False is the official code (negative violations lower the multipliers);
    True takes max(0, g) as the paper's Lagrangian does.
    """
    g0 = class_clean_error - clean_error - tau0
    g1 = class_boundary_error - boundary_error - tau1
    if positive_part:
        g0, g1 = g0.clamp(min=0), g1.clamp(min=0)
    return g0, g1


def frl_normalize_multiplier(multiplier: torch.Tensor, lim: float) -> torch.Tensor:
    """Clamp at >= 0, then rescale to sum to `lim` if the sum exceeds it (code's `normalize_lambda`)."""
    multiplier = multiplier.clamp(min=0)
    total = multiplier.sum()
    if total > lim:
        multiplier = multiplier * (lim / total)
    return multiplier


def frl_update_multipliers(
    l0: torch.Tensor,
    l1: torch.Tensor,
    l2: torch.Tensor,
    g0: torch.Tensor,
    g1: torch.Tensor,
    *,
    a1: float,
    a2: float,
    lim: float,
    reweight_clean: bool = True,
    reweight_boundary: bool = True,
    remargin: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch's multiplier update; returns new (l0, l1, l2), each [C].

    l0 += a1 * g0 and l1 += 2 * a1 * g1 (when enabled), then both are clamped >= 0 and
    rescaled to sum to `lim` if their sum exceeds it; l2 += a2 * g1 (when `remargin`),
    without clamp or rescale.
    """
    if reweight_clean:
        l0 = l0 + a1 * g0
    if reweight_boundary:
        l1 = l1 + 2 * a1 * g1
    if remargin:
        l2 = l2 + a2 * g1
    return frl_normalize_multiplier(l0, lim), frl_normalize_multiplier(l1, lim), l2.clone()


def frl_class_weights(multiplier: torch.Tensor) -> torch.Tensor:
    """Class weights w_c = 1/C + l_c - (1/C) sum_j l_j, [C] (sum to 1)."""
    num_classes = multiplier.shape[0]
    return 1.0 / num_classes + multiplier - multiplier.sum() / num_classes


def frl_margin_factors(l2: torch.Tensor, *, cap: float, floor: float = 0.98) -> torch.Tensor:
    """Per-class eps factors s_c = clamp(exp(2 * l2_c), floor, cap), [C]."""
    return torch.exp(2 * l2).clamp(min=floor, max=cap)


def frl_multiplier_rate(a1: float, epoch: int, halve_every: int = 40) -> float:
    """a1 used at 0-based `epoch`: halved every `halve_every` epochs.

    The code halves `if now_epoch % 40 == 0` (1-based) before that epoch's update, so the
    40th epoch (0-based 39) already uses a1 / 2.
    """
    return a1 * 0.5 ** ((epoch + 1) // halve_every)


def frl_weighted_loss(
    ce: torch.Tensor,
    kl: torch.Tensor,
    w0: torch.Tensor,
    w1: torch.Tensor,
    *,
    beta: float,
    normalization: str = "separate",
    denominators: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Scalar FRL loss from per-sample CE, KL [B] and per-sample weights w0, w1 [B].

    separate (latest code): sum(w0 CE) / sum(w0) + beta * sum(w1 KL) / sum(w1).
    joint (earlier code): sum(w0 CE + beta w1 KL) / sum(w0 + w1).
    denominators: (sum w0, sum w1) to use instead of the local sums (the global sums under
    DDP, divided by the number of ranks).
    """
    sum_w0, sum_w1 = denominators if denominators is not None else (w0.sum(), w1.sum())
    if normalization == "separate":
        return (w0 * ce).sum() / sum_w0 + beta * (w1 * kl).sum() / sum_w1
    if normalization == "joint":
        return (w0 * ce + beta * w1 * kl).sum() / (sum_w0 + sum_w1)
    raise ConfigError(f"loss_normalization: {normalization!r} is not allowed; valid values: separate, joint")


def frl_validation_errors(result: Any) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(e_c [C], b_c [C], e, b) float64 from a `robustfair.metrics.ClasswiseResult`, as the code computes them.

    e_c = 1 - acc_c and b_c = acc_c - advacc_c, with advacc_c the plain accuracy on the
    attacked inputs (`adversarial_acc`; the code's `acc_adv`); e = 1 - correct / N and
    b = (correct - correct_adv) / N over the whole split (sample-weighted).
    """
    count = torch.as_tensor(result.count, dtype=torch.float64)
    if (count <= 0).any():
        empty = [int(i) for i in torch.nonzero(count <= 0).flatten()]
        raise ValueError(f"FRL validation split has no samples of class(es) {empty}")
    clean_acc = torch.as_tensor(result.clean_acc, dtype=torch.float64)
    adversarial_acc = torch.as_tensor(result.adversarial_acc, dtype=torch.float64)
    total = count.sum()
    clean_error = 1.0 - float((clean_acc * count).sum() / total)
    boundary_error = float(((clean_acc - adversarial_acc) * count).sum() / total)
    return 1.0 - clean_acc, clean_acc - adversarial_acc, clean_error, boundary_error


# ---------------------------------------------------------------------------------------
# Configs: one per variant, defaults from METHODS.md's table and the official scripts.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FRLConfig(MethodConfig):
    """Fields shared by the FRL variants (Reweight defaults)."""

    eps: float = param(8 / 255, low=0.0, help="base perturbation budget (code: 8/255)")
    step_size: float = param(2 / 255, low=0.0, low_open=True, help="attack step size when step_rule is 'fixed'")
    steps: int = param(10, low=1, help="TRADES attack steps while training")
    beta: float = param(1.5, low=0.0, help="weight of the KL robustness term")
    tau0: float = param(0.1, help="tolerance of the clean-error constraint")
    tau1: float = param(0.1, help="tolerance of the boundary-error constraint")
    a1: float = param(0.05, low=0.0, help="multiplier update rate of l0 (l1 uses 2 * a1)")
    lim: float = param(0.5, low=0.0, low_open=True, help="bound on the sum of l0 and of l1")
    halve_every: int = param(40, low=1, help="a1 halves every this many epochs")
    positive_part: bool = param(False, help="take max(0, g) of the violations (paper) instead of g (code)")
    loss_normalization: str = param(
        "separate",
        choices=("separate", "joint"),
        help="normalise CE and KL by their own weight sums (latest code) or jointly",
    )
    start_scale: float = param(0.001, low=0.0, help="std of the Gaussian start of the TRADES attack")
    forward_order: str = param(
        "clean_adv_clean",
        choices=FORWARD_ORDERS,
        help="train-mode forwards per step: clean_adv_clean = the code's (f(x) twice); "
        "clean_adv = one shared f(x), faster, other BatchNorm statistics",
    )
    val_attack: str = param("pgd20", help="attack for the per-class validation errors")


@dataclass(frozen=True)
class FRLRemarginConfig(FRLConfig):
    """Variants that enlarge the eps of classes with large boundary error."""

    a2: float = param(0.1, low=0.0, help="update rate of the Remargin multiplier l2")
    margin_cap: float = param(2.5, low=0.0, low_open=True, help="upper clamp of the eps factor exp(2 l2)")
    margin_floor: float = param(0.98, low=0.0, low_open=True, help="lower clamp of the eps factor exp(2 l2)")
    step_rule: str = param(
        "fixed", choices=("fixed", "max_eps_quarter"), help="attack step: step_size, or max_i(eps_i) / 4 of the batch"
    )

    def __post_init__(self) -> None:
        if self.margin_floor > self.margin_cap:
            raise ConfigError(f"margin_floor: {self.margin_floor} exceeds margin_cap {self.margin_cap}")


@dataclass(frozen=True)
class FRLRWConfig(FRLConfig):
    """Reweight: beta 1.5, tau 0.1, a1 0.05, lim 0.5, 40 epochs, uniform eps, step 2/255."""


@dataclass(frozen=True)
class FRLRWRMConfig(FRLRemarginConfig):
    """Reweight+Remargin: beta 1.5, tau 0.07, a1 0.05, a2 0.2, lim 0.5, cap 3, step max eps / 4."""

    tau0: float = param(0.07, help="tolerance of the clean-error constraint (BAT's table: 0.05 and 0.07)")
    tau1: float = param(0.07, help="tolerance of the boundary-error constraint")
    a2: float = param(0.2, low=0.0, help="update rate of the Remargin multiplier l2")
    margin_cap: float = param(3.0, low=0.0, low_open=True, help="upper clamp of the eps factor exp(2 l2)")
    step_rule: str = param(
        "max_eps_quarter",
        choices=("fixed", "max_eps_quarter"),
        help="attack step: step_size, or max_i(eps_i) / 4 of the batch",
    )


@dataclass(frozen=True)
class FRLRMConfig(FRLRemarginConfig):
    """Remargin: beta 1.0, tau 0.1, a1 0.05, a2 0.1, lim 0.3, cap 2.5, step 2/255, 120 epochs."""

    beta: float = param(1.0, low=0.0, help="weight of the KL robustness term")
    lim: float = param(0.3, low=0.0, low_open=True, help="bound on the sum of l0 and of l1")


# ---------------------------------------------------------------------------------------
# The methods.
# ---------------------------------------------------------------------------------------


class FRL(TrainingMethod):
    """Fair Robust Learning ("To be Robust or to be Fair", Xu et al., ICML 2021): base class.

    Subclasses fix which multipliers move: `reweight_boundary` (l1) and `remargin` (l2);
    l0 always moves. State (`state_dict`): l0, l1, l2 [C] float64, the a1 last used and
    the last epoch whose update was applied, so a resumed run continues identically.
    """

    hot_start: ClassVar[bool] = True
    reweight_boundary: ClassVar[bool] = True
    remargin: ClassVar[bool] = False

    def __init__(self, config: Any, *, num_classes: int):
        super().__init__(config, num_classes=num_classes)
        zeros = torch.zeros(num_classes, dtype=torch.float64)
        self.l0, self.l1, self.l2 = zeros.clone(), zeros.clone(), zeros.clone()
        self.a1 = float(config.a1)
        self.applied_epoch = -1
        self._all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._device_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    # -- derived per-class quantities ------------------------------------------------
    def class_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return frl_class_weights(self.l0), frl_class_weights(self.l1)

    def eps_factors(self) -> torch.Tensor:
        if not self.remargin:
            return torch.ones(self.num_classes, dtype=torch.float64)
        c = self.config
        return frl_margin_factors(self.l2, cap=c.margin_cap, floor=c.margin_floor)

    def _per_class_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._device_cache:
            w0, w1 = self.class_weights()
            s = self.eps_factors()
            self._device_cache[device] = tuple(t.to(device=device, dtype=torch.float32) for t in (w0, w1, s))
        return self._device_cache[device]

    # -- epoch hook -------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> Mapping[str, Any]:
        super().on_epoch_start(ctx)
        self._all_reduce_sum = ctx.all_reduce_sum
        c = self.config
        if ctx.epoch <= self.applied_epoch:
            # Resumed inside an epoch whose update was already applied and checkpointed.
            return self._state_logs()
        if ctx.val_loader is None:
            raise ConfigError(
                f"method {self.name}: FRL needs a validation split; set data.val_per_class "
                f"(the paper uses the last 300 training images of each class)"
            )
        result = ctx.evaluate(ctx.model, ctx.val_loader, c.val_attack)
        e_c, b_c, e, b = frl_validation_errors(result)
        if e_c.shape[0] != self.num_classes:
            raise ValueError(f"{self.name}: validation result has {e_c.shape[0]} classes, expected {self.num_classes}")
        self.a1 = frl_multiplier_rate(c.a1, ctx.epoch, c.halve_every)
        g0, g1 = frl_violations(e_c, b_c, e, b, tau0=c.tau0, tau1=c.tau1, positive_part=c.positive_part)
        self.l0, self.l1, self.l2 = frl_update_multipliers(
            self.l0,
            self.l1,
            self.l2,
            g0,
            g1,
            a1=self.a1,
            a2=getattr(c, "a2", 0.0),
            lim=c.lim,
            reweight_clean=True,
            reweight_boundary=self.reweight_boundary,
            remargin=self.remargin,
        )
        self.applied_epoch = ctx.epoch
        self._device_cache.clear()
        logs = self._state_logs()
        logs.update(
            {
                "val_clean_error": _floats(e_c),
                "val_boundary_error": _floats(b_c),
                "val_clean_error_total": e,
                "val_boundary_error_total": b,
                "g0": _floats(g0),
                "g1": _floats(g1),
            }
        )
        return logs

    def _state_logs(self) -> dict[str, Any]:
        w0, w1 = self.class_weights()
        return {
            "l0": _floats(self.l0),
            "l1": _floats(self.l1),
            "l2": _floats(self.l2),
            "w0": _floats(w0),
            "w1": _floats(w1),
            "eps_factor": _floats(self.eps_factors()),
            "a1": self.a1,
        }

    # -- training step ----------------------------------------------------------------
    def attack_budget(self, y: torch.Tensor) -> tuple[torch.Tensor, float | torch.Tensor]:
        """Per-sample eps_i = eps * s_{y_i} [B] and the step size for this batch."""
        c = self.config
        _, _, s = self._per_class_on(y.device)
        eps = c.eps * s[y]
        if getattr(c, "step_rule", "fixed") == "max_eps_quarter":
            # A [B] tensor (not .item()) keeps the step free of a host synchronisation.
            return eps, (eps.max() / 4).expand_as(eps)
        return eps, c.step_size

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        w0_c, w1_c, _ = self._per_class_on(y.device)
        eps, step_size = self.attack_budget(y)
        x_adv = trades_adversarial(model, x, y, eps=eps, step_size=step_size, steps=c.steps, start_scale=c.start_scale)
        t = trades_terms(model, x, x_adv, y, c.forward_order)
        logits_adv, ce, kl = t.logits_adv, t.ce, t.kl
        w0, w1 = w0_c[y], w1_c[y]
        loss = frl_weighted_loss(
            ce,
            kl,
            w0,
            w1,
            beta=c.beta,
            normalization=c.loss_normalization,
            denominators=self._global_denominators(w0, w1),
        )
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(loss, {"ce": ce.detach().mean(), "kl": kl.detach().mean(), "train_robust_acc": robust})

    def _global_denominators(self, w0: torch.Tensor, w1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(sum w0, sum w1) over all ranks divided by the number of ranks, or None on one process.

        DDP averages the ranks' gradients, so each rank dividing by (global sum / ranks)
        makes the averaged loss the global weighted mean.
        """
        if self._all_reduce_sum is None:
            return None
        sums = torch.stack([w0.sum(), w1.sum(), torch.ones((), device=w0.device)]).detach()
        sums = self._all_reduce_sum(sums)
        ranks = sums[2]
        return sums[0] / ranks, sums[1] / ranks

    # -- resume -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "l0": self.l0.clone(),
            "l1": self.l1.clone(),
            "l2": self.l2.clone(),
            "a1": self.a1,
            "applied_epoch": self.applied_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("l0", "l1", "l2"):
            value = torch.as_tensor(state[key], dtype=torch.float64).cpu()
            if value.shape != (self.num_classes,):
                raise ValueError(
                    f"{self.name} state {key!r}: expected shape ({self.num_classes},), got {tuple(value.shape)}"
                )
            setattr(self, key, value.clone())
        self.a1 = float(state["a1"])
        self.applied_epoch = int(state.get("applied_epoch", -1))
        self._device_cache.clear()


class FRLReweight(FRL):
    """FRL Reweight ("To be Robust or to be Fair", Xu et al., ICML 2021).

    Defaults (official `frlrw.py`): beta 1.5, tau0 = tau1 = 0.1, a1 0.05, lim 0.5, 40
    epochs; uniform eps 8/255 (l2 stays 0), attack step 2/255.
    """

    name = "frl_rw"
    Config = FRLRWConfig
    reweight_boundary = True
    remargin = False


class FRLReweightRemargin(FRL):
    """FRL Reweight+Remargin ("To be Robust or to be Fair", Xu et al., ICML 2021).

    Defaults (official `frlrmrw.py`, latest utils): beta 1.5, tau0 = tau1 = 0.07 (BAT's
    table reports 0.05 and 0.07), a1 0.05, a2 0.2, lim 0.5, eps factor cap 3, attack step
    max_i(eps_i) / 4, 40 epochs.
    """

    name = "frl_rwrm"
    Config = FRLRWRMConfig
    reweight_boundary = True
    remargin = True


class FRLRemargin(FRL):
    """FRL Remargin ("To be Robust or to be Fair", Xu et al., ICML 2021).

    From the official `frlrm.py` (later removed from the repository): beta 1.0,
    tau0 = tau1 = 0.1, a1 0.05 (l0 still reweights the clean term), a2 0.1, lim 0.3,
    l1 = 0 (uniform KL weights), eps factor cap 2.5, attack step 2/255, 120 epochs.
    That script normalised the loss jointly (`loss_normalization: joint` to match it);
    the default keeps the separate normalisation of METHODS.md.
    """

    name = "frl_rm"
    Config = FRLRMConfig
    reweight_boundary = False
    remargin = True


def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.tolist()]
