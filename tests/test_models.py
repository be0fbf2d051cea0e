"""Models: shapes for any input size and channel count, published parameter counts,
normalisation, checkpoint-compatible keys, double forward, channels_last and bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustfair.errors import ConfigError, UnknownNameError
from robustfair.models import MODELS, Normalize, build_model, model_options, model_summary

# Keep the big presets cheap: small inputs, batch 2. (in_channels, input_size) pairs.
GEOMETRIES = [(1, 8), (3, 12), (1, 28), (3, (10, 14))]
BIG = {"wrn28_10", "wrn34_10", "wide_resnet"}


def _build(name: str, in_channels: int, input_size, num_classes: int = 7, **kwargs):
    torch.manual_seed(0)
    return build_model(name, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_forward_and_backward_on_several_geometries(name):
    torch.set_num_threads(1)
    geometries = GEOMETRIES[:2] if name in BIG else GEOMETRIES
    for in_channels, input_size in geometries:
        model = _build(name, in_channels, input_size)
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        x = torch.rand(2, in_channels, h, w, requires_grad=True)
        logits = model(x)
        assert logits.shape == (2, 7), (name, in_channels, input_size)
        assert torch.isfinite(logits).all()
        F.cross_entropy(logits, torch.tensor([0, 6])).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        if name == "small_cnn":
            # TRADES zero-initialises the last layer: no input gradient before training
            assert x.grad.abs().sum() == 0
        else:
            assert x.grad.abs().sum() > 0
        # every parameter takes part in the forward pass (no dead branches such as TRADES' sub_block1)
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, missing


@pytest.mark.parametrize(
    "name,expected",
    [
        ("preact_resnet18", 11_171_146),  # FRL / kuangliu PreActResNet18, CIFAR-10
        ("resnet18", 11_173_962),  # CIFAR ResNet-18 (BAT, TRADES-family repos)
        ("wrn34_10", 46_160_474),  # TRADES WRN-34-10 (46.16M)
        ("wrn28_10", 36_479_194),  # WRN-28-10 (36.48M)
    ],
)
def test_published_parameter_counts_for_cifar10(name, expected):
    model = build_model(name, num_classes=10)
    assert model_summary(model)["parameters"] == expected


def test_wide_resnet_generic_matches_preset_and_small_depth_count():
    assert (
        sum(p.numel() for p in build_model("wide_resnet", num_classes=10, depth=34, widen_factor=10).parameters())
        == 46_160_474
    )
    # WRN-10-1 by hand: conv1 3*16*9=432; one block per stage, widths 16/32/64, no projection in stage 1:
    # stage1 bn 2*16 + conv 16*16*9 + bn 2*16 + conv 16*16*9 = 4672
    # stage2 bn 2*16 + conv 16*32*9 + bn 2*32 + conv 32*32*9 + shortcut 16*32 = 14432
    # stage3 bn 2*32 + conv 32*64*9 + bn 2*64 + conv 64*64*9 + shortcut 32*64 = 57536
    # final bn 2*64 = 128; fc 64*10+10 = 650 -> 77850
    model = build_model("wide_resnet", num_classes=10, depth=10, widen_factor=1)
    assert sum(p.numel() for p in model.parameters()) == 77_850


def test_small_cnn_is_the_trades_model_on_mnist_and_adapts_to_8x8():
    mnist = build_model("small_cnn", num_classes=10, in_channels=1, input_size=28)
    # convs 320 + 9248 + 18496 + 36928, fc 1024*200+200, 200*200+200, 200*10+10
    assert model_summary(mnist)["parameters"] == 320 + 9248 + 18496 + 36928 + 205_000 + 40_200 + 2010
    assert mnist.fc1.in_features == 64 * 4 * 4
    digits = build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    assert digits.conv1.padding == (1, 1) and digits.fc1.in_features == 64 * 2 * 2
    cifar = build_model("small_cnn", num_classes=10, in_channels=3, input_size=32)
    assert cifar.fc1.in_features == 64 * 5 * 5
    with pytest.raises(ConfigError, match="too small"):
        build_model("small_cnn", num_classes=10, in_channels=1, input_size=8, padding=0)


def test_mlp_flattens_images_and_tabular_rows():
    images = build_model("mlp", num_classes=4, in_channels=3, input_size=(5, 6), hidden_sizes=[8])
    assert images(torch.rand(2, 3, 5, 6)).shape == (2, 4)
    assert model_summary(images)["parameters"] == (90 * 8 + 8) + (8 * 4 + 4)
    tabular = build_model("mlp", num_classes=2, in_channels=14, input_size=(), hidden_sizes=[])
    assert tabular(torch.rand(5, 14)).shape == (5, 2)
    assert model_summary(tabular)["parameters"] == 14 * 2 + 2


@pytest.mark.parametrize("name", ["preact_resnet18", "resnet18", "small_cnn", "mlp"])
def test_normalize_is_applied_first(name):
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    normalized = _build(name, 3, 8, normalize=(mean, std)).eval()
    if name == "small_cnn":  # its last layer starts at zero: make the logits depend on the input
        torch.nn.init.normal_(normalized.fc3.weight)
    plain = _build(name, 3, 8).eval()
    state = normalized.state_dict()
    assert torch.equal(state["normalize.mean"], torch.tensor(mean))
    assert torch.equal(state["normalize.std"], torch.tensor(std))
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("normalize.")})
    x = torch.rand(3, 3, 8, 8)
    standardized = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalized(x), plain(standardized))
    assert not torch.allclose(normalized(x), plain(x))
    assert not any(k.startswith("normalize.") for k in plain.state_dict())


def test_normalize_module_values_and_errors():
    layer = Normalize([0.5, 0.25], [0.5, 0.25])
    x = torch.tensor([[[[1.0]], [[0.0]]]])  # [1, 2, 1, 1]
    assert layer(x).flatten().tolist() == [1.0, -1.0]
    assert Normalize(0.5, 0.5)(torch.tensor([[0.0, 1.0]])).tolist() == [[-1.0, 1.0]]
    with pytest.raises(ConfigError, match="std"):
        Normalize([0.5], [0.0])
    with pytest.raises(ConfigError, match="in_channels=3"):
        build_model("resnet18", num_classes=10, normalize=([0.5, 0.5], [0.2, 0.2]))
    with pytest.raises(ConfigError, match="mean, std"):
        build_model("resnet18", num_classes=10, normalize=[0.5])


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        build_model("resnet19", num_classes=10)
    for name in MODELS:
        assert name in str(info.value)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        build_model("wide_resnet", num_classes=10, widen=4)
    message = str(info.value)
    assert "widen" in message and "depth" in message and "widen_factor" in message and "dropout" in message
    with pytest.raises(ConfigError, match="valid options: none"):
        build_model("resnet18", num_classes=10, depth=18)
    assert model_options("wide_resnet") == {"depth": 34, "widen_factor": 10, "dropout": 0.0}


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 10, "in_channels": 0}, "in_channels"),
        ({"num_classes": 10, "input_size": 0}, "input_size"),
    ],
)
def test_invalid_shared_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        build_model("small_cnn", **kwargs)


def test_wide_resnet_rejects_bad_depth_and_dropout():
    with pytest.raises(ConfigError, match="depth"):
        build_model("wide_resnet", num_classes=10, depth=30)
    with pytest.raises(ConfigError, match="dropout"):
        build_model("wrn28_10", num_classes=10, dropout=1.5)


def test_state_dict_keys_match_the_reference_repositories():
    preact = build_model("preact_resnet18", num_classes=10).state_dict()
    assert {"conv1.weight", "layer1.0.bn1.weight", "layer2.0.shortcut.0.weight", "linear.weight"} <= set(preact)
    assert "layer1.0.shortcut.0.weight" not in preact and "bn1.weight" not in preact
    resnet = build_model("resnet18", num_classes=10).state_dict()
    assert {"conv1.weight", "bn1.running_mean", "layer3.0.shortcut.1.weight", "linear.bias"} <= set(resnet)
    wrn = build_model("wide_resnet", num_classes=10, depth=10, widen_factor=2).state_dict()
    assert {
        "conv1.weight",
        "block1.layer.0.convShortcut.weight",
        "block3.layer.0.bn2.weight",
        "bn1.running_var",
        "fc.weight",
    } <= set(wrn)


@pytest.mark.parametrize("name", ["preact_resnet18", "resnet18", "small_cnn"])
def test_two_forward_passes_then_one_backward_like_trades(name):
    model = _build(name, 3, 8).train()
    x = torch.rand(4, 3, 8, 8)
    x_adv = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    logits_clean, logits_adv = model(x), model(x_adv)
    loss = F.cross_entropy(logits_clean, torch.tensor([0, 1, 2, 3])) + F.kl_div(
        F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction="batchmean"
    )
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["preact_resnet18", "resnet18", "wide_resnet", "small_cnn"])
def test_channels_last_gives_the_same_logits(name):
    kwargs = {"depth": 10, "widen_factor": 1} if name == "wide_resnet" else {}
    model = _build(name, 3, 16, **kwargs).eval()
    x = torch.rand(2, 3, 16, 16)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["preact_resnet18", "resnet18", "small_cnn", "mlp"])
def test_bf16_autocast_forward_and_backward(name):
    model = _build(name, 3, 8, normalize=(0.5, 0.25))
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 7)
    F.cross_entropy(logits.float(), torch.tensor([1, 2])).backward()
    assert torch.isfinite(x.grad).all()


def test_model_summary_counts():
    model = build_model("mlp", num_classes=3, in_channels=2, input_size=(), hidden_sizes=[4])
    model.head.weight.requires_grad_(False)
    summary = model_summary(model)
    assert summary["model"] == "MLP"
    assert summary["parameters"] == (2 * 4 + 4) + (4 * 3 + 3)
    assert summary["trainable_parameters"] == summary["parameters"] - 12
    assert summary["parameter_mib"] == pytest.approx(summary["parameters"] * 4 / 2**20)
    resnet = build_model("resnet18", num_classes=10)
    # BatchNorm buffers: running mean and var (C each) and num_batches_tracked (1) per BN layer
    bn_layers = [m for m in resnet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert model_summary(resnet)["buffers"] == sum(2 * m.num_features + 1 for m in bn_layers)
