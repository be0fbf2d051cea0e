"""Training methods: one file each, one registry line each; usable in your own loop.

`METHODS[name]` is the method's class; `METHODS[name].Config` its frozen config dataclass.

In your own training loop:

    method = robustfair.methods.build("bat", num_classes=10, eps=8/255)
    out = method.loss(model, x, y)        # x [B, C, H, W] in [0, 1], y int64 [B]; model in train mode
    out.loss.backward()                   # out.logs: detached scalars (ce, kl, ...)

`build` validates the overrides as a config file would. Methods that adapt between
epochs need their hooks called: `robustfair.methods.epochs` (see `methods/hooks.py`).
"""

import difflib
import numbers
from typing import Any

from robustfair.methods.base import (
    EpochContext,
    MethodConfig,
    MethodOutput,
    TrainingMethod,
    config_fields,
    crafting_model,
)
from robustfair.methods.bat import BAT
from robustfair.methods.cfa import CFA
from robustfair.methods.dafa import DAFA
from robustfair.methods.erm import ERM
from robustfair.methods.faal import FAAL
from robustfair.methods.fat import FATAT, FATTRADES
from robustfair.methods.frl import FRLRemargin, FRLReweight, FRLReweightRemargin
from robustfair.methods.gairat import GAIRAT
from robustfair.methods.hooks import epoch_context, epochs
from robustfair.methods.pgd_at import PGDAT
from robustfair.methods.reweight import ATLogitAdjust, ATReweight
from robustfair.methods.trades import TRADES
from robustfair.methods.wat import WAT
from robustfair.registry import Registry

METHODS: Registry[type[TrainingMethod]] = Registry(
    "method",
    {
        "erm": ERM,
        "pgd_at": PGDAT,
        "trades": TRADES,
        "frl_rw": FRLReweight,
        "frl_rwrm": FRLReweightRemargin,
        "frl_rm": FRLRemargin,
        "bat": BAT,
        "fat_at": FATAT,
        "fat_trades": FATTRADES,
        "gairat": GAIRAT,
        "cfa": CFA,
        "wat": WAT,
        "dafa": DAFA,
        "faal": FAAL,
        "at_reweight": ATReweight,
        "at_logit_adjust": ATLogitAdjust,
    },
)


def build_method(name: str, config, *, num_classes: int) -> TrainingMethod:
    return METHODS[name](config, num_classes=num_classes)


def build(name: str, num_classes: int, **overrides: Any) -> TrainingMethod:
    """The training method `name` for `num_classes` classes, its defaults changed by `overrides`.

    Every override is validated like a config field (type, range, choices); an unknown one
    raises ConfigError naming the closest field. The defaults are the authors' code's
    (`METHODS[name].Config`; `robustfair list methods`).
    """
    from robustfair.errors import ConfigError
    from robustfair.typed_config import build as build_config

    cls = METHODS[name]
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ConfigError(f"num_classes: {num_classes!r} is not allowed; expected an integer >= 2")
    fields = config_fields(cls.Config)
    for key in overrides:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"method {name}: unknown option {key!r}; {hint}its options: {', '.join(sorted(fields))}")
    return cls(build_config(cls.Config, overrides, f"method {name}"), num_classes=int(num_classes))


__all__ = [
    "METHODS",
    "build",
    "build_method",
    "epochs",
    "epoch_context",
    "TrainingMethod",
    "MethodConfig",
    "MethodOutput",
    "EpochContext",
    "crafting_model",
    "ERM",
    "PGDAT",
    "TRADES",
    "BAT",
    "FRLReweight",
    "FRLReweightRemargin",
    "FRLRemargin",
    "FATAT",
    "FATTRADES",
    "GAIRAT",
    "CFA",
    "WAT",
    "DAFA",
    "FAAL",
    "ATReweight",
    "ATLogitAdjust",
]
