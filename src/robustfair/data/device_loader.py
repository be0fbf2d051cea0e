"""A loader that keeps the whole dataset on the device (airbench style).

The images stay uint8 on the device (float for float datasets); each batch is gathered
with `index_select`, augmented with batched tensor ops and only then converted to float
in [0, 1]. No worker processes, no per-sample Python. Normalisation is left to the
model, so attacks work in pixel space.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from robustfair.data.augment import apply_crop_flip
from robustfair.data.dataset import ArrayDataset
from robustfair.data.epoch_plan import EpochCursor
from robustfair.errors import ConfigError


def to_float01(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 / 255; float tensors -> float32 unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


class DeviceLoader(EpochCursor):
    """Batches `(x float32 [b, C, H, W] in [0, 1], y int64 [b])` on `device`.

    batch_size is the global batch: rank r of world_size yields its contiguous slice
    (batch_size // world_size samples; the final partial batch is split as evenly as
    possible, so with drop_last=False a rank may get one sample fewer, or none), and the
    concatenation over ranks equals what one process yields. Order and augmentation come
    from one generator seeded by (seed, epoch) (see `epoch_plan`), so the same seed gives
    the same batches on any device and any number of processes.

    augment: None or "crop_flip" (zero padding `padding`, then random crop and flip;
    needs image data). Float feature data [N, D] is yielded as [b, D].
    See `EpochCursor` for set_epoch / state_dict / load_state_dict.
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: str | None = None,
        padding: int = 4,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        self._init_cursor(
            len(dataset),
            batch_size,
            shuffle=shuffle,
            augment=augment,
            padding=padding,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        if augment is not None and not dataset.is_image:
            raise ConfigError(
                f"augment: {augment!r} needs images [N, C, H, W]; this dataset has "
                f"samples of shape {dataset.sample_shape}"
            )
        self.dataset = dataset
        self.device = torch.device(device)
        x = np.ascontiguousarray(dataset.x)
        if x.dtype != np.uint8:
            x = x.astype(np.float32, copy=False)
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(np.ascontiguousarray(dataset.y, dtype=np.int64)).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device_plan = None
        for i, plan in self._batches():
            if device_plan is None:  # one transfer per epoch, not per batch
                device_plan = (
                    plan.order.to(self.device),
                    None if plan.offsets is None else plan.offsets.to(self.device),
                    None if plan.flips is None else plan.flips.to(self.device),
                )
            order, offsets, flips = device_plan
            part = plan.positions(i, self.rank, self.world_size)
            idx = order[part]
            x = self.x.index_select(0, idx)
            if offsets is not None:
                x = apply_crop_flip(x, offsets[part], flips[part], self.padding)
            yield to_float01(x), self.y.index_select(0, idx)
