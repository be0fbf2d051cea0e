"""Data pipeline: the device-resident loader against a DataLoader with per-image transforms.

Both yield one epoch of float [B, 3, 32, 32] batches in [0, 1] with the CIFAR
augmentation (zero padding 4, random 32x32 crop, horizontal flip with probability 1/2):

- robustfair: `robustfair.data.DeviceLoader(augment="crop_flip")`: uint8 images held as
  one tensor, each batch gathered with `index_select` and augmented with batched ops;
- standard: `torch.utils.data.DataLoader` over a Dataset whose `__getitem__` pads, crops,
  flips and converts one image (the torchvision-transform pattern, written with NumPy
  here since torchvision is not used), default collation, `--workers` processes.

Printed: images per second of each and the ratio robustfair / standard.
`PerImageAugmentDataset` and `planned_dataloader` also serve tests/test_fast_paths.py,
which checks the two paths yield the same images for the same indices and crops.

    python benchmarks/data_pipeline.py [--images 20000] [--batch 128] [--workers 0,2] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    interleaved_times,
    load_images,
    median,
    paired_ratio,
    print_table,
    setup,
    write_json,
)
from robustfair.data import ArrayDataset, DeviceLoader  # noqa: E402


def crop_flip_image(image: np.ndarray, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """One uint8 [C, H, W] image: zero-pad by `padding`, crop H x W at (top, left) of the
    padded image, flip horizontally if `flip`; float32 [C, H, W] in [0, 1]."""
    _, height, width = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    crop = padded[:, top : top + height, left : left + width]
    if flip:
        crop = crop[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(crop)).float().div_(255.0)


class PerImageAugmentDataset(Dataset):
    """Images augmented one at a time in `__getitem__`: (float [C, H, W] in [0, 1], label).

    x: uint8 [N, C, H, W]; y: int [N]. offsets (int [N, 2] as (top, left) on the padded
    image) and flips (bool [N]), per sample index, fix each sample's augmentation;
    without them each access draws its own from the global torch generator, as
    torchvision's RandomCrop / RandomHorizontalFlip do.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        padding: int = 4,
        offsets: np.ndarray | None = None,
        flips: np.ndarray | None = None,
    ):
        self.x, self.y, self.padding = x, np.asarray(y, dtype=np.int64), padding
        self.offsets, self.flips = offsets, flips

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.offsets is None:
            top, left = (int(v) for v in torch.randint(0, 2 * self.padding + 1, (2,)))
            flip = bool(torch.rand(()) < 0.5)
        else:
            top, left = (int(v) for v in self.offsets[index])
            flip = bool(self.flips[index])
        return crop_flip_image(self.x[index], top, left, flip, self.padding), int(self.y[index])


def planned_dataloader(loader: DeviceLoader, epoch: int = 0, num_workers: int = 0) -> DataLoader:
    """A standard DataLoader yielding what `loader` yields in `epoch` (one process, rank 0):
    the epoch plan's sample order as the sampler, its crop/flip draws given per sample."""
    plan = loader.plan(epoch)
    order = plan.order.numpy()
    offsets = flips = None
    if plan.offsets is not None:
        offsets = np.empty((len(order), 2), dtype=np.int64)
        flips = np.empty(len(order), dtype=bool)
        offsets[order] = plan.offsets.numpy()  # plan draws are per order position
        flips[order] = plan.flips.numpy()
    dataset = PerImageAugmentDataset(
        np.asarray(loader.dataset.x), np.asarray(loader.dataset.y), loader.padding, offsets, flips
    )
    return DataLoader(
        dataset,
        batch_size=loader.batch_size,
        sampler=order.tolist(),
        num_workers=num_workers,
        drop_last=loader.drop_last,
    )


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=3)
    parser.add_argument("--images", type=int, default=20000, help="images per epoch (default 20000)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts to time (default 0,2)")
    args = parser.parse_args()
    device, machine = setup(args)
    x_u8, labels, what = load_images(args.images, 32, directory=args.data_dir, split="train", seed=args.seed)
    dataset = ArrayDataset(x_u8.numpy(), labels.numpy(), [str(c) for c in range(10)], "benchmark")
    workers = [int(w) for w in args.workers.split(",") if w != ""]
    print(
        f"settings: {args.images} {what}, batch {args.batch}, crop (pad 4) + flip, one epoch per call; "
        f"DataLoader workers {workers}; {args.warmup} warm-up + {args.repeats} timed rounds",
        flush=True,
    )

    device_loader = DeviceLoader(dataset, args.batch, shuffle=True, augment="crop_flip", device=device, seed=args.seed)
    standard_set = PerImageAugmentDataset(dataset.x, dataset.y, padding=4)

    def run_device_loader() -> None:
        for _ in device_loader:
            pass

    def standard(num_workers: int):
        def run() -> None:
            loader = DataLoader(standard_set, batch_size=args.batch, shuffle=True, num_workers=num_workers)
            for x, y in loader:
                if device.type != "cpu":
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)

        return run

    fns = {"device_loader": run_device_loader}
    fns.update({f"dataloader_w{w}": standard(w) for w in workers})
    # Wall time: the DataLoader's worker processes do their work outside this process's CPU time.
    times = interleaved_times(fns, repeats=args.repeats, warmup=args.warmup, device=device, clock="wall")
    rows: list[list[Any]] = []
    ratios: dict[str, float] = {}
    measurements: dict[str, Any] = {"images": args.images, "batch": args.batch, "data": what}
    device_ips = args.images / median(times["device_loader"])
    rows.append(["robustfair DeviceLoader (batched crop/flip)", device_ips, 1.0, 1.0])
    measurements["device_loader_images_per_s"] = device_ips
    for w in workers:
        key = f"dataloader_w{w}"
        ips = args.images / median(times[key])
        ratio, best_ratio = paired_ratio(times[key], times["device_loader"])
        rows.append([f"DataLoader + per-image transforms, {w} workers", ips, 1 / ratio, 1 / best_ratio])
        ratios[f"device_loader_over_dataloader_w{w}_images_per_s"] = ratio
        ratios[f"device_loader_over_dataloader_w{w}_images_per_s_best_times"] = best_ratio
        measurements[f"{key}_images_per_s"] = ips
    measurements["clock"] = times.clock
    measurements["per_round"] = times.per_round()
    print_table(
        f"Data pipeline throughput, one augmented pass over {args.images} images "
        "(ratio = images/s / DeviceLoader images/s)",
        ["pipeline", "images/s", "ratio to DeviceLoader", "(best times)"],
        rows,
        left=1,
    )
    print(
        "ratio: median of per-round ratios on wall time (the DataLoader's workers run in other processes, so "
        "this process's CPU time would leave their work out); (best times): from the fastest pass of each."
    )
    write_json(args.json_path, "data_pipeline", machine, vars(args), ratios, measurements)


if __name__ == "__main__":
    main()
