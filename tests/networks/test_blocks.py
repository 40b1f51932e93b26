"""Blocks of the U-Net family: shapes, residual shortcut, dense connectivity, depthwise-separable size."""

from __future__ import annotations

import pytest
import torch

from app.networks import BLOCK_TYPES, FlexUNet
from app.networks.blocks import DenseBlock, DoubleConvBlock, MobileBlock, ResidualBlock, get_block
from app.networks.unet2015 import _center_crop


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(BLOCK_TYPES))
@pytest.mark.parametrize("spatial_dims, padding", [(2, "same"), (2, "valid"), (3, "same"), (3, "valid")])
def test_block_shapes(name, spatial_dims, padding):
    block = get_block(name)(spatial_dims, 3, 5, padding, "instance", "relu", 0.1)
    y = block(torch.rand(2, 3, *[9] * spatial_dims))  # odd sizes work: blocks do not down-sample
    assert y.shape == (2, 5, *[5 if padding == "valid" else 9] * spatial_dims)


def test_unknown_block_lists_valid_names():
    with pytest.raises(ValueError, match=r"block must be one of \('plain', 'residual', 'dense', 'mobile'\)"):
        get_block("inception")
    with pytest.raises(ValueError, match="'valid', 'same'"):
        DoubleConvBlock(2, 1, 1, padding="full")


@pytest.mark.parametrize("in_channels", [4, 3])
def test_residual_shortcut(in_channels):
    block = ResidualBlock(2, in_channels, 4, padding="valid", norm="instance", act="relu")
    assert isinstance(block.shortcut, torch.nn.Identity) == (in_channels == 4)
    with torch.no_grad():
        block.conv2.conv.weight.zero_()  # the residual branch is now 0: the block is act(shortcut(x))
        x = torch.randn(1, in_channels, 10, 10)
        expected = torch.relu(_center_crop(block.shortcut(x), [6, 6]))
        torch.testing.assert_close(block(x), expected)


def test_dense_block_concatenates_all_layers():
    block = DenseBlock(3, 6, 8)
    assert block.growth == 4
    assert block.layer2.conv.in_channels == 6 + 4
    assert block.transition.conv.in_channels == 6 + 2 * 4
    assert block.transition.conv.kernel_size == (1, 1, 1)
    assert block(torch.rand(1, 6, 4, 4, 4)).shape == (1, 8, 4, 4, 4)


def test_mobile_block_is_depthwise_separable():
    block = MobileBlock(3, 16, 16)
    depthwise = [m.conv for m in block if m.conv.kernel_size == (3, 3, 3)]
    assert [c.groups for c in depthwise] == [16, 16]
    assert _parameters(block) < _parameters(DoubleConvBlock(3, 16, 16)) / 10


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mobile_unet_has_far_fewer_parameters_than_plain(spatial_dims):
    features = (8, 16, 32, 64)
    plain = FlexUNet(spatial_dims, 1, 2, features=features)
    mobile = FlexUNet(spatial_dims, 1, 2, features=features, block="mobile")
    assert mobile.channels == plain.channels
    assert _parameters(mobile) < _parameters(plain) / 4
