"""What one epoch of a loader yields: sample order, augmentation parameters, rank slices.

Both loaders share this, so they yield the same batches for the same data and seed.
One CPU `torch.Generator`, seeded from (seed, epoch), draws the order (`randperm`) and
then, if augmenting, the crop/flip parameters of every position of the epoch. Global
batch i covers order positions [i * B, (i + 1) * B); rank r of W takes its contiguous
slice, so the W ranks' slices concatenated are exactly the one-process batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robustfair.data.augment import crop_flip_params
from robustfair.data.checks import check_choice, check_int
from robustfair.errors import ConfigError


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed mixing (seed, epoch) with NumPy's SeedSequence."""
    words = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def rank_slice(length: int, rank: int, world_size: int) -> slice:
    """Contiguous part of a batch of `length` for `rank`; sizes differ by at most one."""
    base, extra = divmod(length, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


@dataclass
class EpochPlan:
    """order: int64 [N] sample indices; offsets [N, 2] / flips [N] per order position (or None)."""

    order: torch.Tensor
    offsets: torch.Tensor | None
    flips: torch.Tensor | None
    batch_size: int
    num_batches: int

    def positions(self, batch: int, rank: int, world_size: int) -> slice:
        """Order positions of `rank`'s part of global batch `batch`."""
        start = batch * self.batch_size
        length = min(self.batch_size, len(self.order) - start)
        part = rank_slice(length, rank, world_size)
        return slice(start + part.start, start + part.stop)


class EpochCursor:
    """Epoch/position bookkeeping and the checks shared by the loaders.

    Iterating yields the batches of epoch `epoch` from `position` on; a full pass moves to
    the next epoch at position 0. `set_epoch(e)` selects an epoch from its start, except
    right after `load_state_dict` for the same epoch, where the restored position is kept
    (so an engine that calls set_epoch at each epoch start resumes mid-epoch correctly).
    """

    def _init_cursor(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool,
        augment: str | None,
        padding: int,
        seed: int,
        drop_last: bool,
        rank: int,
        world_size: int,
    ) -> None:
        self.num_samples = check_int("num_samples", num_samples, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.world_size = check_int("world_size", world_size, low=1)
        self.rank = check_int("rank", rank, low=0)
        if self.rank >= self.world_size:
            raise ConfigError(f"rank: {rank} is out of range; allowed: 0 to {world_size - 1}")
        if self.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size: {batch_size} is the global batch and must be divisible by world_size {world_size}"
            )
        self.augment = check_choice("augment", augment, (None, "crop_flip"))
        self.padding = check_int("padding", padding, low=0)
        self.seed = check_int("seed", seed, low=0)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if self.drop_last and self.num_samples < self.batch_size:
            raise ConfigError(f"batch_size: {batch_size} exceeds the {num_samples} samples with drop_last=True")
        self.epoch = 0
        self.position = 0
        self._resume_pending = False

    @property
    def local_batch_size(self) -> int:
        """Samples per full batch on this rank (batch_size // world_size)."""
        return self.batch_size // self.world_size

    def __len__(self) -> int:
        """Global batches per epoch (every rank yields this many)."""
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def plan(self, epoch: int) -> EpochPlan:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = (
            torch.randperm(self.num_samples, generator=generator) if self.shuffle else torch.arange(self.num_samples)
        )
        offsets = flips = None
        if self.augment == "crop_flip":
            offsets, flips = crop_flip_params(self.num_samples, self.padding, generator)
        return EpochPlan(order, offsets, flips, self.batch_size, len(self))

    def set_epoch(self, epoch: int) -> None:
        epoch = check_int("epoch", epoch, low=0)
        if not (self._resume_pending and epoch == self.epoch):
            self.position = 0
        self.epoch = epoch
        self._resume_pending = False

    def state_dict(self) -> dict[str, Any]:
        """epoch and position (next global batch), plus what they are only valid for."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "num_samples", "batch_size"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ConfigError(
                    f"loader state has {key}={state[key]} but this loader has "
                    f"{key}={getattr(self, key)}; the saved position would not match"
                )
        position = check_int("position", state["position"], low=0)
        if position > len(self):
            raise ConfigError(f"position: {position} is out of range; allowed: 0 to {len(self)}")
        self.epoch = check_int("epoch", state["epoch"], low=0)
        self.position = position
        self._resume_pending = True

    def _batches(self):
        """(global batch index, plan) for the rest of the current epoch; advances the cursor."""
        self._resume_pending = False
        plan = self.plan(self.epoch)
        for i in range(self.position, plan.num_batches):
            self.position = i + 1
            yield i, plan
        self.epoch += 1
        self.position = 0
