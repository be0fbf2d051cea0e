"""Sanity checks run with every evaluation, before a robust accuracy is trusted.

The usual ways a robustness number lies (gradient masking, a broken attack, a model that
returns probabilities) leave traces that cheap checks catch; "On Evaluating Adversarial
Robustness" (Carlini et al., 2019) lists them. Each check here measures one:

- robust_not_above_clean: per class, the accuracy on attacked inputs is not above the
  clean accuracy (an attack that fixes mistakes is not ascending the loss);
- more_steps_not_weaker: PGD with more steps and restarts does not leave the model more
  accurate than PGD-20 (beyond a tolerance of 1% of the subset, at least one sample),
  compared in integer sample counts, so a tie at the tolerance passes;
- large_eps_near_zero: with a budget covering the whole input box (L-inf eps 1, L2 eps
  sqrt(D) for D input values, in pixel units) accuracy is near 0% (if not, gradients do not
  lead anywhere);
- input_gradients_nonzero: the loss has finite, non-zero input gradients at the clean
  inputs (all-zero gradients make every gradient attack a no-op);
- outputs_are_logits: the model returns logits, not probabilities (rows of non-negative
  numbers summing to 1 would make cross entropy and the margin loss wrong).

The checks attack in the evaluated threat model: the norm and eps of the evaluation's
attack (an L2 evaluation is checked with L2 PGD), read from the result when not given.
Each check records its `threshold` next to what it `measured`. A failing check never stops
a run: it is recorded in results.json (`sanity`) and reported through
`log("warning: ...")`. Everything but the first check runs on a class-balanced subset of
at most `max_samples` samples (the first samples of each class), with seeded generators,
so the checks are cheap and reproducible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from robustfair.errors import ConfigError

Check = dict[str, Any]

# More steps may only lose by chance (random starts): 1% of the subset, at least one sample.
STRONGER_TOLERANCE_PERCENT = 1
LARGE_EPS = 1.0  # L-inf: the whole [0, 1] box; L2 uses sqrt(D), the box's diagonal
LARGE_EPS_MAX_ACCURACY = 0.05
MAX_ZERO_GRADIENT_FRACTION = 0.05


def run_sanity_checks(
    model: nn.Module,
    data: Iterable,
    *,
    result: Any,
    num_classes: int,
    eps: float | None = None,
    norm: str | None = None,
    device: str | torch.device | None = None,
    log: Callable[[str], Any] = print,
    max_samples: int = 200,
    seed: int = 0,
    weak_steps: int = 20,
    strong_steps: int = 50,
    strong_restarts: int = 2,
    large_eps: float | None = None,
    large_eps_max_accuracy: float = LARGE_EPS_MAX_ACCURACY,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run every check; returns the JSON-serialisable record stored as results.json's `sanity`.

    model: the evaluated model (its train/eval mode is restored); data: a re-iterable of
        (x float [B, ...] in [0, 1], y int [B]) batches (the evaluation's test batches);
    result: the evaluation's `ClasswiseResult` (or its `to_dict()` form) under the main
        attack; eps, norm: that attack's threat model in input units, "linf" or "l2"
        (default: read from `result.attack`); large_eps: default the whole input box for
        the norm (1 in L-inf, sqrt(D) in L2); progress: a bar over the checks (None: when
        stderr is a terminal).
    Returns {"passed": bool, "num_samples": n, "eps", "norm", "seconds", "checks": [{name,
    passed, measured, threshold, message}]}. A check that cannot run is recorded as failed
    with the reason.
    """
    from robustfair.engine.progress import progress_bar

    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ConfigError(f"max_samples: {max_samples!r} must be an integer >= 1")
    eps, norm = _threat_model(result, eps, norm)
    start_time = time.perf_counter()
    model = getattr(model, "module", model)
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)

    checks: list[Check] = [_guarded("robust_not_above_clean", lambda: robust_not_above_clean(result))]
    x, y = class_balanced_sample(data, num_classes=num_classes, max_samples=max_samples, device=device)
    if x is None:
        checks.append(_check("subset", False, {}, "at least one test sample", "no test samples to run the checks on"))
    else:
        if large_eps is None:
            large_eps = box_diameter(x, norm)
        runs: list[tuple[str, Callable[[], Check]]] = [
            ("outputs_are_logits", lambda: outputs_are_logits(model, x)),
            ("input_gradients_nonzero", lambda: input_gradients_nonzero(model, x, y)),
        ]
        if eps > 0:
            runs.append(
                (
                    "more_steps_not_weaker",
                    lambda: more_steps_not_weaker(
                        model,
                        x,
                        y,
                        eps=eps,
                        norm=norm,
                        seed=seed,
                        weak_steps=weak_steps,
                        strong_steps=strong_steps,
                        strong_restarts=strong_restarts,
                    ),
                )
            )
        runs.append(
            (
                "large_eps_near_zero",
                lambda: large_eps_near_zero(
                    model, x, y, eps=large_eps, norm=norm, seed=seed, max_accuracy=large_eps_max_accuracy
                ),
            )
        )
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            with progress_bar(len(runs), f"sanity checks ({norm}, eps {eps:g})", unit="check", enabled=progress) as bar:
                for name, run in runs:
                    bar.set_postfix_str(name)
                    checks.append(_guarded(name, run))
                    bar.update(1)
        finally:
            for module, training in modes:
                module.train(training)
    for check in checks:
        if not check["passed"]:
            log(f"warning: sanity check {check['name']} failed: {check['message']}")
    return {
        "passed": all(check["passed"] for check in checks),
        "num_samples": 0 if x is None else int(y.shape[0]),
        "eps": float(eps),
        "norm": norm,
        "seed": seed,
        "seconds": round(time.perf_counter() - start_time, 3),
        "checks": checks,
    }


