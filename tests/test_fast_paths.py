"""The fast paths compute the same numbers as the slow reference implementations.

The references live in `benchmarks/` (the benchmarks time one against the other):
- BAT: the vectorised `robustfair.methods.BAT` loss against `benchmarks.bat_reference`,
  the authors' structure (two trajectories, per-sample Python index lists, reordered
  batches), from the same start noise;
- evaluation: `robustfair.metrics.evaluate_classwise` under PGD against the textbook loop of
  `benchmarks.eval_throughput`;
- data: `robustfair.data.DeviceLoader` against a standard DataLoader with per-image
  transforms fed the same sample order and crop/flip draws (`benchmarks.data_pipeline`).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bat_reference import reference_bat_loss  # noqa: E402
from benchmarks.data_pipeline import crop_flip_image, planned_dataloader  # noqa: E402
from benchmarks.eval_throughput import same_counts, textbook_pgd_classwise  # noqa: E402

from robustfair.attacks import early_stopped_pgd  # noqa: E402
from robustfair.data import ArrayDataset, DeviceLoader  # noqa: E402
from robustfair.methods import METHODS  # noqa: E402
from robustfair.metrics import evaluate_classwise  # noqa: E402

NUM_CLASSES = 4
# A larger budget than BAT's 0.031 so the tiny model's samples flip at spread-out steps.
EPS, STEP, STEPS = 0.1, 0.02, 10


def tiny_model() -> nn.Module:
    """Conv + BatchNorm + linear on [B, 3, 8, 8]: BatchNorm makes the order and batching of
    the train-mode forwards matter, which the reference changes (it reorders the batch)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, NUM_CLASSES),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.1, 0.1)  # non-trivial statistics for the eval-mode attacks
        model[1].running_var.uniform_(0.5, 1.5)
        # Sharper, centred logits: every class is predicted about equally often on random inputs.
        model[5].weight.mul_(5.0)
        model[5].bias.zero_()
        model.eval()
        model[5].bias.sub_(model(torch.rand(2000, 3, 8, 8, generator=torch.Generator().manual_seed(3))).mean(0))
    return model


