"""A loader for image folders too large to hold in memory.

Worker processes (a `torch.utils.data.DataLoader`) read and decode the files with Pillow
(`decode_image`, the same function the in-memory reader uses); the main process moves
each uint8 batch to the device and applies the same crop/flip as `DeviceLoader`, with
the same `EpochPlan`. For the same files and seed the two loaders yield identical
batches, and rank sharding, set_epoch and resume work the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustfair.data.augment import apply_crop_flip
from robustfair.data.checks import check_choice, check_int
from robustfair.data.device_loader import to_float01
from robustfair.data.epoch_plan import EpochCursor
from robustfair.data.images import decode_image
from robustfair.data.readers.imagefolder import ImageFileIndex


class ImageFileDataset(Dataset):
    """Map-style dataset: i -> (uint8 tensor [C, size, size] or native size, int64 label)."""

    def __init__(self, index: ImageFileIndex, *, size: int | None, channels: int = 3):
        self.paths = [str(p) for p in index.paths]
        self.y = np.asarray(index.y, dtype=np.int64)
        self.size = size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = decode_image(self.paths[i], channels=self.channels, size=self.size)
        return torch.from_numpy(pixels), int(self.y[i])


def _stack(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


class StreamingLoader(EpochCursor):
    """Batches `(x float32 [b, C, size, size] in [0, 1], y int64 [b])` read from files.

    index: an `ImageFileIndex` (e.g. from `image_folder_index` or `imagenette_indexes`).
    size: shorter side resized to `size` then centre-cropped (None: native size, which
    must be the same for all files). num_workers: decoding processes (0 = in-process).
    Other arguments as `DeviceLoader`.
    """

    def __init__(
        self,
        index: ImageFileIndex,
        batch_size: int,
        *,
        size: int | None = None,
        channels: int = 3,
        shuffle: bool = True,
        augment: str | None = None,
        padding: int = 4,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 2,
        prefetch_factor: int = 2,
    ):
        self._init_cursor(
            len(index),
            batch_size,
            shuffle=shuffle,
            augment=augment,
            padding=padding,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        check_choice("channels", channels, (1, 3))
        self.files = ImageFileDataset(index, size=size, channels=channels)
        self.index = index
        self.device = torch.device(device)
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self.prefetch_factor = check_int("prefetch_factor", prefetch_factor, low=1)

    def _file_loader(self, batches: list[list[int]]) -> DataLoader:
        extra = {"prefetch_factor": self.prefetch_factor} if self.num_workers else {}
        return DataLoader(
            self.files,
            batch_sampler=batches,
            num_workers=self.num_workers,
            collate_fn=_stack,
            pin_memory=self.device.type == "cuda",
            **extra,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan(self.epoch)
        first = self.position
        parts = [plan.positions(i, self.rank, self.world_size) for i in range(first, plan.num_batches)]
        batches = [plan.order[p].tolist() for p in parts if p.stop > p.start]
        files = iter(self._file_loader(batches)) if batches else iter(())
        # _batches() first in zip, so its end-of-epoch bookkeeping runs when parts run out.
        for _, part in zip(self._batches(), parts):
            if part.stop == part.start:  # this rank's share of a tiny final batch is empty
                side = self.files.size or 0
                x = torch.empty((0, self.files.channels, side, side), dtype=torch.uint8)
                y = torch.empty((0,), dtype=torch.int64)
            else:
                x, y = next(files)
            x = x.to(self.device, non_blocking=True)
            if plan.offsets is not None and len(x):
                x = apply_crop_flip(x, plan.offsets[part], plan.flips[part], self.padding)
            yield to_float01(x), y.to(self.device, non_blocking=True)
