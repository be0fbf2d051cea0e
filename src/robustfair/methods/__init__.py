"""Training methods: one file each, one registry line each.

`METHODS[name]` is the method's class; `METHODS[name].Config` its frozen config dataclass.
"""

from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.erm import ERM
from robustfair.methods.pgd_at import PGDAT
from robustfair.methods.trades import TRADES
from robustfair.registry import Registry

METHODS: Registry[type[TrainingMethod]] = Registry("method", {
    "erm": ERM,
    "pgd_at": PGDAT,
    "trades": TRADES,
})


def build_method(name: str, config, *, num_classes: int) -> TrainingMethod:
    return METHODS[name](config, num_classes=num_classes)


__all__ = ["METHODS", "build_method", "TrainingMethod", "MethodConfig", "MethodOutput", "EpochContext",
           "crafting_model", "ERM", "PGDAT", "TRADES"]
