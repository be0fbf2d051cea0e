"""Named attack presets (`ATTACKS`) and `make_attack(name, **overrides)`.

Each preset carries its threat model: norm, eps and step size. Defaults follow
METHODS.md's evaluation protocol: L-inf eps 8/255 in pixel units, PGD on cross entropy
with step 2/255 and a uniform random start; `pgd20_trades` is the TRADES repository's
evaluation (step 0.003); `pgd20_l2` uses eps 0.5 and Madry et al.'s step rule
2.5 * eps / steps. `budget(name, eps=..., step_size=...)` gives the overrides for another
eps: the step follows the preset's rule (eps / 4 for the L-inf PGD presets, 2.5 eps / steps
for L2, the fixed 0.003 for `pgd20_trades`) unless a step size is given; `make_attack`
itself applies overrides as given (eps alone does not rescale step_size there).

`make_attack` returns a `ConfiguredAttack`: a callable `(model, x, y, generator=None) ->
x_adv` carrying `.spec`, the dictionary results.json records (name, norm, eps, step_size,
steps, restarts, loss, seed, implementation, ...). Its random draws come from `generator`
when given (evaluation passes one seeded from its recorded seed), else from a generator
seeded with the `seed` option, else (seed None) from torch's global generator.
`run(...)` also returns, for AutoAttack, which component fooled each sample first.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from robustfair.attacks.autoattack import (
    AUTOATTACK_ATTACKS,
    VERSIONS,
    autoattack,
    component_settings,
    components_of,
    implementation,
)
from robustfair.attacks.checks import NORMS, STARTS, check_choice, check_clamp, check_number
from robustfair.attacks.mode import BN_MODES
from robustfair.attacks.objectives import loss_name, resolve_objective
from robustfair.attacks.pgd import fgsm, pgd
from robustfair.errors import ConfigError
from robustfair.registry import Registry

DEFAULT_EPS = 8 / 255


def _check_seed(value: Any) -> None:
    if value is not None:
        check_number(value, "seed", integer=True)


def _check_attacks(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"attacks: expected a list of names from {', '.join(AUTOATTACK_ATTACKS)}, got {value!r}")
    for name in value:
        check_choice(name, "attacks", AUTOATTACK_ATTACKS)


# One validator per overridable option; each raises ConfigError naming the field.
_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "eps": lambda v: check_number(v, "eps"),
    "step_size": lambda v: check_number(v, "step_size", low_open=True),
    "steps": lambda v: check_number(v, "steps", low=1, integer=True),
    "restarts": lambda v: check_number(v, "restarts", low=1, integer=True),
    "norm": lambda v: check_choice(v, "norm", NORMS),
    "loss": lambda v: resolve_objective(v),
    "start": lambda v: check_choice(v, "start", STARTS),
    "start_scale": lambda v: check_number(v, "start_scale"),
    "clamp": check_clamp,
    "bn_mode": lambda v: check_choice(v, "bn_mode", BN_MODES),
    "seed": _check_seed,
    "version": lambda v: check_choice(v, "version", VERSIONS),
    "attacks": _check_attacks,
    "batch_size": lambda v: check_number(v, "batch_size", low=1, integer=True),
}

_PGD_OPTIONS = (
    "eps",
    "step_size",
    "steps",
    "norm",
    "loss",
    "start",
    "start_scale",
    "restarts",
    "clamp",
    "bn_mode",
    "seed",
)
_FGSM_OPTIONS = ("eps", "norm", "loss", "clamp", "bn_mode")
_AUTOATTACK_OPTIONS = ("eps", "norm", "version", "attacks", "seed", "batch_size")


@dataclass(frozen=True)
class AttackPreset:
    """A named attack: which function it runs (`kind`), its defaults (its threat model
    included: norm, eps, step_size), what may be overridden, and its step rule.

    step_rule: how the step follows another eps, "eps/4" (2/255 at 8/255), "eps/10" (0.03 at
    MNIST's 0.3, for the longer PGD-40), "2.5*eps/steps" (Madry et al.'s L2 rule), or None (a
    fixed step, or no step at all).
    """

    kind: str  # "pgd", "fgsm" or "autoattack"
    defaults: Mapping[str, Any]
    description: str
    step_rule: str | None = None

    @property
    def options(self) -> tuple[str, ...]:
        return {"pgd": _PGD_OPTIONS, "fgsm": _FGSM_OPTIONS, "autoattack": _AUTOATTACK_OPTIONS}[self.kind]

    @property
    def norm(self) -> str:
        return self.defaults["norm"]

    @property
    def eps(self) -> float:
        return self.defaults["eps"]

    def step_for(self, eps: float, steps: int | None = None) -> float | None:
        """The step size at `eps` by this preset's rule; None when the step does not follow eps."""
        steps = self.defaults.get("steps") if steps is None else steps
        if self.step_rule == "eps/4":
            return eps / 4
        if self.step_rule == "eps/10":
            return eps / 10
        if self.step_rule == "2.5*eps/steps":
            return 2.5 * eps / steps
        return None


