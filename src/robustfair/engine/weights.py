"""Loading the weights people have into a model, without ever executing code.

`load_weights(model, path)` accepts:
- `.safetensors`: a robustfair checkpoint (its model weights) or a plain weights file;
- `.pt` / `.pth` / `.bin` (anything `torch.save` wrote): read with
  `torch.load(weights_only=True)`, whose unpickler builds tensors and plain containers
  only and refuses every other object, so a crafted file cannot run code. The format is
  told from the file's first bytes, not its name.

A state dict may sit inside a wrapper (`{"state_dict": ...}`, `{"model": ...}`,
`{"model_state_dict": ...}`, `{"net": ...}`, nested too); keys may carry the prefixes that
DataParallel (`module.`), wrapper models (`model.`) and `torch.compile` (`_orig_mod.`)
add: the prefixes stripped are those that make the keys fit the model best. Keys that
still do not fit are one `CheckpointError` listing the missing, unexpected and
differently shaped tensors.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustfair.errors import CheckpointError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
PREFIXES = ("module.", "model.", "_orig_mod.")
_MAX_SHOWN = 3


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len <= path.stat().st_size - 8 and head[8:9] == b"{"


def _torch_load(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] != b"\x80" and head != b"PK\x03\x04":  # neither a pickle nor torch.save's zip
        raise CheckpointError(
            f"{os.fspath(path)!r} is neither a .safetensors file nor a torch.save state dict (.pt/.pth)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" (it names {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{os.fspath(path)!r} holds pickled Python objects other than tensors{what} and is "
            "refused: torch.load(weights_only=True) never runs them; save a plain state dict "
            "(torch.save(model.state_dict(), path)) or a .safetensors file"
        ) from None
    except Exception as err:  # not a torch.save file: truncated, another format
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{os.fspath(path)!r} cannot be read as a torch.save state dict or a .safetensors file: {first}"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (on the CPU), unwrapped; CheckpointError if it holds none."""
    from robustfair.engine.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {os.fspath(path)!r} does not exist")
    loaded = load_checkpoint(path)["model"] if _is_safetensors(path) else _torch_load(path)
    return unwrap_state_dict(loaded, os.fspath(path))


def unwrap_state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """The state dict inside `obj`: tensors by name, found through the wrapper keys."""
    for _ in range(4):  # wrappers nest rarely, and never deeply
        if not isinstance(obj, Mapping):
            raise CheckpointError(
                f"{where!r} holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)"
            )
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    keys = ", ".join(map(repr, list(obj)[:6])) if isinstance(obj, Mapping) else ""
    raise CheckpointError(
        f"{where!r} holds no state dict of tensors (top-level keys: {keys or 'none'}; looked "
        f"inside {', '.join(WRAPPER_KEYS)})"
    )


def fit_keys(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """`state` with the common prefixes stripped that make the most keys match `model_keys`."""
    candidates = [state]
    current = state
    for _ in range(len(PREFIXES)):
        prefix = next((p for p in PREFIXES if current and all(k.startswith(p) for k in current)), None)
        if prefix is None:
            break
        current = {k[len(prefix) :]: v for k, v in current.items()}
        candidates.append(current)
    return max(candidates, key=lambda c: len(model_keys & set(c)))  # the first of equals: least stripped


def _preview(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_MAX_SHOWN])
    return shown + (", ..." if len(keys) > _MAX_SHOWN else "")


def check_fit(state: Mapping[str, torch.Tensor], model: nn.Module, where: str) -> None:
    """CheckpointError (one line) unless `state` has exactly the model's keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_preview(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_preview(unexpected)})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape ({k!r}: file {list(state[k].shape)}, model {list(own[k].shape)})")
    raise CheckpointError(
        f"{where!r} does not fit the model {type(model).__name__} ({len(own)} tensors): {'; '.join(parts)}"
    )


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights file at `path` into `model` (see the module docstring); returns the model."""
    state = read_state_dict(path)
    state = fit_keys(state, set(model.state_dict()))
    check_fit(state, model, os.fspath(path))
    model.load_state_dict(state)
    return model


__all__ = ["load_weights", "read_state_dict", "unwrap_state_dict", "fit_keys", "check_fit", "WRAPPER_KEYS", "PREFIXES"]
