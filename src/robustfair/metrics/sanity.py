"""Sanity checks run with every evaluation, before a robust accuracy is trusted.

The usual ways a robustness number lies (gradient masking, a broken attack, a model that
returns probabilities) leave traces that cheap checks catch; "On Evaluating Adversarial
Robustness" (Carlini et al., 2019) lists them. Each check here measures one:

- robust_not_above_clean: per class, the accuracy on attacked inputs is not above the
  clean accuracy (an attack that fixes mistakes is not ascending the loss);
- more_steps_not_weaker: PGD with more steps and restarts does not leave the model more
  accurate than PGD-20 (beyond a one-sample / 1% tolerance);
- large_eps_near_zero: with a budget covering the whole input box (eps = 1 in pixel
  units) accuracy is near 0% (if not, gradients do not lead anywhere);
- input_gradients_nonzero: the loss has finite, non-zero input gradients at the clean
  inputs (all-zero gradients make every gradient attack a no-op);
- outputs_are_logits: the model returns logits, not probabilities (rows of non-negative
  numbers summing to 1 would make cross entropy and the margin loss wrong).

A failing check never stops a run: it is recorded in results.json (`sanity`) and
reported through `log("warning: ...")`. Everything but the first check runs on a
class-balanced subset of at most `max_samples` samples (the first samples of each class),
with a seeded generator, so the checks are cheap and reproducible.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from robustfair.errors import ConfigError

Check = dict[str, Any]

# More steps may only lose by chance (random starts): one sample or 1% of the subset.
STRONGER_TOLERANCE = 0.01
LARGE_EPS = 1.0
LARGE_EPS_MAX_ACCURACY = 0.05
MAX_ZERO_GRADIENT_FRACTION = 0.05


def run_sanity_checks(model: nn.Module, data: Iterable, *, result: Any, eps: float, num_classes: int,
                      device: str | torch.device | None = None, log: Callable[[str], Any] = print,
                      max_samples: int = 200, norm: str = "linf", seed: int = 0,
                      weak_steps: int = 20, strong_steps: int = 50, strong_restarts: int = 2,
                      large_eps: float = LARGE_EPS,
                      large_eps_max_accuracy: float = LARGE_EPS_MAX_ACCURACY) -> dict[str, Any]:
    """Run every check; returns the JSON-serialisable record stored as results.json's `sanity`.

    model: the evaluated model (its train/eval mode is restored); data: a re-iterable of
        (x float [B, ...] in [0, 1], y int [B]) batches (the evaluation's test batches);
    result: the evaluation's `ClasswiseResult` (or its `to_dict()` form) under the main
        attack; eps: that attack's budget in input units; norm: "linf" or "l2".
    Returns {"passed": bool, "num_samples": n, "eps", "seconds", "checks": [{name, passed,
    measured, message}]}. A check that cannot run is recorded as failed with the reason.
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ConfigError(f"max_samples: {max_samples!r} must be an integer >= 1")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"eps: {eps!r} must be a number >= 0")
    start_time = time.perf_counter()
    model = getattr(model, "module", model)
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)

    checks: list[Check] = [_guarded("robust_not_above_clean", lambda: robust_not_above_clean(result))]
    x, y = class_balanced_sample(data, num_classes=num_classes, max_samples=max_samples, device=device)
    if x is None:
        checks.append(_check("subset", False, {}, "no test samples to run the checks on"))
    else:
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            checks.append(_guarded("outputs_are_logits", lambda: outputs_are_logits(model, x)))
            checks.append(_guarded("input_gradients_nonzero", lambda: input_gradients_nonzero(model, x, y)))
            if eps > 0:
                checks.append(_guarded("more_steps_not_weaker", lambda: more_steps_not_weaker(
                    model, x, y, eps=eps, norm=norm, seed=seed, weak_steps=weak_steps,
                    strong_steps=strong_steps, strong_restarts=strong_restarts)))
            checks.append(_guarded("large_eps_near_zero", lambda: large_eps_near_zero(
                model, x, y, eps=large_eps, norm=norm, seed=seed, max_accuracy=large_eps_max_accuracy)))
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
        "seconds": round(time.perf_counter() - start_time, 3),
        "checks": checks,
    }