def _threat_model(result: Any, eps: float | None, norm: str | None) -> tuple[float, str]:
    """(eps, norm) as given, else from the evaluated attack's record; ConfigError if unknown."""
    attack = result.get("attack", {}) if isinstance(result, Mapping) else getattr(result, "attack", {})
    attack = attack if isinstance(attack, Mapping) else {}
    if eps is None:
        eps = attack.get("eps")
    if norm is None:
        norm = attack.get("norm") or "linf"
    if eps is None:
        raise ConfigError(
            "eps: the result's attack does not record its eps; pass the evaluated threat model (eps=..., norm=...)"
        )
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"eps: {eps!r} must be a number >= 0")
    if norm not in ("linf", "l2"):
        raise ConfigError(f"norm: {norm!r} is not allowed; valid values: linf, l2")
    return float(eps), norm


def box_diameter(x: torch.Tensor, norm: str) -> float:
    """The largest distance inside the [0, 1] input box: 1 in L-inf, sqrt(D) in L2 (D values per input)."""
    return LARGE_EPS if norm == "linf" else math.sqrt(x[0].numel())


# ---- the checks (each returns a Check) ----------------------------------------------------


def robust_not_above_clean(result: Any) -> Check:
    """Per class: robust accuracy <= clean accuracy, and accuracy on attacked inputs <= clean
    (compared as integer counts of each class)."""
    from robustfair.metrics.classwise import ClasswiseResult

    if isinstance(result, Mapping):
        result = ClasswiseResult.from_dict(result)
    clean_correct = np.diag(result.clean_confusion)
    adversarial_correct = np.diag(result.adversarial_confusion)
    above = [
        result.classes[c]
        for c in range(result.num_classes)
        if result.robust_correct[c] > clean_correct[c] or adversarial_correct[c] > clean_correct[c]
    ]
    measured = {
        "clean_acc": _percent(result.clean_acc),
        "robust_acc": _percent(result.robust_acc),
        "adversarial_acc": _percent(result.adversarial_acc),
        "classes_above_clean": above,
    }
    threshold = "per class: correct under attack <= correct on clean inputs (sample counts)"
    if above:
        return _check(
            "robust_not_above_clean",
            False,
            measured,
            threshold,
            f"accuracy under attack is above clean accuracy for class(es) {', '.join(above)}: "
            "the attack turns mistakes into correct predictions, so it is not maximising the loss",
        )
    return _check(
        "robust_not_above_clean", True, measured, threshold, "robust and attacked accuracy <= clean for every class"
    )


def outputs_are_logits(model: nn.Module, x: torch.Tensor) -> Check:
    """The model's outputs are finite and not rows of probabilities (non-negative, summing to 1)."""
    with torch.no_grad():
        out = model(x).float()
    finite = bool(torch.isfinite(out).all())
    sums = out.sum(1)
    probabilities = bool((out >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-4))
    measured = {"finite": finite, "min": float(out.min()), "max": float(out.max()), "mean_row_sum": float(sums.mean())}
    threshold = "finite, and not every row >= 0 with sum 1 (+- 1e-4)"
    if not finite:
        return _check("outputs_are_logits", False, measured, threshold, "the model returns non-finite outputs")
    if probabilities:
        return _check(
            "outputs_are_logits",
            False,
            measured,
            threshold,
            "the model's rows are non-negative and sum to 1: it returns probabilities, but the "
            "losses and attacks expect logits",
        )
    return _check("outputs_are_logits", True, measured, threshold, "outputs are finite logits")


