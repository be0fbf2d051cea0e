"""Checkpoints that load without executing code and are written atomically.

A checkpoint is one `.safetensors` file: every tensor of a nested state tree (model,
optimiser, method state, RNG states) is stored under its path, and the rest of the tree
(numbers, strings, lists) is JSON in the file's metadata, with `{"__tensor__": key}`
placeholders. Loading uses safetensors only: nothing is unpickled, so a crafted pickle
(`torch.save` output) is refused with a message naming the safe format.

Writes go through `run_files.atomic_write_bytes`: a temporary file in the same
directory, fsynced, then `os.replace`d over the target, so a kill at any moment leaves
the previous checkpoint intact, and a full or read-only disk raises a one-line
`RunFileError` with the previous checkpoint untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from robustfair.engine.run_files import atomic_write_bytes
from robustfair.errors import CheckpointError

FORMAT = "robustfair-checkpoint/1"
_TENSOR = "__tensor__"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, zip (torch.save)


def _flatten(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = tree.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"checkpoint keys must be str or int, got {type(k).__name__} at {prefix!r}")
            out[str(k) if isinstance(k, str) else f"__int__{k}"] = _flatten(
                v, f"{prefix}/{k}" if prefix else str(k), tensors
            )
        return out
    if isinstance(tree, (list, tuple)):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise CheckpointError(
        f"cannot store a {type(tree).__name__} at {prefix!r} in a checkpoint "
        "(tensors, numbers, strings, lists and dicts only)"
    )


def _unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {_TENSOR}:
            return tensors[tree[_TENSOR]]
        return {(int(k[7:]) if k.startswith("__int__") else k): _unflatten(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unflatten(v, tensors) for v in tree]
    return tree


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (a nested dict of tensors and plain values) atomically to `path`.

    Raises CheckpointError for a value that cannot be stored, and `run_files.RunFileError`
    (an OSError naming the file and what to do) when the disk is full or read-only; in
    both cases the previous file at `path` is untouched and no temporary file remains.
    """
    from safetensors.torch import save

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    # safetensors refuses tensors that share memory; stored copies are independent.
    tensors = {k: v.clone() if v.storage_offset() or not v.is_contiguous() else v for k, v in tensors.items()}
    blob = save(tensors, metadata={"format": FORMAT, "state": json.dumps(skeleton)})
    return atomic_write_bytes(path, blob)


_SAFE_FORMATS = (
    "robustfair loads only .safetensors checkpoints (weights in safetensors, training state "
    "as JSON metadata) or plain .safetensors weight files, which cannot execute code"
)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; never unpickles anything.

    A plain safetensors weights file comes back as `{"model": tensors}`. Raises
    CheckpointError for a missing file, a pickle / `torch.save` file (refused unread,
    naming the safe formats), or a truncated or corrupt one.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} does not exist")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} cannot be read: {err.strerror or err}") from None
    if not _looks_like_safetensors(data):
        # Checked after the safetensors layout: a valid header length can start with 0x80 too.
        if data[:1] == _PICKLE_MAGIC[0] or data[:4] == _PICKLE_MAGIC[1]:
            raise CheckpointError(
                f"{os.fspath(path)!r} is a pickle/torch.save file and is refused unread; {_SAFE_FORMATS}"
            )
        raise CheckpointError(
            f"{os.fspath(path)!r} is not a valid safetensors checkpoint (truncated, corrupt or "
            f"another format such as an old pickle); {_SAFE_FORMATS}"
        )
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as err:
        raise CheckpointError(
            f"{os.fspath(path)!r} is not a valid safetensors checkpoint: "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    if metadata.get("format") != FORMAT:
        # A plain safetensors weights file: return it as a flat model state dict.
        return {"model": {k: v.to(map_location) for k, v in tensors.items()}}
    try:
        skeleton = json.loads(metadata["state"])
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
        return _unflatten(skeleton, tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{os.fspath(path)!r}: checkpoint metadata is corrupt ({type(err).__name__}: {err})"
        ) from None


def _looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length that fits the file, then a JSON object."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= len(data) - 8 and data[8:9] == b"{"


def resolve_checkpoint(path_or_run: str | Path, which: str = "last") -> Path:
    """A checkpoint file, or `RUN_DIR/checkpoints/{which}.safetensors` for a run directory."""
    path = Path(path_or_run)
    if path.is_dir():
        candidate = path / "checkpoints" / f"{which}.safetensors"
        if candidate.is_file():
            return candidate
        raise CheckpointError(f"run directory {os.fspath(path)!r} has no checkpoints/{which}.safetensors")
    if path.is_file():
        return path
    raise CheckpointError(f"{os.fspath(path)!r} is neither a run directory nor a checkpoint file")
