"""Class-wise clean, robust and boundary errors (the protocol of "To be Robust or to be Fair", Xu et al. 2021).

For class c, with acc_c the clean accuracy and robacc_c the robust accuracy on that class:
clean (standard) error e_c = 1 - acc_c, robust error r_c = 1 - robacc_c, boundary error
b_c = acc_c - robacc_c (correct on the clean input, wrong under attack). "Average" is over
the whole set (sample-weighted), "Worst" the maximum over classes.

A sample counts as robust only when it is classified correctly both clean and under
attack (AutoAttack's convention): `robust = clean_correct & adv_correct`. So robacc_c <=
acc_c always, and b_c >= 0, even for an attack that happens to fix a misclassified input.

Everything derives from three count tensors: the clean and adversarial confusion
matrices ([C, C], rows = true class) and the per-class count of samples correct both
clean and under attack ([C]). Counts add across batches and distributed ranks, so a DDP
evaluation sums them (one all-reduce) and computes the result from the sums. Under
AutoAttack a fourth count says, per class, which component attack broke each sample first
(`broken_by`).

Field names say what they hold: per-class `clean_acc` / `robust_acc` are accuracies, the
`*_err` fields and every `summary()` number are errors (`to_dict()` gives percentages).

Reproducible by default: `evaluate_classwise` draws every random number of the attack from
a generator seeded with `seed` (default 0, recorded in the result's attack description),
so the same model, data, batches and seed give the same result, bit for bit on a CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robustfair.errors import ConfigError, DataError

SUMMARY_KEYS = ("avg_std_err", "worst_std_err", "avg_bndy_err", "worst_bndy_err", "avg_rob_err", "worst_rob_err")

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class ClasswiseResult:
    """Class-wise evaluation of one model under one attack (or clean only).

    clean_confusion, adversarial_confusion: int [C, C] counts, row = true class, column =
        predicted class (on the clean / the attacked input).
    robust_correct: int [C], samples of each class correct both clean and under attack.
    classes: C class names; dataset: its name; attack: JSON-able description
        ({"name": "none"} for a clean-only evaluation).
    broken_by: for AutoAttack, {column: int [C] counts} in order: "misclassified_clean"
        (wrong on the clean input, not attacked), one column per component attack (the
        samples it fooled first), "robust" (no component fooled them); each class's
        columns sum to its count. None for other attacks.

    Per-class properties are fractions in [0, 1] (NaN for a class without samples);
    `summary()` and `to_dict()` report percentages.
    """

    clean_confusion: np.ndarray
    adversarial_confusion: np.ndarray
    robust_correct: np.ndarray
    classes: tuple[str, ...]
    dataset: str = ""
    attack: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    broken_by: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        clean = _count_array(self.clean_confusion, "clean_confusion")
        adversarial = _count_array(self.adversarial_confusion, "adversarial_confusion")
        robust = _count_array(self.robust_correct, "robust_correct")
        num_classes = clean.shape[0] if clean.ndim == 2 else -1
        if clean.shape != (num_classes, num_classes) or num_classes < 1:
            raise DataError(f"clean_confusion: expected a square [C, C] matrix, got shape {clean.shape}")
        if adversarial.shape != clean.shape:
            raise DataError(
                f"adversarial_confusion: shape {adversarial.shape} differs from clean_confusion {clean.shape}"
            )
        if robust.shape != (num_classes,):
            raise DataError(f"robust_correct: expected shape ({num_classes},), got {robust.shape}")
        if not np.array_equal(clean.sum(1), adversarial.sum(1)):
            raise DataError("clean and adversarial confusion matrices count different samples per class")
        if (robust > np.minimum(np.diag(clean), np.diag(adversarial))).any():
            raise DataError("robust_correct exceeds the clean or adversarial correct count of a class")
        if clean.sum() == 0:
            raise DataError("no samples were evaluated")
        classes = tuple(str(c) for c in self.classes)
        if len(classes) != num_classes:
            raise DataError(f"classes: {len(classes)} names for {num_classes} classes")
        object.__setattr__(self, "clean_confusion", clean)
        object.__setattr__(self, "adversarial_confusion", adversarial)
        object.__setattr__(self, "robust_correct", robust)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "attack", _jsonable(dict(self.attack or {"name": "none"})))
        if self.broken_by is not None:
            columns = {str(k): _count_array(v, f"broken_by[{k!r}]") for k, v in self.broken_by.items()}
            for name, column in columns.items():
                if column.shape != (num_classes,):
                    raise DataError(f"broken_by[{name!r}]: expected shape ({num_classes},), got {column.shape}")
            if columns and not np.array_equal(sum(columns.values()), clean.sum(1)):
                raise DataError("broken_by: the columns of a class do not add up to its sample count")
            object.__setattr__(self, "broken_by", columns)

    # ---- per class (fractions) -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def count(self) -> np.ndarray:
        """[C] samples per class."""
        return self.clean_confusion.sum(1)

    @property
    def num_samples(self) -> int:
        return int(self.count.sum())

    def _per_class(self, numerator: np.ndarray) -> np.ndarray:
        count = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, numerator / np.maximum(count, 1), np.nan)

    @property
    def clean_acc(self) -> np.ndarray:
        """[C] acc_c: fraction of class c classified correctly on clean inputs."""
        return self._per_class(np.diag(self.clean_confusion))

    @property
    def robust_acc(self) -> np.ndarray:
        """[C] robacc_c: fraction correct both clean and under attack."""
        return self._per_class(self.robust_correct)

    @property
    def adversarial_acc(self) -> np.ndarray:
        """[C] fraction with a correct prediction on the attacked input (whatever the clean one)."""
        return self._per_class(np.diag(self.adversarial_confusion))

    @property
    def clean_err(self) -> np.ndarray:
        """[C] e_c = 1 - acc_c."""
        return 1.0 - self.clean_acc

    @property
    def robust_err(self) -> np.ndarray:
        """[C] r_c = 1 - robacc_c."""
        return 1.0 - self.robust_acc

    @property
    def boundary_err(self) -> np.ndarray:
        """[C] b_c = acc_c - robacc_c."""
        return self._per_class(np.diag(self.clean_confusion) - self.robust_correct)

    # ---- whole set (fractions, sample-weighted) -----------------------------------------
    @property
    def average_clean_err(self) -> float:
        """e: clean error over the whole set."""
        return 1.0 - float(np.trace(self.clean_confusion)) / self.num_samples

    @property
    def average_robust_err(self) -> float:
        """r: robust error over the whole set."""
        return 1.0 - float(self.robust_correct.sum()) / self.num_samples

    @property
    def average_boundary_err(self) -> float:
        """b: boundary error over the whole set (= r - e)."""
        return float(np.trace(self.clean_confusion) - self.robust_correct.sum()) / self.num_samples

    def summary(self) -> dict[str, float]:
        """The six table numbers in percent: Avg./Worst Std., Bndy., Rob. (worst over non-empty classes)."""
        present = self.count > 0
        return {
            "avg_std_err": 100.0 * self.average_clean_err,
            "worst_std_err": 100.0 * float(self.clean_err[present].max()),
            "avg_bndy_err": 100.0 * self.average_boundary_err,
            "worst_bndy_err": 100.0 * float(self.boundary_err[present].max()),
            "avg_rob_err": 100.0 * self.average_robust_err,
            "worst_rob_err": 100.0 * float(self.robust_err[present].max()),
        }

    # ---- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The results.json record; per-class and summary values in percent (null for an empty class).

        per_class holds accuracies (clean_acc, robust_acc), boundary errors and counts;
        summary holds errors (avg/worst std, bndy, rob); broken_by (AutoAttack only) counts.
        """
        record = {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "attack": dict(self.attack),
            "num_samples": self.num_samples,
            "units": "percent",
            "per_class": {
                "clean_acc": _percent_list(self.clean_acc),
                "robust_acc": _percent_list(self.robust_acc),
                "boundary_err": _percent_list(self.boundary_err),
                "count": self.count.tolist(),
                "robust_correct": self.robust_correct.tolist(),
            },
            "summary": self.summary(),
            "confusion": {
                "clean": self.clean_confusion.tolist(),
                "adversarial": self.adversarial_confusion.tolist(),
            },
        }
        if self.broken_by is not None:
            record["broken_by"] = {name: column.tolist() for name, column in self.broken_by.items()}
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClasswiseResult:
        """Rebuild from `to_dict()` output (the counts are the source of truth; derived values are recomputed)."""
        try:
            confusion = data["confusion"]
            clean = np.asarray(confusion["clean"], dtype=np.int64)
            adversarial = np.asarray(confusion["adversarial"], dtype=np.int64)
            per_class = data["per_class"]
            if "robust_correct" in per_class:
                robust = np.asarray(per_class["robust_correct"], dtype=np.int64)
            else:  # written by another tool: recover the integer counts from percentages
                count = np.asarray(per_class["count"], dtype=np.float64)
                acc = np.asarray([0.0 if v is None else v for v in per_class["robust_acc"]], dtype=np.float64)
                robust = np.rint(acc * count / 100.0).astype(np.int64)
            classes = data["classes"]
        except KeyError as err:
            raise DataError(f"class-wise result is missing the key {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise DataError(f"class-wise result has malformed counts: {err}") from None
        return cls(
            clean,
            adversarial,
            robust,
            tuple(classes),
            dataset=str(data.get("dataset", "")),
            attack=dict(data.get("attack") or {"name": "none"}),
            broken_by=data.get("broken_by"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClasswiseResult):
            return NotImplemented
        return (
            np.array_equal(self.clean_confusion, other.clean_confusion)
            and np.array_equal(self.adversarial_confusion, other.adversarial_confusion)
            and np.array_equal(self.robust_correct, other.robust_correct)
            and self.classes == other.classes
            and self.dataset == other.dataset
            and self.attack == other.attack
            and _same_columns(self.broken_by, other.broken_by)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"ClasswiseResult(dataset={self.dataset!r}, attack={self.attack.get('name')!r}, "
            f"n={self.num_samples}, " + ", ".join(f"{k}={v:.2f}" for k, v in s.items()) + ")"
        )


def classwise_result(
    y: Any,
    clean_pred: Any,
    adv_pred: Any,
    *,
    num_classes: int,
    classes: Sequence[str] | None = None,
    dataset: str = "",
    attack: str | Mapping[str, Any] | None = None,
) -> ClasswiseResult:
    """Class-wise result from per-sample labels and predictions (pure).

    y, clean_pred, adv_pred: int [N] (tensors, arrays or lists) with values in
    [0, num_classes); adv_pred None means clean only (robust == clean).
    classes: names (default "0".."C-1"); attack: a name or a JSON-able description.
    """
    _check_num_classes(num_classes)
    labels = _label_vector(y, "y")
    clean = _label_vector(clean_pred, "clean_pred")
    adversarial = clean if adv_pred is None else _label_vector(adv_pred, "adv_pred")
    for name, values in (("y", labels), ("clean_pred", clean), ("adv_pred", adversarial)):
        if values.shape != labels.shape:
            raise DataError(f"{name}: {values.shape[0]} entries but y has {labels.shape[0]}")
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise DataError(f"{name}: values must lie in [0, {num_classes}), got [{values.min()}, {values.max()}]")
    both_correct = (clean == labels) & (adversarial == labels)
    return ClasswiseResult(
        clean_confusion=_confusion(labels, clean, num_classes),
        adversarial_confusion=_confusion(labels, adversarial, num_classes),
        robust_correct=np.bincount(labels[both_correct], minlength=num_classes),
        classes=_class_names(classes, num_classes),
        dataset=dataset,
        attack=_attack_record(attack),
    )


def evaluate_classwise(
    model: nn.Module,
    data: Any,
    *,
    attack: str | Attack | None = "pgd20",
    num_classes: int,
    classes: Sequence[str] | None = None,
    device: str | torch.device | None = "cpu",
    batch_size: int = 256,
    dataset_name: str = "",
    attack_overrides: Mapping[str, Any] | None = None,
    eps: float | None = None,
    step_size: float | None = None,
    seed: int | None = 0,
    reduce: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
    progress: bool | None = None,
    input_range: bool = True,
) -> ClasswiseResult:
    """Evaluate `model` clean and under `attack`, class by class.

    data: an iterable of (x, y) batches (x float [B, ...] in [0, 1] or uint8, y int [B]), or
        a dataset with `.x` / `.y` (uint8 images are scaled by 1/255) or `.as_float()`,
        batched here by `batch_size` (its `.classes` and `.name` fill in `classes` and
        `dataset_name` when those are not given).
    attack: a registered name for `robustfair.attacks.make_attack(name, **attack_overrides)`,
        a callable `(model, x, y) -> x_adv`, or None for clean only.
    eps, step_size: the budget of a named attack in input units (pixel units for images);
        the step follows the preset's rule when only eps is given (`attacks.budget`). Give
        eps: the presets default to 8/255, CIFAR-10's L-inf budget, not every dataset's.
    seed: every random draw of the attack comes from one generator seeded with it (PGD's
        random starts; AutoAttack's own seed), and torch's global generator is seeded with
        it inside the evaluation and restored afterwards (so a callable attack that draws
        from it is reproducible too). Recorded in `result.attack["seed"]`. None: unseeded.
    device: where batches go (None: the model's device); the model is not moved.
    reduce: sums a tensor over distributed ranks (returns the sum, or None after reducing
        in place); the count tensors are reduced in one call, so every rank gets the
        whole set's result.
    progress: a bar over the batches (None: when stderr is a terminal; see
        `robustfair.engine.progress`).
    input_range: check that inputs are float in [0, 1] (InputRangeError, naming the fix,
        otherwise): the first batches on the spot, the rest on the device, read at the end.
        False for data with another valid range (standardised tabular features).

    The model runs in eval mode; every submodule's mode is restored afterwards. Counts stay
    on the device until the end (no host synchronisation per batch).
    """
    from robustfair.data.input_range import RangeWatch, as_unit_float
    from robustfair.engine.progress import progress_bar

    _check_num_classes(num_classes)
    # Evaluate the DDP wrapper's inner module: crafting through the wrapper would arm its
    # gradient reducer; ranks are combined through `reduce` instead.
    model = getattr(model, "module", model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: {batch_size!r} must be an integer >= 1")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"seed: {seed!r} must be an integer >= 0 or None")
    attack_fn, attack_record = _resolve_attack(
        attack, attack_overrides, eps=eps, step_size=step_size, seed=seed, num_classes=num_classes
    )
    if classes is None:
        classes = getattr(data, "classes", None)
    names = _class_names(classes, num_classes)
    if not dataset_name:
        dataset_name = str(getattr(data, "name", "") or "")
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)
    named = isinstance(attack, str)  # a ConfiguredAttack: takes the generator, reports AutoAttack's components
    components = attack_fn.components if named else ()
    attack_seed = attack_record.get("seed") if named else seed
    generator = None if attack_seed is None else torch.Generator(device=device).manual_seed(attack_seed)

    c, k = num_classes, len(components) + 2
    # One flat int64 buffer: clean confusion (C*C) + overflow slot, adversarial confusion
    # (C*C) + overflow slot, robust-correct (C) + discard slot, and for AutoAttack the
    # first-success table (C*K) + discard slot. Invalid labels land in the overflow slots,
    # so no data-dependent branch (and no sync) is needed per batch.
    sizes = [c * c + 1, c * c + 1, c + 1] + ([c * k + 1] if components else [])
    counts = torch.zeros(sum(sizes), dtype=torch.int64, device=device)
    slots = counts.split(sizes)
    clean_slots, adversarial_slots, robust_slots = slots[:3]

    watch = RangeWatch(f"evaluation data{f' ({dataset_name})' if dataset_name else ''}") if input_range else None
    description = "eval " + str(attack_record.get("name", "none"))
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with (
            _seeded_global_rng(attack_seed, device),
            progress_bar(_batch_count(data, batch_size), description, unit="batch", enabled=progress) as bar,
        ):
            for x, y in _batches(data, batch_size, device):
                x = watch.batch(x) if watch is not None else as_unit_float(x)
                with torch.no_grad():
                    clean_pred = _predict(model, x, c)
                first_success = None
                if attack_fn is None:
                    adversarial_pred = clean_pred
                else:
                    with torch.enable_grad():  # callers may evaluate under no_grad; attacks need input gradients
                        if named:
                            outcome = attack_fn.run(model, x, y, generator=generator, progress=progress)
                            x_adv, first_success = outcome.x_adv.detach(), outcome.first_success
                        else:
                            x_adv = attack_fn(model, x, y).detach()
                    with torch.no_grad():
                        adversarial_pred = _predict(model, x_adv, c)
                valid = (y >= 0) & (y < c)
                ones = torch.ones_like(y)
                overflow = torch.full_like(y, c * c)
                clean_slots.index_add_(0, torch.where(valid, y * c + clean_pred, overflow), ones)
                adversarial_slots.index_add_(0, torch.where(valid, y * c + adversarial_pred, overflow), ones)
                both = valid & (clean_pred == y) & (adversarial_pred == y)
                robust_slots.index_add_(0, torch.where(both, y, torch.full_like(y, c)), ones)
                if components and first_success is not None:
                    column = first_success.to(device) + 1  # -1 (misclassified clean) -> column 0
                    slots[3].index_add_(0, torch.where(valid, y * k + column, torch.full_like(y, c * k)), ones)
                bar.update(1)
        if watch is not None:
            watch.finish()
    finally:
        for module, training in modes:
            module.train(training)

    if reduce is not None:
        reduced = reduce(counts)
        counts = counts if reduced is None else reduced
    host = counts.cpu().numpy()
    parts = np.split(host, np.cumsum(sizes)[:-1])
    clean_counts, adversarial_counts, robust_counts = parts[:3]
    if clean_counts[-1]:
        raise DataError(f"{int(clean_counts[-1])} labels outside [0, {num_classes}); is num_classes right?")
    broken_by = None
    if components:
        table = parts[3][:-1].reshape(c, k)
        columns = ("misclassified_clean",) + components + ("robust",)
        broken_by = {name: table[:, i] for i, name in enumerate(columns)}
    return ClasswiseResult(
        clean_confusion=clean_counts[:-1].reshape(c, c),
        adversarial_confusion=adversarial_counts[:-1].reshape(c, c),
        robust_correct=robust_counts[:-1],
        classes=names,
        dataset=dataset_name,
        attack=attack_record,
        broken_by=broken_by,
    )


# ---- helpers ---------------------------------------------------------------------------------


def _predict(model: nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    logits = model(x)
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ConfigError(f"num_classes: {num_classes} but the model returns logits of shape {tuple(logits.shape)}")
    return logits.argmax(1)


def _batches(data: Any, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) on `device`: x as given (uint8 or float; converted and checked by the caller), y int64."""
    if hasattr(data, "x") and hasattr(data, "y"):
        features, labels = torch.as_tensor(data.x), torch.as_tensor(data.y)
    elif hasattr(data, "as_float") and hasattr(data, "y"):
        features, labels = torch.as_tensor(data.as_float()), torch.as_tensor(data.y)
    else:
        for batch in data:
            x, y = batch[0], batch[1]
            yield (
                torch.as_tensor(x).to(device, non_blocking=True),
                torch.as_tensor(y).to(device, non_blocking=True).long(),
            )
        return
    if features.shape[0] != labels.shape[0]:
        raise DataError(f"dataset has {features.shape[0]} inputs but {labels.shape[0]} labels")
    for start in range(0, labels.shape[0], batch_size):
        x = features[start : start + batch_size].to(device, non_blocking=True)
        yield x, labels[start : start + batch_size].to(device, non_blocking=True).long()


def _batch_count(data: Any, batch_size: int) -> int | None:
    """Batches `_batches` will yield, when known (for the progress bar)."""
    if hasattr(data, "y") and (hasattr(data, "x") or hasattr(data, "as_float")):
        return -(-len(data.y) // batch_size)
    try:
        return len(data)
    except TypeError:
        return None


@contextlib.contextmanager
def _seeded_global_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """torch's global generator seeded with `seed` inside, the caller's state restored after."""
    if seed is None:
        yield
        return
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _resolve_attack(
    attack: str | Attack | None,
    overrides: Mapping[str, Any] | None,
    *,
    eps: float | None = None,
    step_size: float | None = None,
    seed: int | None = 0,
    num_classes: int | None = None,
) -> tuple[Attack | None, dict[str, Any]]:
    overrides = dict(overrides or {})
    if attack is None:
        if overrides or eps is not None or step_size is not None:
            raise ConfigError(f"attack_overrides: {sorted(overrides) or ['eps']} given without an attack")
        return None, {"name": "none"}
    if isinstance(attack, str):
        from robustfair.attacks import ATTACKS, budget, make_attack  # imported here: attacks may import metrics

        given = dict(overrides)
        options = {**budget(attack, eps=eps, step_size=step_size), **overrides}
        if "seed" in ATTACKS[attack].options and "seed" not in options:
            options["seed"] = seed  # the evaluation's seed, unless the overrides set the attack's own
        fn = make_attack(attack, **options)
        record: dict[str, Any] = {"name": attack}
        if given:
            record["overrides"] = given
        return fn, _with_params(record, fn, num_classes)
    if callable(attack):
        if overrides or eps is not None or step_size is not None:
            raise ConfigError("attack_overrides: only apply to a named attack; bind them into the callable instead")
        return attack, {**_with_params({"name": _callable_name(attack)}, attack), "seed": seed}
    raise ConfigError(f"attack: expected a name, a callable (model, x, y) -> x_adv or null, got {attack!r}")


def _with_params(record: dict[str, Any], fn: Any, num_classes: int | None = None) -> dict[str, Any]:
    """Add what the attack says about itself: its `describe(num_classes)` / `spec` mapping (eps,
    steps, ... as `robustfair.attacks.make_attack` results provide), or a functools.partial's
    bound keywords."""
    describe = getattr(fn, "describe", None)
    spec = describe(num_classes) if callable(describe) else getattr(fn, "spec", None)
    if isinstance(spec, Mapping):
        return {**spec, **record}
    if isinstance(fn, functools.partial) and fn.keywords:
        record["params"] = dict(fn.keywords)
    return record


def _callable_name(fn: Any) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", None) or type(fn).__name__


def _attack_record(attack: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if attack is None:
        return {"name": "none"}
    if isinstance(attack, str):
        return {"name": attack}
    return dict(attack)


def _jsonable(value: Any) -> Any:
    """A JSON-serialisable copy: tensors and arrays become lists, unknown objects their repr."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return repr(value)


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes: {num_classes!r} must be an integer >= 1")


def _class_names(classes: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    if classes is None:
        return tuple(str(i) for i in range(num_classes))
    names = tuple(str(c) for c in classes)
    if len(names) != num_classes:
        raise ConfigError(f"classes: {len(names)} names given for num_classes={num_classes}")
    return names


def _label_vector(values: Any, field_name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{field_name}: expected a 1-D vector of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{field_name}: expected integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _count_array(values: Any, field_name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.size and not (
        np.issubdtype(array.dtype, np.integer)
        or (np.issubdtype(array.dtype, np.floating) and np.all(array == np.rint(array)))
    ):
        raise DataError(f"{field_name}: counts must be integers")
    array = array.astype(np.int64)
    if (array < 0).any():
        raise DataError(f"{field_name}: counts must be >= 0")
    return array


def _same_columns(a: Mapping[str, np.ndarray] | None, b: Mapping[str, np.ndarray] | None) -> bool:
    if a is None or b is None:
        return a is b
    return list(a) == list(b) and all(np.array_equal(a[name], b[name]) for name in a)


def _percent_list(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else 100.0 * float(v) for v in values.tolist()]