# ---- the checks (each returns a Check) ----------------------------------------------------

def robust_not_above_clean(result: Any) -> Check:
    """Per class: robust accuracy <= clean accuracy, and accuracy on attacked inputs <= clean."""
    from robustfair.metrics.classwise import ClasswiseResult

    if isinstance(result, Mapping):
        result = ClasswiseResult.from_dict(result)
    clean, robust, adversarial = result.clean_acc, result.robust_acc, result.adversarial_acc
    present = result.count > 0
    above = [result.classes[c] for c in range(result.num_classes)
             if present[c] and (robust[c] > clean[c] + 1e-12 or adversarial[c] > clean[c] + 1e-12)]
    measured = {"clean_acc": _percent(clean), "robust_acc": _percent(robust),
                "adversarial_acc": _percent(adversarial), "classes_above_clean": above}
    if above:
        return _check("robust_not_above_clean", False, measured,
                      f"accuracy under attack is above clean accuracy for class(es) {', '.join(above)}: "
                      "the attack turns mistakes into correct predictions, so it is not maximising the loss")
    return _check("robust_not_above_clean", True, measured, "robust and attacked accuracy <= clean for every class")


def outputs_are_logits(model: nn.Module, x: torch.Tensor) -> Check:
    with torch.no_grad():
        out = model(x).float()
    finite = bool(torch.isfinite(out).all())
    sums = out.sum(1)
    probabilities = bool((out >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-4))
    measured = {"finite": finite, "min": float(out.min()), "max": float(out.max()),
                "mean_row_sum": float(sums.mean())}
    if not finite:
        return _check("outputs_are_logits", False, measured, "the model returns non-finite outputs")
    if probabilities:
        return _check("outputs_are_logits", False, measured,
                      "the model's rows are non-negative and sum to 1: it returns probabilities, but the "
                      "losses and attacks expect logits")
    return _check("outputs_are_logits", True, measured, "outputs are finite logits")