def _pgd_preset(
    steps: int, step_size: float, description: str, step_rule: str | None = "eps/4", **changes: Any
) -> AttackPreset:
    defaults = dict(
        eps=DEFAULT_EPS,
        step_size=step_size,
        steps=steps,
        norm="linf",
        loss="ce",
        start="uniform",
        start_scale=0.001,
        restarts=1,
        clamp=(0.0, 1.0),
        bn_mode="eval",
        seed=None,
    )
    defaults.update(changes)
    return AttackPreset("pgd", defaults, description, step_rule)


def _autoattack_preset(version: str, description: str, **changes: Any) -> AttackPreset:
    defaults = dict(eps=DEFAULT_EPS, norm="linf", version=version, attacks=None, seed=0, batch_size=500)
    defaults.update(changes)
    return AttackPreset("autoattack", defaults, description)


ATTACKS: Registry[AttackPreset] = Registry(
    "attack",
    {
        "fgsm": AttackPreset(
            "fgsm",
            dict(eps=DEFAULT_EPS, norm="linf", loss="ce", clamp=(0.0, 1.0), bn_mode="eval"),
            "FGSM, one sign step of eps on CE",
        ),
        "pgd10": _pgd_preset(10, 2 / 255, "PGD-10 on CE, step 2/255, uniform start"),
        "pgd20": _pgd_preset(20, 2 / 255, "PGD-20 on CE, step 2/255, uniform start (evaluation protocol)"),
        "pgd20_trades": _pgd_preset(
            20, 0.003, "PGD-20 on CE, step 0.003 (TRADES repository evaluation)", step_rule=None
        ),
        "pgd100": _pgd_preset(100, 2 / 255, "PGD-100 on CE, step 2/255, uniform start"),
        "pgd40_r3": _pgd_preset(
            40,
            0.8 / 255,
            "PGD-40 on CE, step eps/10, uniform start, 3 restarts (worst case per sample)",
            step_rule="eps/10",
            restarts=3,
        ),
        "cw20": _pgd_preset(20, 2 / 255, "PGD-20 on the CW margin, step 2/255, uniform start", loss="margin"),
        "pgd20_l2": _pgd_preset(
            20,
            2.5 * 0.5 / 20,
            "L2 PGD-20 on CE, eps 0.5, step 2.5 eps / 20",
            step_rule="2.5*eps/steps",
            eps=0.5,
            norm="l2",
        ),
        "autoattack": _autoattack_preset("standard", "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square (L-inf)"),
        "autoattack_plus": _autoattack_preset(
            "plus", "AutoAttack plus: APGD-CE, APGD-DLR, FAB, Square, APGD-T, FAB-T with more restarts (L-inf)"
        ),
        "autoattack_rand": _autoattack_preset(
            "rand", "AutoAttack rand, for randomised defences: APGD-CE, APGD-DLR with 20 EOT iterations (L-inf)"
        ),
        "autoattack_l2": _autoattack_preset("standard", "AutoAttack standard in L2, eps 0.5", eps=0.5, norm="l2"),
    },
)


def budget(name: str, *, eps: float | None = None, step_size: float | None = None) -> dict[str, float]:
    """Overrides putting preset `name` at another eps: eps, and the step by the preset's rule
    (see `AttackPreset.step_rule`) unless `step_size` is given."""
    preset = ATTACKS[name]
    overrides: dict[str, float] = {}
    if eps is not None:
        overrides["eps"] = eps
        step = preset.step_for(eps)
        if step is not None:
            overrides["step_size"] = step
    if step_size is not None:
        if preset.kind != "pgd":
            raise ConfigError(f"attack {name!r}: has no step size to set (only the PGD presets do)")
        overrides["step_size"] = step_size
    return overrides


class AttackOutcome(NamedTuple):
    """What `ConfiguredAttack.run` returns: x_adv [B, ...]; first_success int64 [B] and
    components for AutoAttack (see `AutoAttackResult`), None and () for the others."""

    x_adv: torch.Tensor
    first_success: torch.Tensor | None
    components: tuple[str, ...]


