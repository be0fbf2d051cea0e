"""Augmentation, DeviceLoader (determinism, sharding, resume) and StreamingLoader."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustfair.data import (
    ArrayDataset,
    DeviceLoader,
    StreamingLoader,
    apply_crop_flip,
    crop_flip_params,
    image_folder_index,
    random_crop_flip,
)
from robustfair.data.readers.imagefolder import read_image_index
from robustfair.errors import ConfigError


def _reference_crop_flip(x, offsets, flips, padding):
    """Independent version: pad with zeros, slice each image, flip with torch.flip."""
    h, w = x.shape[2:]
    padded = F.pad(x.float(), (padding, padding, padding, padding))
    out = []
    for i in range(len(x)):
        top, left = offsets[i].tolist()
        crop = padded[i, :, top : top + h, left : left + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out).to(x.dtype)


def test_crop_flip_matches_pad_and_slice():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (16, 3, 7, 5), generator=g, dtype=torch.int64).to(torch.uint8)
    offsets, flips = crop_flip_params(16, 3, g)
    assert offsets.min() >= 0 and offsets.max() <= 6 and flips.dtype == torch.bool
    got = apply_crop_flip(x, offsets, flips, 3)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    torch.testing.assert_close(got, _reference_crop_flip(x, offsets, flips, 3), rtol=0, atol=0)


def test_crop_flip_hand_cases():
    x = torch.arange(1, 17, dtype=torch.float32).reshape(1, 1, 4, 4)
    centre = torch.tensor([[2, 2]])
    torch.testing.assert_close(apply_crop_flip(x, centre, torch.tensor([False]), 2), x)
    torch.testing.assert_close(apply_crop_flip(x, centre, torch.tensor([True]), 2), x.flip(-1))
    corner = apply_crop_flip(x, torch.tensor([[0, 0]]), torch.tensor([False]), 1)
    expected = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]], dtype=torch.float32)
    torch.testing.assert_close(corner[0, 0], expected)
    out = random_crop_flip(torch.rand(5, 3, 8, 8), padding=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == (5, 3, 8, 8) and out.min() >= 0 and out.max() <= 1


def _features(n=21, d=3):
    """Float data whose first feature identifies the sample: x[i, 0] = i / 100."""
    x = np.zeros((n, d), dtype=np.float32)
    x[:, 0] = np.arange(n) / 100
    return ArrayDataset(x, np.arange(n) % 3, ["a", "b", "c"])


def _ids(x):
    return torch.round(x[:, 0] * 100).long().tolist()


def _images(n=21, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), np.arange(n) % 3, ["a", "b", "c"])


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_epoch_covers_every_sample_once_and_is_seeded():
    ds = _features()
    loader = DeviceLoader(ds, 4, seed=7)
    assert len(loader) == 6 and len(DeviceLoader(ds, 4, drop_last=True)) == 5
    first = _epoch(loader)
    ids = [i for x, _ in first for i in _ids(x)]
    assert sorted(ids) == list(range(21)) and ids != list(range(21))
    assert [len(y) for _, y in first] == [4, 4, 4, 4, 4, 1]
    for x, y in first:
        assert y.dtype == torch.int64 and x.dtype == torch.float32
        assert y.tolist() == [i % 3 for i in _ids(x)]
    second = _epoch(loader)  # the next epoch: a different order
    assert [i for x, _ in second for i in _ids(x)] != ids
    replay = DeviceLoader(ds, 4, seed=7)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, _epoch(replay)))
    other = DeviceLoader(ds, 4, seed=8)
    assert [i for x, _ in _epoch(other) for i in _ids(x)] != ids
    plain = DeviceLoader(ds, 4, shuffle=False)
    assert [i for x, _ in _epoch(plain) for i in _ids(x)] == list(range(21))


def test_augmented_images_are_float_in_range():
    ds = _images()
    loader = DeviceLoader(ds, 8, augment="crop_flip", padding=2, seed=0)
    batches = _epoch(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(8, 3, 8, 8), (8, 3, 8, 8), (5, 3, 8, 8)]
    for x, _ in batches:
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
        # every value is k/255: uint8 was augmented before conversion
        torch.testing.assert_close(torch.round(x * 255) / 255, x)
    with pytest.raises(ConfigError, match="needs images"):
        DeviceLoader(_features(), 4, augment="crop_flip")
    with pytest.raises(ConfigError, match="augment"):
        DeviceLoader(ds, 4, augment="mixup")


@pytest.mark.parametrize("world_size", [2, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_slices_concatenate_to_the_single_process_batch(world_size, drop_last):
    ds = _images(n=23)
    kwargs = dict(augment="crop_flip", seed=3, drop_last=drop_last)
    single = DeviceLoader(ds, 8, **kwargs)
    ranks = [DeviceLoader(ds, 8, rank=r, world_size=world_size, **kwargs) for r in range(world_size)]
    for epoch in (0, 1):
        for loader in [single, *ranks]:
            loader.set_epoch(epoch)
        per_rank = [_epoch(loader) for loader in ranks]
        assert all(len(batches) == len(single) for batches in per_rank)
        for i, (x, y) in enumerate(_epoch(single)):
            torch.testing.assert_close(torch.cat([b[i][0] for b in per_rank]), x, rtol=0, atol=0)
            assert torch.equal(torch.cat([b[i][1] for b in per_rank]), y)
    if not drop_last:
        assert [len(b[-1][1]) for b in per_rank] == ([4, 3] if world_size == 2 else [2, 2, 2, 1])
    with pytest.raises(ConfigError, match="divisible by world_size"):
        DeviceLoader(ds, 6, world_size=4)
    with pytest.raises(ConfigError, match="rank"):
        DeviceLoader(ds, 8, rank=2, world_size=2)


def test_resume_mid_epoch_continues_identically():
    ds = _images(n=30)
    kwargs = dict(augment="crop_flip", seed=11)
    reference = DeviceLoader(ds, 4, **kwargs)
    reference.set_epoch(0)
    _epoch(reference)
    reference.set_epoch(1)
    epoch1 = _epoch(reference)

    run = DeviceLoader(ds, 4, **kwargs)
    run.set_epoch(1)
    it = iter(run)
    for _ in range(3):
        next(it)
    state = run.state_dict()
    assert state["epoch"] == 1 and state["position"] == 3

    resumed = DeviceLoader(ds, 4, **kwargs)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # an engine calls set_epoch at each epoch start; the position survives
    rest = _epoch(resumed)
    assert len(rest) == len(epoch1) - 3
    for (x, y), (x_ref, y_ref) in zip(rest, epoch1[3:]):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    assert resumed.state_dict()["epoch"] == 2 and resumed.state_dict()["position"] == 0
    resumed.set_epoch(1)  # a plain set_epoch starts the epoch over
    assert len(_epoch(resumed)) == len(epoch1)
    with pytest.raises(ConfigError, match="batch_size"):
        DeviceLoader(ds, 5, **kwargs).load_state_dict(state)


def _png_folder(root, n_per_class=5, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_streaming_loader_matches_device_loader(tmp_path, num_workers):
    _png_folder(tmp_path / "imgs")
    index = image_folder_index(tmp_path / "imgs")
    in_memory = read_image_index(index, size=8, cache=False)
    kwargs = dict(augment="crop_flip", padding=2, seed=5)
    device_batches = _epoch(DeviceLoader(in_memory, 4, **kwargs))
    stream = StreamingLoader(index, 4, size=8, num_workers=num_workers, **kwargs)
    streamed = _epoch(stream)
    assert len(streamed) == len(device_batches) == 3
    for (x, y), (x_ref, y_ref) in zip(streamed, device_batches):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    assert stream.state_dict()["epoch"] == 1


def test_streaming_loader_rank_shards_and_resume(tmp_path):
    _png_folder(tmp_path / "imgs", n_per_class=3)
    index = image_folder_index(tmp_path / "imgs")
    kwargs = dict(size=8, seed=2, num_workers=0, augment="crop_flip")
    single = _epoch(StreamingLoader(index, 4, **kwargs))
    ranks = [_epoch(StreamingLoader(index, 4, rank=r, world_size=2, **kwargs)) for r in range(2)]
    for i, (x, _) in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][i][0], ranks[1][i][0]]), x)
    resumed = StreamingLoader(index, 4, **kwargs)
    resumed.load_state_dict({"epoch": 0, "position": 1})
    rest = _epoch(resumed)
    assert len(rest) == 1 and torch.equal(rest[0][0], single[1][0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loader_matches_cpu():
    ds = _images(n=40)
    cpu = _epoch(DeviceLoader(ds, 16, augment="crop_flip", seed=1))
    gpu = _epoch(DeviceLoader(ds, 16, augment="crop_flip", seed=1, device="cuda"))
    for (x, y), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(x, xg.cpu()) and torch.equal(y, yg.cpu())
