"""Device settings: "auto" means the fast settings on CUDA and PyTorch's defaults elsewhere;
each switch can be forced; what a run used is recorded; process-wide flags are restored."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustfair.engine.accelerator import (
    Acceleration,
    autocast,
    backend_flags,
    build_sgd,
    prepare_inputs,
    prepare_model,
    resolve_acceleration,
)
from robustfair.engine.config import EvalConfig, TrainConfig, load_config, parse_config
from robustfair.engine.trainer import train
from robustfair.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SMALL = [
    "train.epochs=1",
    "data.train_per_class=10",
    "data.val_per_class=0",
    "data.test_per_class=3",
    "train.batch_size=25",
    "method.steps=2",
    "eval.sanity_checks=false",
]


def test_auto_is_fast_on_cuda_and_default_on_cpu():
    on_cuda = resolve_acceleration(TrainConfig(), EvalConfig(), CUDA)
    assert (on_cuda.amp, on_cuda.channels_last, on_cuda.tf32, on_cuda.cudnn_benchmark) == (True,) * 4
    assert on_cuda.optimizer_impl == "fused" and on_cuda.early_stop_attack == "masked"
    assert on_cuda.eval_amp is False  # evaluation stays fp32 unless asked
    on_cpu = resolve_acceleration(TrainConfig(), EvalConfig(), CPU)
    assert (on_cpu.amp, on_cpu.channels_last, on_cpu.tf32, on_cpu.cudnn_benchmark) == (False,) * 4
    assert on_cpu.optimizer_impl == "for_loop" and on_cpu.early_stop_attack == "compact"
    assert on_cpu.compile is False and on_cpu.compile_mode is None


def test_each_switch_can_be_forced():
    config = parse_config(
        {"name": "x"},
        [
            "train.amp=false",
            "train.channels_last=false",
            "train.tf32=false",
            "train.cudnn_benchmark=false",
            "train.optimizer_impl=foreach",
            "train.early_stop_attack=compact",
            "train.compile=true",
            "train.compile_mode=reduce-overhead",
            "eval.amp=true",
        ],
    )
    on_cuda = resolve_acceleration(config.train, config.eval, CUDA)
    assert not (on_cuda.amp or on_cuda.channels_last or on_cuda.tf32 or on_cuda.cudnn_benchmark)
    assert on_cuda.optimizer_impl == "foreach" and on_cuda.early_stop_attack == "compact"
    assert on_cuda.compile and on_cuda.compile_mode == "reduce-overhead" and on_cuda.eval_amp
    forced = parse_config({"name": "x"}, ["train.amp=true", "train.channels_last=true", "train.tf32=true"])
    on_cpu = resolve_acceleration(forced.train, forced.eval, CPU)
    assert on_cpu.amp and on_cpu.channels_last
    assert on_cpu.tf32 is False  # a CUDA-only flag has no effect on the CPU and is recorded as off


@pytest.mark.parametrize(
    "override,field",
    [
        ("train.amp=maybe", "train.amp"),
        ("train.tf32=2", "train.tf32"),
        ("train.optimizer_impl=adam", "train.optimizer_impl"),
        ("train.early_stop_attack=lazy", "train.early_stop_attack"),
        ("train.compile_mode=fast", "train.compile_mode"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        parse_config({"name": "x"}, [override])
    assert "\n" not in str(err.value)


def test_optimizer_implementations_make_the_same_update():
    updates = {}
    for impl in ("for_loop", "foreach", "fused"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
        try:
            optimizer = build_sgd(
                model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False, implementation=impl
            )
        except ConfigError:
            assert impl == "fused"  # older PyTorch builds have no fused SGD on the CPU
            continue
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
        updates[impl] = [p.detach().clone() for p in model.parameters()]
    for impl, params in updates.items():
        for a, b in zip(params, updates["for_loop"]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=impl)
    with pytest.raises(ConfigError, match="optimizer_impl"):
        build_sgd(
            [nn.Parameter(torch.zeros(1))],
            lr=0.1,
            momentum=0.0,
            weight_decay=0.0,
            nesterov=False,
            implementation="adam",
        )


def test_backend_flags_are_set_inside_and_restored_after():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    fast = resolve_acceleration(TrainConfig(), EvalConfig(), CUDA)
    with backend_flags(fast):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
    assert (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    ) == saved
    with backend_flags(resolve_acceleration(TrainConfig(), EvalConfig(), CPU)):  # a CPU run touches nothing
        assert torch.backends.cudnn.benchmark == saved[2]


def test_channels_last_and_autocast_helpers():
    on = Acceleration(
        device="cpu",
        amp=True,
        channels_last=True,
        tf32=False,
        cudnn_benchmark=False,
        optimizer_impl="for_loop",
        compile=False,
        compile_mode=None,
        early_stop_attack="compact",
        eval_amp=False,
    )
    conv = prepare_model(nn.Conv2d(3, 4, 3), on)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = prepare_inputs(torch.rand(2, 3, 5, 5), on)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert prepare_inputs(torch.rand(2, 7), on).shape == (2, 7)  # tabular inputs pass through
    with autocast(CPU, True):
        assert conv(x).dtype == torch.bfloat16
    with autocast(CPU, False):
        assert conv(x).dtype == torch.float32


def test_a_run_records_the_settings_it_used(tmp_path):
    config = load_config(
        "digits_bat",
        SMALL
        + [
            "train.amp=true",
            "train.channels_last=true",
            "train.early_stop_attack=masked",
            "train.optimizer_impl=foreach",
        ],
    )
    results = train(config, tmp_path / "run", quiet=True)
    used = results["run"]["acceleration"]
    assert used["amp"] and used["channels_last"] and used["early_stop_attack"] == "masked"
    assert used["optimizer_impl"] == "foreach" and used["eval_amp"] is False and used["device"] == "cpu"
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["acceleration"] == used
    assert (tmp_path / "run" / "config.yaml").read_text().count("early_stop_attack: masked") == 1


def test_default_cpu_run_records_pytorch_defaults(tmp_path):
    results = train(load_config("digits_pgd_at", SMALL), tmp_path / "run", quiet=True)
    used = results["run"]["acceleration"]
    assert not (used["amp"] or used["channels_last"] or used["tf32"] or used["cudnn_benchmark"])
    assert used["optimizer_impl"] == "for_loop" and used["early_stop_attack"] == "compact"
