"""Training methods: one file each, one registry line each.

`METHODS[name]` is the method's class; `METHODS[name].Config` its frozen config dataclass.
"""

from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.bat import BAT
from robustfair.methods.cfa import CFA
from robustfair.methods.dafa import DAFA
from robustfair.methods.erm import ERM
from robustfair.methods.faal import FAAL
from robustfair.methods.fat import FATAT, FATTRADES
from robustfair.methods.frl import FRLRemargin, FRLReweight, FRLReweightRemargin
from robustfair.methods.gairat import GAIRAT
from robustfair.methods.reweight import ATLogitAdjust, ATReweight
from robustfair.methods.wat import WAT
from robustfair.methods.pgd_at import PGDAT
from robustfair.methods.trades import TRADES
from robustfair.registry import Registry

METHODS: Registry[type[TrainingMethod]] = Registry("method", {
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
})


def build_method(name: str, config, *, num_classes: int) -> TrainingMethod:
    return METHODS[name](config, num_classes=num_classes)


__all__ = ["METHODS", "build_method", "TrainingMethod", "MethodConfig", "MethodOutput", "EpochContext",
           "crafting_model", "ERM", "PGDAT", "TRADES", "BAT", "FRLReweight",
           "FRLReweightRemargin", "FRLRemargin", "FATAT", "FATTRADES", "GAIRAT", "CFA", "WAT", "DAFA", "FAAL", "ATReweight",
           "ATLogitAdjust"]
