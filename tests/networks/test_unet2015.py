"""Tests for the original U-Net (Ronneberger et al. 2015) and its size helpers."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from app.networks import (
    UNet2015,
    nearest_valid_input_sizes,
    unet2015_input_size,
    unet2015_margin,
    unet2015_output_size,
    valid_input_sizes,
)


@pytest.fixture(scope="module")
def paper_net() -> UNet2015:
    """The paper's network (1 channel in, 2 classes); built once, never run at 572x572."""
    torch.manual_seed(0)
    return UNet2015(spatial_dims=2, in_channels=1, out_channels=2)


def _convs(net: nn.Module) -> list[nn.modules.conv._ConvNd]:
    return [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]


def test_paper_parameter_and_layer_counts(paper_net):
    assert sum(p.numel() for p in paper_net.parameters()) == 31_030_658
    convs = _convs(paper_net)
    assert len(convs) == 23  # the paper's "23 convolutional layers"
    kernels = [(type(m).__name__, m.kernel_size) for m in convs]
    assert kernels.count(("Conv2d", (3, 3))) == 18
    assert kernels.count(("ConvTranspose2d", (2, 2))) == 4
    assert kernels.count(("Conv2d", (1, 1))) == 1
    widths = [m.out_channels for m in paper_net.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [64, 64, 128, 128, 256, 256, 512, 512]
    assert paper_net.bottleneck[-2].out_channels == 1024


def test_paper_sizes(paper_net):
    assert paper_net.margin == 92
    assert paper_net.output_size(572) == 388
    assert paper_net.output_size((572, 556)) == (388, 372)
    assert unet2015_output_size(572) == 388


def test_he_initialisation(paper_net):
    big = paper_net.bottleneck[-2]  # 1024 -> 1024 3x3 conv: 9.4M weights
    assert big.weight.numel() > 9_000_000
    expected = math.sqrt(2.0 / (9 * 1024))
    assert abs(big.weight.std().item() - expected) / expected < 0.1
    assert abs(big.weight.mean().item()) < 0.1 * expected
    for conv in _convs(paper_net):
        assert torch.count_nonzero(conv.bias) == 0
        if conv.weight.numel() >= 10_000:
            fan_in = conv.in_channels * math.prod(conv.kernel_size) // math.prod(conv.stride)
            assert abs(conv.weight.std().item() / math.sqrt(2.0 / fan_in) - 1) < 0.1


def test_size_helpers():
    assert unet2015_margin() == 92
    assert unet2015_margin(2) == 20
    assert unet2015_margin(4, "same") == 0
    assert unet2015_output_size(556) == 372
    assert unet2015_input_size(388) == 572
    assert unet2015_input_size(389) == 588
    assert unet2015_input_size(1) == 188  # the smallest usable input at depth 4 (output 4)
    assert unet2015_input_size(30, depth=3, padding="same") == 32
    assert valid_input_sizes(540, 572) == [540, 556, 572]
    assert valid_input_sizes(1, 100, depth=2) == [44, 48, 52, 56, 60, 64, 68, 72, 76, 80, 84, 88, 92, 96, 100]
    assert valid_input_sizes(1, 40, depth=3, padding="same") == [8, 16, 24, 32, 40]
    assert nearest_valid_input_sizes(570) == (556, 572)
    assert nearest_valid_input_sizes(572) == (572, 572)
    assert nearest_valid_input_sizes(10) == (None, 188)
    for depth in (1, 2, 3, 4, 5):
        sizes = valid_input_sizes(1, 600, depth=depth)
        for size in range(1, 600):
            valid = size in sizes
            if valid:
                out = unet2015_output_size(size, depth)
                assert out == size - 2 * unet2015_margin(depth) and out >= 1
            else:
                with pytest.raises(ValueError, match="is not valid"):
                    unet2015_output_size(size, depth)


def test_size_helpers_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"use 556 or 572"):
        unet2015_output_size(570)
    with pytest.raises(ValueError, match=r"use 188 \(the smallest valid size\)"):
        unet2015_output_size(100)
    with pytest.raises(ValueError, match=r"'valid', 'same'"):
        unet2015_output_size(572, padding="full")
    with pytest.raises(ValueError, match="depth"):
        unet2015_output_size(572, depth=0)
    with pytest.raises(ValueError, match="input_size"):
        unet2015_output_size(0)
    with pytest.raises(ValueError, match="max_size"):
        valid_input_sizes(100, 50)


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"spatial_dims must be one of \(2, 3\)"):
        UNet2015(spatial_dims=1)
    with pytest.raises(ValueError, match="padding"):
        UNet2015(padding="full", features=2, depth=1)
    with pytest.raises(ValueError, match="'batch'"):
        UNet2015(norm="bacth", features=2, depth=1)
    with pytest.raises(ValueError, match="dropout"):
        UNet2015(dropout=1.0, features=2, depth=1)
    with pytest.raises(ValueError, match="features"):
        UNet2015(features=0)


@pytest.mark.parametrize("depth", [2, 3])
def test_forward_2d(depth):
    net = UNet2015(spatial_dims=2, in_channels=3, out_channels=4, features=4, depth=depth).eval()
    size = (valid_input_sizes(1, 200, depth)[0], valid_input_sizes(1, 200, depth)[2])
    y = net(torch.rand(2, 3, *size))
    assert tuple(y.shape) == (2, 4, *net.output_size(size))


def test_forward_3d():
    net = UNet2015(spatial_dims=3, in_channels=1, out_channels=2, features=2, depth=2).eval()
    y = net(torch.rand(1, 1, 44, 48, 44))
    assert tuple(y.shape) == (1, 2, 4, 8, 4) == (1, 2, *net.output_size((44, 48, 44)))


def test_forward_rejects_invalid_size():
    net = UNet2015(features=2, depth=2)
    message = r"input size 62 is not valid for this U-Net \(depth 2, valid padding\): use 60 or 64"
    with pytest.raises(ValueError, match=message):
        net(torch.rand(1, 1, 60, 62))


def test_backward():
    net = UNet2015(spatial_dims=2, features=4, depth=2, norm="batch")
    x = torch.rand(2, 1, 60, 60)
    loss = nn.functional.cross_entropy(net(x), torch.randint(0, 2, (2, 20, 20)))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("spatial_dims, size", [(2, (32, 48)), (3, (16, 8, 24))])
def test_same_padding_keeps_size(spatial_dims, size):
    net = UNet2015(spatial_dims=spatial_dims, features=2, depth=3, padding="same", norm="instance").eval()
    assert net.margin == 0
    assert tuple(net(torch.rand(1, 1, *size)).shape) == (1, 2, *size)
    with pytest.raises(ValueError, match="same padding"):
        net(torch.rand(1, 1, *(s + 4 for s in size)))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    net = UNet2015(features=4, depth=2, dropout=0.5)
    x = torch.rand(1, 1, 60, 60)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))
    no_dropout = UNet2015(features=4, depth=2, dropout=0.0).train()
    assert torch.equal(no_dropout(x), no_dropout(x))


def test_torchscript_round_trip():
    net = UNet2015(spatial_dims=2, features=4, depth=2).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.rand(1, 1, 64, 60)
    assert torch.allclose(loaded(x), net(x), atol=1e-6)
    assert loaded.margin == net.margin == 20
    with pytest.raises(Exception, match="use 60 or 64"):  # scripted code raises torch.jit.Error
        loaded(torch.rand(1, 1, 62, 60))