def margin_spread_batch(model: nn.Module, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n inputs picked along the clean-margin distribution of a random pool; labels are the
    model's predictions except every 8th, which is the runner-up (wrong at the start)."""
    pool = torch.rand(2000, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        top2 = model(pool).topk(2, dim=1)
    margin = top2.values[:, 0] - top2.values[:, 1]
    pick = margin.argsort()[torch.linspace(0, 1500, n).long()]
    y = top2.indices[pick, 0].clone()
    y[::8] = top2.indices[pick[::8], 1]
    return pool[pick], y


def bat_method():
    config = METHODS["bat"].Config(eps=EPS, step_size=STEP, steps=STEPS)
    return METHODS["bat"](config, num_classes=NUM_CLASSES)


def test_fixture_spreads_flip_steps():
    model = tiny_model()
    x, y = margin_spread_batch(model, 32, seed=1)
    result = early_stopped_pgd(
        model,
        x,
        y,
        eps=EPS,
        step_size=STEP,
        steps=STEPS,
        tau=0,
        mode="last_clean",
        generator=torch.Generator().manual_seed(5),
    )
    flips = result.flip_step
    assert (flips == 0).sum() >= 4  # wrong at the start
    assert (flips == -1).sum() >= 3  # never flipped
    assert len(set(flips.tolist())) >= 6  # and many steps in between


def test_vectorised_bat_loss_equals_reference_style_loss():
    model = tiny_model()
    x, y = margin_spread_batch(model, 32, seed=1)
    model.train()  # as the engine calls `method.loss`; the attacks switch to eval and back
    library_model, reference_model = copy.deepcopy(model), copy.deepcopy(model)

    torch.manual_seed(123)
    library = bat_method().loss(library_model, x, y).loss
    torch.manual_seed(123)  # the same two start draws: x_lc's first, then x_fa's
    reference = reference_bat_loss(reference_model, x, y, eps=EPS, step_size=STEP, steps=STEPS)
    assert abs(library.item() - reference.item()) <= 1e-5

    # The same parameter gradients and BatchNorm statistics after the three train forwards.
    for m in (library_model, reference_model):  # the reference's attack leaves parameter gradients
        m.zero_grad(set_to_none=True)  # behind; the code's optimizer.zero_grad() drops them
    library.backward()
    reference.backward()
    for (name, p), q in zip(library_model.named_parameters(), reference_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(library_model[1].running_mean, reference_model[1].running_mean, atol=1e-6, rtol=0)

    # The comparison is sensitive: other start noise moves the loss far beyond 1e-5.
    torch.manual_seed(124)
    other = bat_method().loss(copy.deepcopy(model), x, y).loss.detach()
    assert abs(other.item() - library.item()) > 1e-3


def test_classwise_evaluation_equals_textbook_loop():
    model = tiny_model().eval()
    x, y = margin_spread_batch(model, 64, seed=3)
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]  # power-of-two batches: mean CE = sum / 2^k exactly
    # The evaluation draws its starts from one generator seeded 77: the stream torch.manual_seed(77) gives.
    fast = evaluate_classwise(
        model,
        batches,
        attack="pgd20",
        num_classes=NUM_CLASSES,
        attack_overrides={"eps": EPS, "step_size": STEP},
        seed=77,
    )
    torch.manual_seed(77)
    slow = textbook_pgd_classwise(model, batches, eps=EPS, step_size=STEP, steps=20, num_classes=NUM_CLASSES)
    assert same_counts(fast, slow)
    # a meaningful comparison: every class present, and the attack flips many samples
    assert (slow["clean_confusion"].sum(1) > 0).all()
    assert slow["robust_correct"].sum() < 0.5 * np.trace(slow["clean_confusion"])
    torch.manual_seed(78)  # other starts change some adversarial predictions
    other = textbook_pgd_classwise(model, batches, eps=EPS, step_size=STEP, steps=2, num_classes=NUM_CLASSES)
    assert not np.array_equal(other["adversarial_confusion"], slow["adversarial_confusion"])


def test_crop_flip_image_by_hand():
    image = np.arange(1, 5, dtype=np.uint8).reshape(1, 2, 2)  # [[1, 2], [3, 4]]
    # padded by 1: rows [0 0 0 0], [0 1 2 0], [0 3 4 0], [0 0 0 0]
    assert crop_flip_image(image, 0, 0, False, 1).mul(255).round().tolist() == [[[0, 0], [0, 1]]]
    assert crop_flip_image(image, 1, 2, False, 1).mul(255).round().tolist() == [[[2, 0], [4, 0]]]
    assert crop_flip_image(image, 1, 1, True, 1).mul(255).round().tolist() == [[[2, 1], [4, 3]]]


@pytest.mark.parametrize("epoch", [0, 1])
def test_device_loader_yields_the_dataloader_images(epoch):
    generator = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=generator).numpy()
    y = torch.randint(0, NUM_CLASSES, (50,), generator=generator).numpy()
    dataset = ArrayDataset(x, y, [str(c) for c in range(NUM_CLASSES)], "tiny")
    loader = DeviceLoader(dataset, 16, shuffle=True, augment="crop_flip", padding=2, seed=3)
    reference = planned_dataloader(loader, epoch=epoch)
    loader.set_epoch(epoch)
    fast_batches, slow_batches = list(loader), list(reference)
    assert len(fast_batches) == len(slow_batches) == 4  # 16, 16, 16 and a partial 2
    for (fx, fy), (sx, sy) in zip(fast_batches, slow_batches):
        assert fx.dtype == sx.dtype == torch.float32
        assert torch.equal(fx, sx)
        assert torch.equal(fy, sy)
    # the augmentation did something: not all crops are centred and unflipped
    plan = loader.plan(epoch)
    assert (plan.offsets != 2).any() and plan.flips.any() and not plan.flips.all()
    centred = torch.from_numpy(x[plan.order[:16].numpy()]).float() / 255
    assert not torch.equal(fast_batches[0][0], centred)