def input_gradients_nonzero(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_zero_fraction: float = MAX_ZERO_GRADIENT_FRACTION
) -> Check:
    """Cross-entropy input gradients at the clean inputs: finite, and zero for few samples
    (at most floor(max_zero_fraction * n) of the n samples)."""
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(model(inputs).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, inputs, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(inputs)
    norms = grad.detach().flatten(1).abs().sum(1)
    finite = bool(torch.isfinite(norms).all())
    zero = int((norms == 0).sum())
    allowed = int(math.floor(max_zero_fraction * y.shape[0] + 1e-9))
    finite_norms = norms[torch.isfinite(norms)]
    measured = {
        "zero_samples": zero,
        "num_samples": int(y.shape[0]),
        "zero_fraction": zero / y.shape[0],
        "finite": finite,
        "median_l1_norm": float(finite_norms.median()) if finite_norms.numel() else None,
    }
    threshold = (
        f"finite, and at most {allowed} of {y.shape[0]} samples ({100 * max_zero_fraction:.0f}%) "
        "with an all-zero input gradient"
    )
    if not finite:
        return _check("input_gradients_nonzero", False, measured, threshold, "input gradients contain NaN or inf")
    if zero > allowed:
        return _check(
            "input_gradients_nonzero",
            False,
            measured,
            threshold,
            f"{zero} of {y.shape[0]} samples have an all-zero input gradient (more than {allowed}): "
            "gradient attacks cannot move them, robust accuracy may be overestimated (gradient masking)",
        )
    return _check(
        "input_gradients_nonzero",
        True,
        measured,
        threshold,
        f"input gradients are finite; {zero} of {y.shape[0]} are all-zero",
    )


def more_steps_not_weaker(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    seed: int = 0,
    weak_steps: int = 20,
    strong_steps: int = 50,
    strong_restarts: int = 2,
    tolerance_percent: int = STRONGER_TOLERANCE_PERCENT,
) -> Check:
    """Samples robust under PGD-`strong_steps` with restarts <= those robust under
    PGD-`weak_steps` + a tolerance of `tolerance_percent`% of the n samples (at least one),
    all in integer counts.

    The weak attack takes steps of eps/4 (the evaluation protocol's 2/255 at 8/255), the
    strong one eps/10 (finer, with more steps and random restarts); both in `norm`.
    """
    n = int(y.shape[0])
    weak = _robust_count(
        model, x, y, eps=eps, step_size=eps / 4, steps=weak_steps, restarts=1, loss="ce", norm=norm, seed=seed
    )
    strong = _robust_count(
        model,
        x,
        y,
        eps=eps,
        step_size=eps / 10,
        steps=strong_steps,
        restarts=strong_restarts,
        loss="ce",
        norm=norm,
        seed=seed + 1,
    )
    slack = max(1, n * tolerance_percent // 100)
    measured = {
        "num_samples": n,
        "norm": norm,
        "eps": eps,
        "weak": {
            "steps": weak_steps,
            "restarts": 1,
            "step_size": eps / 4,
            "robust": weak,
            "robust_acc": 100 * weak / n,
        },
        "strong": {
            "steps": strong_steps,
            "restarts": strong_restarts,
            "step_size": eps / 10,
            "robust": strong,
            "robust_acc": 100 * strong / n,
        },
        "tolerance": slack,
    }
    threshold = (
        f"robust under PGD-{strong_steps} x{strong_restarts} <= robust under PGD-{weak_steps} + {slack} "
        f"sample{'s' if slack != 1 else ''} ({tolerance_percent}% of {n}, at least 1)"
    )
    if strong > weak + slack:
        return _check(
            "more_steps_not_weaker",
            False,
            measured,
            threshold,
            f"PGD-{strong_steps} with {strong_restarts} restarts leaves {strong} of {n} samples robust, "
            f"more than PGD-{weak_steps}'s {weak} + {slack}: the attack is not converging "
            "(gradient masking or a too-large step)",
        )
    return _check(
        "more_steps_not_weaker",
        True,
        measured,
        threshold,
        f"robust: PGD-{strong_steps} x{strong_restarts} {strong} <= PGD-{weak_steps} {weak} + {slack} of {n}",
    )


def large_eps_near_zero(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | None = None,
    norm: str = "linf",
    seed: int = 0,
    steps: int = 10,
    max_accuracy: float = LARGE_EPS_MAX_ACCURACY,
) -> Check:
    """Accuracy under PGD-`steps` (steps of eps/4) on the CW margin (no softmax saturation) at a
    budget covering the input box (default 1 in L-inf, sqrt(D) in L2): at most
    floor(max_accuracy * n) of the n samples may stay correct.

    A model that predicts one class k on (nearly) the whole input box keeps class k's
    samples at any eps; the message then says so (a degenerate, e.g. undertrained, model
    rather than a failing attack); the check still fails, since the number is not ~0.
    """
    eps = box_diameter(x, norm) if eps is None else eps
    n = int(y.shape[0])
    robust, predictions = _attacked(
        model, x, y, eps=eps, step_size=eps / 4, steps=steps, restarts=1, loss="margin", norm=norm, seed=seed + 2
    )
    correct = int(robust.sum())
    allowed = int(math.floor(max_accuracy * n + 1e-9))
    counts = torch.bincount(predictions, minlength=1)
    majority = int(counts.argmax())
    majority_share = float(counts[majority]) / predictions.numel()
    measured = {
        "eps": eps,
        "norm": norm,
        "steps": steps,
        "correct": correct,
        "num_samples": n,
        "accuracy": 100 * correct / n,
        "max_accuracy": 100 * max_accuracy,
        "majority_prediction": majority,
        "majority_share": 100 * majority_share,
    }
    threshold = f"at most {allowed} of {n} samples ({100 * max_accuracy:.0f}%) correct at {norm} eps {eps:g}"
    if correct <= allowed:
        return _check(
            "large_eps_near_zero", True, measured, threshold, f"{correct} of {n} correct at {norm} eps {eps:g}"
        )
    message = (
        f"{correct} of {n} samples ({100 * correct / n:.1f}%) stay correct at {norm} eps {eps:g} "
        f"(expected <= {allowed}): "
    )
    if bool((y[robust] == majority).all()) and majority_share >= 0.9:
        message += (
            f"every surviving sample is of class {majority}, which the model predicts for "
            f"{100 * majority_share:.0f}% of the attacked inputs: a (nearly) constant classifier, e.g. "
            "undertrained, rather than a failing attack"
        )
    else:
        message += "the attack cannot reach misclassification even with an unbounded budget (gradient masking?)"
    return _check("large_eps_near_zero", False, measured, threshold, message)


# ---- helpers ----------------------------------------------------------------------------


def class_balanced_sample(
    data: Iterable, *, num_classes: int, max_samples: int, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The first ceil(max_samples / C) samples of each class from (x, y) batches (at most
    max_samples in all), on `device`; (None, None) when there are none."""
    quota = max(1, math.ceil(max_samples / num_classes))
    taken = np.zeros(num_classes, dtype=np.int64)
    xs, ys = [], []
    for batch in data:
        x, y = torch.as_tensor(batch[0]), torch.as_tensor(batch[1]).long()
        labels = y.cpu().numpy()
        keep = []
        for i, label in enumerate(labels.tolist()):
            if 0 <= label < num_classes and taken[label] < quota:
                taken[label] += 1
                keep.append(i)
        if keep:
            index = torch.as_tensor(keep, device=x.device)
            xs.append(x.index_select(0, index))
            ys.append(y.to(x.device).index_select(0, index))
        if taken.sum() >= min(max_samples, quota * num_classes) or (taken >= quota).all():
            break
    if not xs:
        return None, None
    x = torch.cat(xs)[:max_samples].to(device)
    y = torch.cat(ys)[:max_samples].to(device)
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return x, y


def _robust_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **attack: Any) -> int:
    """Samples correct both clean and under the attack (AutoAttack's convention)."""
    robust, _ = _attacked(model, x, y, **attack)
    return int(robust.sum())


def _attacked(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    restarts: int,
    loss: str,
    norm: str,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(robust bool [n]: correct clean and under PGD, predictions int64 [n] on the attacked
    inputs, the clean prediction for samples already wrong, which are not attacked)."""
    from robustfair.attacks import pgd

    with torch.no_grad():
        predictions = model(x).argmax(1)
    correct = predictions == y
    robust = torch.zeros_like(correct)
    if not bool(correct.any()):
        return robust, predictions
    # Only clean-correct samples can be robust: attacking the rest would cost without telling.
    keep = torch.nonzero(correct).squeeze(1)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    x_adv = pgd(
        model,
        x[keep],
        y[keep],
        eps=eps,
        step_size=step_size,
        steps=steps,
        norm=norm,
        loss=loss,
        start="uniform",
        restarts=restarts,
        generator=generator,
    )
    with torch.no_grad():
        adversarial = model(x_adv).argmax(1)
    predictions[keep] = adversarial
    robust[keep] = adversarial == y[keep]
    return robust, predictions


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    """Run one check; one that cannot run is a failed check saying why, not a crashed run."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - a broken check must not lose the finished run
        return _check(name, False, {}, "the check runs", f"could not run: {type(err).__name__}: {err}")


def _check(name: str, passed: bool, measured: Mapping[str, Any], threshold: str, message: str) -> Check:
    return {
        "name": name,
        "passed": bool(passed),
        "measured": _jsonable(measured),
        "threshold": threshold,
        "message": message,
    }


def _percent(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else round(100.0 * float(v), 4) for v in np.asarray(values).tolist()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


__all__ = [
    "run_sanity_checks",
    "box_diameter",
    "robust_not_above_clean",
    "outputs_are_logits",
    "input_gradients_nonzero",
    "more_steps_not_weaker",
    "large_eps_near_zero",
    "class_balanced_sample",
]
