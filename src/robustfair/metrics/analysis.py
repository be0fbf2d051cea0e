"""Source-class and target-class fairness of a trained model (BAT's Figure 2).

"Improving Robust Fairness via Balance Adversarial Training" (Sun et al., AAAI 2023)
measures two things on an adversarially trained model:

- **Source-class fairness**: per class, how many attack steps it takes to misclassify a
  sample (many small steps: 1000 steps of 0.4/255 at eps 8/255). An early-stopped PGD
  runs it: a sample leaves the batch at its first misclassification, so the cost is the
  number of steps actually needed, not K per sample.
- **Target-class fairness**: which classes the adversarial examples land in. From the
  confusion matrix of adversarial predictions at every step of a fixed attack (PGD-10 of
  2/255 at 8/255), the distribution of target classes overall and per source class, and
  its KL divergence from uniform.

The paper's claim is that both relate to class-wise robust accuracy: classes that need
few steps and classes that are over-represented as targets are the weak ones.
`fairness_analysis` runs both attacks; the pure functions below turn their per-sample
outputs into the statistics and are what the closed-form tests pin.

Conventions. A sample already wrong at the start has flip step 0; one never
misclassified in K steps is censored and counts as K + 1 steps (then the per-class mean
equals the sum over k = 0..K of the class's accuracy at step k, the paper's "the first
measure integrates the second over the attack steps"). A target is a predicted class
other than the true one: the target distribution of source class c is row c of the
adversarial confusion matrix without its diagonal, normalised; the overall target
distribution is the column sums of the off-diagonal confusion matrix, normalised.
`KL(p || U) = sum_j p_j log(p_j * n)` over the n possible targets (C for the overall
distribution, C - 1 per source class), in nats; 0 means perfectly uniform.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from robustfair.errors import ConfigError, DataError

ANALYSIS_VERSION = 1
# BAT Figure 2 at eps 8/255: 1000 steps of 0.4/255 (eps / 20) for the steps to misclassify,
# PGD-10 of 2/255 (eps / 4) for the confusion matrices.
SOURCE_STEPS = 1000
SOURCE_STEP_FRACTION = 0.05
TARGET_STEPS = 10
TARGET_STEP_FRACTION = 0.25
HISTOGRAM_BINS = 20
CYCLE_SEGMENT = 50


# ---- source class: steps to misclassify --------------------------------------------------


def censored_steps(flip_step: Any, steps: int) -> np.ndarray:
    """int64 [N]: the flip step, with never-flipped samples (-1) counted as steps + 1."""
    flips = _int_vector(flip_step, "flip_step")
    if flips.size and (flips.min() < -1 or flips.max() > steps):
        raise DataError(f"flip_step: values must lie in [-1, {steps}], got [{flips.min()}, {flips.max()}]")
    return np.where(flips < 0, steps + 1, flips)


def steps_to_flip_by_class(
    flip_step: Any, labels: Any, *, num_classes: int, steps: int, bins: int = HISTOGRAM_BINS
) -> dict[str, Any]:
    """Per-class statistics of the number of attack steps needed to misclassify.

    flip_step: int [N] from `early_stopped_pgd` (0 = wrong at the start, -1 = never within
        `steps` steps); labels: int [N] in [0, num_classes).
    Returns lists of length C (None for a class without samples):
      count, mean_steps (never-flipped counted as steps + 1), median_steps,
      mean_steps_clean_correct (over samples correct at the start only), mean_steps_flipped
      (over samples correct at the start that the attack misclassified: 1..steps, no
      censoring), never_flipped (fraction still correct after all steps), wrong_at_start
      (fraction with step 0);
    and `histogram`: {edges [bins + 1] over [0, steps + 1), counts [C][bins]} of the
    flip steps of flipped samples (the never-flipped are `never_flipped`), `censored_value`,
    and `overall` (the same statistics over all samples).
    """
    _check_classes(num_classes)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps: {steps!r} must be an integer >= 0")
    values = censored_steps(flip_step, steps)
    y = _labels(labels, values.shape[0], num_classes)
    flipped = values <= steps
    edges = np.linspace(0.0, steps + 1.0, max(1, min(bins, steps + 1)) + 1)
    per_class: dict[str, list] = {
        key: []
        for key in (
            "count",
            "mean_steps",
            "median_steps",
            "mean_steps_clean_correct",
            "mean_steps_flipped",
            "never_flipped",
            "wrong_at_start",
        )
    }
    histogram = []
    for c in range(num_classes):
        mine = y == c
        stats = _step_stats(values[mine], steps)
        for key in per_class:
            per_class[key].append(stats[key])
        histogram.append(np.histogram(values[mine & flipped], bins=edges)[0].tolist())
    return {
        "per_class": per_class,
        "overall": _step_stats(values, steps),
        "censored_value": steps + 1,
        "histogram": {"edges": edges.tolist(), "counts": histogram},
    }


def _step_stats(values: np.ndarray, steps: int) -> dict[str, Any]:
    n = int(values.size)
    if n == 0:
        return {
            "count": 0,
            "mean_steps": None,
            "median_steps": None,
            "mean_steps_clean_correct": None,
            "mean_steps_flipped": None,
            "never_flipped": None,
            "wrong_at_start": None,
        }
    correct_at_start = values[values > 0]
    flipped = correct_at_start[correct_at_start <= steps]
    return {
        "count": n,
        "mean_steps": float(values.mean()),
        "median_steps": float(np.median(values)),
        "mean_steps_clean_correct": float(correct_at_start.mean()) if correct_at_start.size else None,
        "mean_steps_flipped": float(flipped.mean()) if flipped.size else None,
        "never_flipped": float((values > steps).mean()),
        "wrong_at_start": float((values == 0).mean()),
    }


# ---- target class: confusion at every step ------------------------------------------------


def confusion_by_step(predictions: Any, labels: Any, *, num_classes: int) -> np.ndarray:
    """int64 [K+1, C, C]: for each step k, counts of (true class, predicted class at step k).

    predictions: int [K+1, N] (as `early_stopped_pgd(record_predictions=True)` returns),
    labels: int [N]. Counts add over batches.
    """
    _check_classes(num_classes)
    preds = predictions.detach().cpu().numpy() if isinstance(predictions, torch.Tensor) else np.asarray(predictions)
    if preds.ndim != 2:
        raise DataError(f"predictions: expected [K+1, N], got shape {preds.shape}")
    y = _labels(labels, preds.shape[1], num_classes)
    if preds.size and (preds.min() < 0 or preds.max() >= num_classes):
        raise DataError(f"predictions: values must lie in [0, {num_classes}), got [{preds.min()}, {preds.max()}]")
    c = num_classes
    cells = (np.arange(preds.shape[0])[:, None] * c * c + y[None, :] * c + preds.astype(np.int64)).ravel()
    return np.bincount(cells, minlength=preds.shape[0] * c * c).reshape(preds.shape[0], c, c)


def kl_to_uniform(p: Any) -> float:
    """KL(p || U) in nats for a probability vector p over n outcomes; NaN if p sums to 0."""
    p = np.asarray(p, dtype=np.float64)
    total = p.sum()
    if p.size == 0 or total <= 0:
        return float("nan")
    p = p / total
    nonzero = p > 0
    return float(np.sum(p[nonzero] * np.log(p[nonzero] * p.size)))


def target_distribution(confusion: Any) -> dict[str, Any]:
    """Where misclassified samples go, from one adversarial confusion matrix [C, C].

    Returns distribution [C] (share of all misclassifications that land in each class),
    kl_to_uniform (of that, over C classes), per_source [C][C] (row c: the targets of class
    c over the other C - 1 classes, diagonal 0; all None when class c has no
    misclassification), per_source_kl [C] (over C - 1 classes), top_target [C] (index, or
    None), top_target_share [C], misclassified [C] counts, and predicted [C] (share of all
    predictions per class, diagonal included: the paper's column sums).
    """
    m = np.asarray(confusion, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise DataError(f"confusion: expected a square [C, C] matrix, got shape {m.shape}")
    c = m.shape[0]
    off = m * (1 - np.eye(c, dtype=np.int64))
    wrong = off.sum(1)
    total_wrong = int(wrong.sum())
    per_source, per_source_kl, top, top_share = [], [], [], []
    for row in range(c):
        if wrong[row] == 0:
            per_source.append([None] * c)
            per_source_kl.append(None)
            top.append(None)
            top_share.append(None)
            continue
        shares = off[row] / wrong[row]
        per_source.append(shares.tolist())
        others = np.delete(shares, row)
        per_source_kl.append(kl_to_uniform(others) if c > 1 else None)
        best = int(np.argmax(shares))
        top.append(best)
        top_share.append(float(shares[best]))
    columns = off.sum(0)
    distribution = (columns / total_wrong).tolist() if total_wrong else [None] * c
    total = m.sum()
    return {
        "distribution": distribution,
        "kl_to_uniform": kl_to_uniform(columns) if total_wrong else None,
        "per_source": per_source,
        "per_source_kl": per_source_kl,
        "top_target": top,
        "top_target_share": top_share,
        "misclassified": wrong.tolist(),
        "predicted": (m.sum(0) / total).tolist() if total else [None] * c,
    }


def robust_accuracy_from_predictions(predictions: Any, labels: Any, *, num_classes: int) -> list[float | None]:
    """Per-class fraction correct both at step 0 (the clean input) and at the last step."""
    preds = predictions.detach().cpu().numpy() if isinstance(predictions, torch.Tensor) else np.asarray(predictions)
    y = _labels(labels, preds.shape[1], num_classes)
    robust = (preds[0] == y) & (preds[-1] == y)
    return [None if not (y == c).any() else float(robust[y == c].mean()) for c in range(num_classes)]


# ---- correlations ------------------------------------------------------------------------


def correlation(a: Sequence[float | None], b: Sequence[float | None]) -> dict[str, Any]:
    """Pearson and Spearman correlation over the entries where both are known.

    Returns {pearson, spearman, n}; a coefficient is None with fewer than 3 pairs or when
    one side is constant (undefined). Spearman is Pearson on average ranks (ties share).
    """
    x = np.asarray([np.nan if v is None else v for v in a], dtype=np.float64)
    y = np.asarray([np.nan if v is None else v for v in b], dtype=np.float64)
    if x.shape != y.shape:
        raise DataError(f"correlation: {x.size} values against {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n < 3:
        return {"pearson": None, "spearman": None, "n": n}
    return {"pearson": _pearson(x, y), "spearman": _pearson(_average_ranks(x), _average_ranks(y)), "n": n}


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    if denominator == 0.0:
        return None
    return float(np.clip((dx * dy).sum() / denominator, -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1, dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


# ---- running the attacks ------------------------------------------------------------------


def steps_to_flip(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    loss: str = "ce",
    norm: str = "linf",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    segment: int = CYCLE_SEGMENT,
) -> tuple[torch.Tensor, int]:
    """Flip steps of an early-stopped PGD from the clean input, stopping periodic trajectories too.

    Returns (flip_step int64 [B] exactly as one `early_stopped_pgd(..., start="none",
    mode="last_clean")` run of `steps` steps gives it, gradient evaluations spent).

    Why segments: with many small sign steps, a robust sample's iterate soon settles into
    a cycle (typically period 2, bouncing on the eps-box), and a plain run would pay all K
    steps for it. The trajectory is deterministic (no random start, no noise), so it is run
    in segments of `segment` (even) steps, each starting where the last ended; a sample
    whose iterate ends a segment exactly where it started it is periodic with a period
    dividing `segment`, every point of its cycle was classified correctly during that
    segment, so it never flips and stops there. The flip steps are unchanged (L-inf:
    exactly; L2: up to the rounding of re-projecting each segment's start point).
    """
    from robustfair.attacks import early_stopped_pgd

    if segment < 2 or segment % 2:
        raise ConfigError(f"segment: {segment!r} must be an even integer >= 2 (period-2 cycles must close)")
    flip_step = torch.full((y.shape[0],), -1, dtype=torch.long, device=y.device)
    active = torch.arange(y.shape[0], device=y.device)
    current = x.detach().clone()
    done = evaluations = 0
    while done < steps and active.numel():
        length = min(segment, steps - done)
        result = early_stopped_pgd(
            model,
            x[active],
            y[active],
            eps=eps,
            step_size=step_size,
            steps=length,
            loss=loss,
            norm=norm,
            start=current,
            tau=0,
            clamp=clamp,
            bn_mode="eval",
            mode="last_clean",
            check_final=True,
        )
        evaluations += result.gradient_evaluations
        flipped = result.flip_step >= 0
        flip_step[active[flipped]] = result.flip_step[flipped] + done
        done += length
        # Back at its segment start: periodic, every point of the cycle checked correct.
        cycled = (result.last_iterate == current).flatten(1).all(1)
        keep = ~flipped & ~cycled
        active, current = active[keep], result.last_iterate[keep]
    return flip_step, int(evaluations)


def fairness_analysis(
    model: nn.Module,
    data: Any,
    *,
    num_classes: int,
    eps: float,
    classes: Sequence[str] | None = None,
    steps: int = SOURCE_STEPS,
    step_size: float | None = None,
    target_steps: int = TARGET_STEPS,
    target_step_size: float | None = None,
    loss: str = "ce",
    norm: str = "linf",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 500,
    device: str | torch.device | None = None,
    dataset_name: str = "",
    bins: int = HISTOGRAM_BINS,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Source- and target-class fairness of `model` on `data` (the analysis.json record).

    data: a dataset with `.x` / `.y` (uint8 images are scaled by 1/255) or an iterable of
        (x float [B, ...] in [0, 1], y int [B]) batches.
    eps: the attack budget in input units. steps, step_size: the early-stopped attack for
        steps to misclassify (default step eps / 20, BAT's 0.4/255 at 8/255). target_steps,
        target_step_size: the fixed attack whose per-step confusion matrices give the target
        distributions (default PGD-10 of eps / 4, BAT's 2/255 at 8/255); its last step also
        gives the class-wise robust accuracy the correlations use. Both attacks start at the
        clean input (step 0 is the clean prediction) and ascend `loss` ("ce" as in BAT, or
        "margin"). The steps attack stops periodic trajectories early (`steps_to_flip`).
    progress: a bar over the samples (None: when stderr is a terminal).
    Returns a JSON-serialisable dict: `source` (flip steps per sample and per-class
    statistics), `target` (confusion by step [K+1][C][C], distributions, KL), `per_class`
    (the table the CLI prints) and `correlations`.
    """
    from robustfair.attacks import early_stopped_pgd
    from robustfair.data.input_range import RangeWatch
    from robustfair.engine.progress import counting_calls, progress_bar

    _check_classes(num_classes)
    if loss == "kl":
        raise ConfigError(
            "loss: 'kl' has zero gradient at the clean input, where both analysis attacks start; "
            "use 'ce' (BAT's analysis) or 'margin'"
        )
    for name, value in (("steps", steps), ("target_steps", target_steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}: {value!r} must be an integer >= 1")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f"eps: {eps!r} must be a number > 0")
    step_size = eps * SOURCE_STEP_FRACTION if step_size is None else step_size
    target_step_size = eps * TARGET_STEP_FRACTION if target_step_size is None else target_step_size
    for name, value in (("step_size", step_size), ("target_step_size", target_step_size)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name}: {value!r} must be a number > 0")
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ConfigError(f"classes: {len(names)} names for num_classes={num_classes}")
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)
    model = getattr(model, "module", model)

    flips, labels = [], []
    confusion = np.zeros((target_steps + 1, num_classes, num_classes), dtype=np.int64)
    # Correct both clean and at the last step (AutoAttack's convention): the confusion
    # matrices alone cannot tell, as a sample wrong at the start may end up right.
    robust_correct = np.zeros(num_classes, dtype=np.int64)
    source_passes = 0
    common = dict(eps=float(eps), loss=loss, norm=norm, start="none", tau=0, clamp=clamp, bn_mode="eval")
    total = len(data.y) if hasattr(data, "y") else None
    watch = RangeWatch("analysis data") if clamp is not None and tuple(clamp) == (0, 1) else None  # [0, 1] inputs
    # Outer bar: images done; inner bar: the model's forward passes, live within a long batch.
    with (
        progress_bar(total, "analyze", unit="img", enabled=progress) as bar,
        progress_bar(None, "analyze: attack passes", unit="pass", enabled=progress, leave=False) as passes,
        counting_calls(model, passes),
    ):
        for x, y in _batches(data, batch_size, device):
            x = watch.batch(x) if watch is not None else x
            flip_step, evaluations = steps_to_flip(
                model, x, y, eps=float(eps), step_size=float(step_size), steps=steps, loss=loss, norm=norm, clamp=clamp
            )
            flips.append(flip_step.cpu().numpy())
            source_passes += evaluations
            target = early_stopped_pgd(
                model,
                x,
                y,
                step_size=float(target_step_size),
                steps=target_steps,
                early_stop=False,
                record_predictions=True,
                **common,
            )
            confusion += confusion_by_step(target.predictions, y, num_classes=num_classes)
            both = ((target.predictions[0] == y) & (target.predictions[-1] == y)).cpu().numpy()
            y_host = y.cpu().numpy()
            robust_correct += np.bincount(y_host[both], minlength=num_classes)[:num_classes]
            labels.append(y_host)
            bar.update(len(y_host))
    if watch is not None:
        watch.finish()
    if not labels:
        raise DataError("analysis: the data holds no samples")
    flip_step = np.concatenate(flips)
    y_all = np.concatenate(labels)
    if y_all.min() < 0 or y_all.max() >= num_classes:
        raise DataError(f"labels outside [0, {num_classes}); is num_classes right?")

    source_stats = steps_to_flip_by_class(flip_step, y_all, num_classes=num_classes, steps=steps, bins=bins)
    final = target_distribution(confusion[-1])
    by_step = [target_distribution(m) for m in confusion]
    clean_counts = confusion[0]
    count = clean_counts.sum(1)
    robust_acc = [None if count[c] == 0 else float(robust_correct[c] / count[c]) for c in range(num_classes)]
    clean_acc = [None if count[c] == 0 else float(clean_counts[c, c] / count[c]) for c in range(num_classes)]
    per_class = {
        "count": count.tolist(),
        "clean_acc": clean_acc,
        "robust_acc": robust_acc,
        "mean_steps": source_stats["per_class"]["mean_steps"],
        "mean_steps_flipped": source_stats["per_class"]["mean_steps_flipped"],
        "never_flipped": source_stats["per_class"]["never_flipped"],
        "misclassified": final["misclassified"],
        "top_target": final["top_target"],
        "top_target_share": final["top_target_share"],
        "target_kl": final["per_source_kl"],
        "target_share": final["distribution"],
    }
    return {
        "kind": "robustfair.analysis",
        "version": ANALYSIS_VERSION,
        "dataset": dataset_name,
        "classes": names,
        "num_samples": int(y_all.size),
        "eps": float(eps),
        "norm": norm,
        "units": {"accuracy": "fraction", "kl": "nats", "steps": "attack steps"},
        "source": {
            "attack": {
                "name": "early_stopped_pgd",
                "steps": steps,
                "step_size": float(step_size),
                "loss": _name(loss),
                "start": "none",
                "early_stop": True,
                "cycle_segment": CYCLE_SEGMENT,
                "gradient_evaluations": int(source_passes),
            },
            "flip_step": flip_step.tolist(),
            "labels": y_all.tolist(),
            **source_stats,
        },
        "target": {
            "attack": {
                "name": "pgd",
                "steps": target_steps,
                "step_size": float(target_step_size),
                "loss": _name(loss),
                "start": "none",
                "early_stop": False,
            },
            "confusion_by_step": confusion.tolist(),
            "kl_by_step": [d["kl_to_uniform"] for d in by_step],
            **final,
        },
        "per_class": per_class,
        "correlations": analysis_correlations(per_class),
    }


def analysis_correlations(per_class: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The paper's relations, each against class-wise robust accuracy.

    steps_vs_robust_acc: mean steps to misclassify (expected positive; partly by
    construction, as never-flipped samples count K + 1); flipped_steps_vs_robust_acc: mean
    steps over the samples that did flip (no censoring); target_kl_vs_robust_acc: KL from
    uniform of each source class's targets; target_share_vs_robust_acc: how often the class
    is the target (BAT: inverse).
    """
    robust = per_class["robust_acc"]
    return {
        "steps_vs_robust_acc": correlation(per_class["mean_steps"], robust),
        "flipped_steps_vs_robust_acc": correlation(
            per_class.get("mean_steps_flipped", []) or [None] * len(robust), robust
        ),
        "target_kl_vs_robust_acc": correlation(per_class["target_kl"], robust),
        "target_share_vs_robust_acc": correlation(per_class["target_share"], robust),
    }


def _name(loss: Any) -> str:
    return loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)


def _batches(data: Any, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(data, "x") and hasattr(data, "y"):
        features, labels = torch.as_tensor(np.asarray(data.x)), torch.as_tensor(np.asarray(data.y))
        if features.shape[0] != labels.shape[0]:
            raise DataError(f"dataset has {features.shape[0]} inputs but {labels.shape[0]} labels")
        for start in range(0, labels.shape[0], batch_size):
            yield (
                _unit_float(features[start : start + batch_size].to(device)),
                labels[start : start + batch_size].to(device).long(),
            )
        return
    for batch in data:
        yield _unit_float(torch.as_tensor(batch[0]).to(device)), torch.as_tensor(batch[1]).to(device).long()


def _unit_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x if x.is_floating_point() else x.float()


def _int_vector(values: Any, name: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{name}: expected a 1-D vector, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{name}: expected integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _labels(values: Any, n: int, num_classes: int) -> np.ndarray:
    y = _int_vector(values, "labels")
    if y.shape[0] != n:
        raise DataError(f"labels: {y.shape[0]} entries for {n} samples")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"labels: values must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return y


def _check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes: {num_classes!r} must be an integer >= 1")


__all__ = [
    "fairness_analysis",
    "steps_to_flip",
    "steps_to_flip_by_class",
    "censored_steps",
    "confusion_by_step",
    "target_distribution",
    "kl_to_uniform",
    "robust_accuracy_from_predictions",
    "correlation",
    "analysis_correlations",
]