def input_gradients_nonzero(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            max_zero_fraction: float = MAX_ZERO_GRADIENT_FRACTION) -> Check:
    """Cross-entropy input gradients at the clean inputs: finite, and zero for few samples."""
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(model(inputs).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, inputs, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(inputs)
    norms = grad.detach().flatten(1).abs().sum(1)
    finite = bool(torch.isfinite(norms).all())
    zero_fraction = float((norms == 0).float().mean())
    finite_norms = norms[torch.isfinite(norms)]
    measured = {"zero_fraction": zero_fraction, "finite": finite,
                "median_l1_norm": float(finite_norms.median()) if finite_norms.numel() else None}
    if not finite:
        return _check("input_gradients_nonzero", False, measured, "input gradients contain NaN or inf")
    if zero_fraction > max_zero_fraction:
        return _check("input_gradients_nonzero", False, measured,
                      f"{100 * zero_fraction:.1f}% of samples have an all-zero input gradient (more than "
                      f"{100 * max_zero_fraction:.0f}%): gradient attacks cannot move them, robust accuracy "
                      "may be overestimated (gradient masking)")
    return _check("input_gradients_nonzero", True, measured, "input gradients are finite and non-zero")


def more_steps_not_weaker(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
                          seed: int = 0, weak_steps: int = 20, strong_steps: int = 50,
                          strong_restarts: int = 2, tolerance: float = STRONGER_TOLERANCE) -> Check:
    """Robust accuracy under PGD-`strong_steps` with restarts <= under PGD-`weak_steps` (+ tolerance).

    The weak attack takes steps of eps/4 (the evaluation protocol's 2/255 at 8/255), the
    strong one eps/10 (finer, with more steps and random restarts).
    """
    weak = _robust_accuracy(model, x, y, eps=eps, step_size=eps / 4, steps=weak_steps, restarts=1,
                            loss="ce", norm=norm, seed=seed)
    strong = _robust_accuracy(model, x, y, eps=eps, step_size=eps / 10, steps=strong_steps,
                              restarts=strong_restarts, loss="ce", norm=norm, seed=seed + 1)
    slack = max(1.0 / y.shape[0], tolerance)
    measured = {"weak": {"steps": weak_steps, "restarts": 1, "step_size": eps / 4, "robust_acc": 100 * weak},
                "strong": {"steps": strong_steps, "restarts": strong_restarts, "step_size": eps / 10,
                           "robust_acc": 100 * strong},
                "tolerance": 100 * slack}
    if strong > weak + slack + 1e-12:
        return _check("more_steps_not_weaker", False, measured,
                      f"PGD-{strong_steps} with {strong_restarts} restarts leaves {100 * strong:.1f}% robust "
                      f"accuracy, more than PGD-{weak_steps}'s {100 * weak:.1f}%: the attack is not converging "
                      "(gradient masking or a too-large step)")
    return _check("more_steps_not_weaker", True, measured,
                  f"PGD-{strong_steps} x{strong_restarts}: {100 * strong:.1f}% <= PGD-{weak_steps}: {100 * weak:.1f}%")


def large_eps_near_zero(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = LARGE_EPS,
                        norm: str = "linf", seed: int = 0, steps: int = 10,
                        max_accuracy: float = LARGE_EPS_MAX_ACCURACY) -> Check:
    """Accuracy under PGD-`steps` (steps of eps/4) on the CW margin (no softmax saturation) at a huge eps.

    A model that predicts one class k on (nearly) the whole input box keeps class k's
    samples at any eps; the message then says so (a degenerate, e.g. undertrained, model
    rather than a failing attack); the check still fails, since the number is not ~0.
    """
    robust, predictions = _attacked(model, x, y, eps=eps, step_size=eps / 4, steps=steps, restarts=1,
                                    loss="margin", norm=norm, seed=seed + 2)
    accuracy = float(robust.float().mean())
    counts = torch.bincount(predictions, minlength=1)
    majority = int(counts.argmax())
    majority_share = float(counts[majority]) / predictions.numel()
    measured = {"eps": eps, "steps": steps, "accuracy": 100 * accuracy, "max_accuracy": 100 * max_accuracy,
                "majority_prediction": majority, "majority_share": 100 * majority_share}
    if accuracy <= max_accuracy:
        return _check("large_eps_near_zero", True, measured, f"{100 * accuracy:.1f}% accuracy at eps {eps:g}")
    message = f"{100 * accuracy:.1f}% accuracy at eps {eps:g} (expected <= {100 * max_accuracy:.0f}%): "
    if bool((y[robust] == majority).all()) and majority_share >= 0.9:
        message += (f"every surviving sample is of class {majority}, which the model predicts for "
                    f"{100 * majority_share:.0f}% of the attacked inputs: a (nearly) constant classifier, e.g. "
                    "undertrained, rather than a failing attack")
    else:
        message += "the attack cannot reach misclassification even with an unbounded budget (gradient masking?)"
    return _check("large_eps_near_zero", False, measured, message)


# ---- helpers ----------------------------------------------------------------------------

def class_balanced_sample(data: Iterable, *, num_classes: int, max_samples: int,
                          device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
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


def _robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **attack: Any) -> float:
    """Fraction correct both clean and under the attack (AutoAttack's convention)."""
    robust, _ = _attacked(model, x, y, **attack)
    return float(robust.float().mean())


def _attacked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float,
              steps: int, restarts: int, loss: str, norm: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    x_adv = pgd(model, x[keep], y[keep], eps=eps, step_size=step_size, steps=steps, norm=norm, loss=loss,
                start="uniform", restarts=restarts, generator=generator)
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
        return _check(name, False, {}, f"could not run: {type(err).__name__}: {err}")


def _check(name: str, passed: bool, measured: Mapping[str, Any], message: str) -> Check:
    return {"name": name, "passed": bool(passed), "measured": _jsonable(measured), "message": message}


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


__all__ = ["run_sanity_checks", "robust_not_above_clean", "outputs_are_logits", "input_gradients_nonzero",
           "more_steps_not_weaker", "large_eps_near_zero", "class_balanced_sample"]