def _plain(field: str, value: Any) -> Any:
    """Plain Python values (numpy scalars become float/int), so `.spec` is JSON-ready."""
    if value is None or isinstance(value, (str, bool)) or callable(value):
        return value
    if field in ("clamp", "attacks"):
        return tuple(float(v) if field == "clamp" else v for v in value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


class ConfiguredAttack:
    """A preset with its options resolved: call it as `attack(model, x, y) -> x_adv`."""

    def __init__(self, name: str, preset: AttackPreset, options: Mapping[str, Any]):
        self.name = name
        self.preset = preset
        self.options = dict(options)

    @property
    def kind(self) -> str:
        return self.preset.kind

    @property
    def components(self) -> tuple[str, ...]:
        """AutoAttack's component attacks in run order; () for the other attacks."""
        if self.preset.kind != "autoattack":
            return ()
        return components_of(self._version(), self.options["attacks"])

    def _version(self) -> str:
        return "custom" if self.options.get("attacks") is not None else self.options["version"]

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description of the attack for results.json: its threat model
        (norm, eps), step_size, steps, restarts, loss, seed and implementation."""
        return self.describe()

    def describe(self, num_classes: int | None = None) -> dict[str, Any]:
        """`spec`; for AutoAttack with each component's settings (target classes capped at
        num_classes - 1 when given), read from AutoAttack itself when the extra is installed."""
        import robustfair

        o = self.options
        spec: dict[str, Any] = {"name": self.name, "eps": o["eps"], "norm": o["norm"]}
        if self.preset.kind == "pgd":
            spec.update(
                step_size=o["step_size"],
                steps=o["steps"],
                loss=loss_name(o["loss"]),
                restarts=o["restarts"],
                start=o["start"],
                seed=o["seed"],
            )
        elif self.preset.kind == "fgsm":
            spec.update(step_size=o["eps"], steps=1, loss=loss_name(o["loss"]), restarts=1, start="none", seed=None)
        else:
            spec.update(
                step_size=None,
                steps=None,
                loss=None,
                restarts=None,
                version=o["version"],
                attacks=None if o["attacks"] is None else list(o["attacks"]),
                seed=o["seed"],
                batch_size=o["batch_size"],
                components=list(self.components),
            )
            try:
                spec["settings"] = component_settings(
                    eps=o["eps"], norm=o["norm"], version=self._version(), attacks=o["attacks"], num_classes=num_classes
                )
            except ImportError:
                pass
            spec["implementation"] = implementation()
            return spec
        spec["implementation"] = f"robustfair {robustfair.__version__}"
        return spec

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.run(model, x, y, generator=generator).x_adv

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        progress: bool | None = False,
    ) -> AttackOutcome:
        """Attack (x, y); generator: the random draws of PGD's start (default: one seeded with
        the `seed` option, or the global generator when seed is None); AutoAttack seeds
        itself with `seed`. progress: AutoAttack's per-component bars (None: automatic)."""
        o = dict(self.options)
        if self.preset.kind == "fgsm":
            return AttackOutcome(fgsm(model, x, y, **o), None, ())
        if self.preset.kind == "autoattack":
            result = autoattack(
                model,
                x,
                y,
                eps=o["eps"],
                norm=o["norm"],
                version=self._version(),
                attacks=o["attacks"],
                seed=o["seed"],
                batch_size=o["batch_size"],
                progress=progress,
            )
            return AttackOutcome(result.x_adv, result.first_success, result.components)
        seed = o.pop("seed")
        if generator is None and seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(seed)
        return AttackOutcome(pgd(model, x, y, generator=generator, **o), None, ())

    def __repr__(self) -> str:
        return f"ConfiguredAttack({self.spec})"


def make_attack(name: str, **overrides: Any) -> ConfiguredAttack:
    """The preset `name` from ATTACKS with `overrides` applied and validated.

    Raises UnknownNameError (listing the valid names) for an unknown preset, and
    ConfigError naming the field and what is allowed for an unknown or invalid override.
    """
    preset = ATTACKS[name]
    options = dict(preset.defaults)
    for field, value in overrides.items():
        if field not in preset.options:
            raise ConfigError(
                f"attack {name!r}: unknown option {field!r}; valid options: {', '.join(sorted(preset.options))}"
            )
        try:
            if preset.kind == "autoattack" and field == "norm":  # AutoAttack also has L1
                check_choice(value, "norm", ("linf", "l2", "l1"))
            else:
                _VALIDATORS[field](value)
        except ConfigError as err:
            raise ConfigError(f"attack {name!r}: {err}") from None
        options[field] = _plain(field, value)
    return ConfiguredAttack(name, preset, options)
